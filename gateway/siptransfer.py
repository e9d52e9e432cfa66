"""Call transfer on the SIP thread: the REFERs the gateway sends, and those it takes.

Sent (the page transfers its call): a REFER to the far end, plain
(``Call.xfer``, blind transfer) or with Replaces naming another call of the
same endpoint (``Call.xferReplaces``, attended transfer).  The far end
places the new call itself; its final NOTIFY (or a refusal of the REFER) is
reported as :class:`~gateway.engineapi.TransferStatus`.

Taken (the far end transfers the page's call): pjsua2 answers a REFER when
``onCallTransferRequest`` returns, and with 202 it dials the Refer-To URI
itself, on the call's account.  So before anything is answered, call control
is asked (:class:`~gateway.sipapi.TransferRequest`, a
:class:`~gateway.sipthread.Reply` waited for at most
:data:`VERDICT_SECONDS`): it says yes only for a far end it trusts and a
target its dialplan lets the page's user call, dialled the way the dialplan
would.  Anything else gets 403.  The new dialog is a :class:`SipCall` of its
own, pointed at the same audio (the bridge, or the native relay's port);
only once it is answered does it take the call's id and its media, the old
dialog is ended, and :class:`~gateway.engineapi.Transferred` names the new
party.  The far end may end the old dialog sooner (a blind transfer): the
call then waits for the new party in silence.  If the new party never
answers, pjsua2 NOTIFYs the transferor of the failure and the call goes on
with the old dialog, or, when that is gone, ends with the new one's status.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import pjsua2 as pj

from . import engineapi as api
from .sipaccount import name_and_uri
from .sipapi import Disconnected, TransferRequest
from .sipthread import Reply

if TYPE_CHECKING:
    from .sipcall import SipCall

log = logging.getLogger(__name__)

VERDICT_SECONDS = 2.0
"""How long the SIP thread waits for call control's verdict on a REFER (it answers in milliseconds)."""
_START_SECONDS = 2.0
_NEW = "/transfer"
_OLD = "/transferred"
"""Suffixes of a call id while its dialog is being replaced: events under them reach no engine call."""


def refer(call: SipCall, uri: str, replacing: SipCall | None) -> None:
    """Ask the far end to call ``uri``, or to take over ``replacing``'s far end (raises ``pj.Error``)."""
    prm = pj.CallOpParam(True)
    if replacing is None:
        log.info("call %s: REFER to %s", call.call_id, uri)
        call.xfer(uri, prm)
    else:
        log.info("call %s: REFER with Replaces for call %s", call.call_id, replacing.call_id)
        call.xferReplaces(replacing, prm)


def status(call: SipCall, prm: pj.OnCallTransferStatusParam) -> None:
    """A NOTIFY (or the REFER's own refusal) about a REFER this call sent: only the final one counts."""
    log.info("call %s: transfer %s %s%s", call.call_id, prm.statusCode, prm.reason, " (final)" if prm.finalNotify else "")
    done = 200 <= prm.statusCode < 300
    if prm.finalNotify or done or prm.statusCode >= 300:
        prm.cont = False
        call.ua.emit(api.TransferStatus(call.call_id, prm.statusCode, prm.reason))


def asked(call: SipCall, prm: pj.OnCallTransferRequestParam) -> None:
    """A REFER for ``call``: call the target only if call control says so, else 403."""
    ua = call.ua
    busy = call.transfer is not None or call.transfer_of is not None
    if busy or call.getInfo().state != pj.PJSIP_INV_STATE_CONFIRMED:
        _refuse(call, prm, "a transfer is under way" if busy else "the call is not answered")
        return
    reply: Reply[tuple[bool, str]] = Reply()
    ua.emit(TransferRequest(call.call_id, name_and_uri(prm.dstUri)[1], reply.give))
    allowed, reason = reply.wait(VERDICT_SECONDS, (False, "no verdict in time"))
    if not allowed:
        _refuse(call, prm, reason)
        return
    new = type(call)(ua, call.account, call.call_id + _NEW)
    new.audio, new.transfer_of, call.transfer = call.audio, call, new
    ua.calls[new.call_id] = new
    prm.newCall = new
    prm.statusCode = 202
    log.info("call %s: REFER to %s accepted", call.call_id, prm.dstUri)


def _refuse(call: SipCall, prm: pj.OnCallTransferRequestParam, reason: str) -> None:
    log.warning("call %s: REFER to %s refused: %s", call.call_id, prm.dstUri, reason)
    prm.statusCode = 403
    call.ua.emit(api.SipRefused("transfer", 403))


def new_party(new: SipCall, ci: pj.CallInfo) -> None:
    """A state of the dialog a REFER made: answered, it takes the call over; ended, the transfer failed."""
    if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
        _take_over(new, ci)
    elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
        _failed(new, ci.lastStatusCode, ci.lastReason)


def check_started(new: SipCall, now: float) -> None:
    """Once a second for a dialog a REFER made: pjsua2 may have failed to send its INVITE at all (it then
    NOTIFYs the transferor itself), leaving an object with no call behind it: that transfer failed."""
    if new.getId() == pj.PJSUA_INVALID_ID and now - new.created > _START_SECONDS:
        _failed(new, 500, "The transfer target could not be called")


def old_party_gone(old: SipCall, code: int, reason: str) -> None:
    """The transferor ended the old dialog before the new party answered: the call waits for it."""
    log.info("call %s: the old party hung up (%s %s); waiting for the new one", old.call_id, code, reason)
    old.ua.bury(old)
    _rename(old, old.call_id + _OLD)


def _take_over(new: SipCall, ci: pj.CallInfo) -> None:
    ua, old = new.ua, new.transfer_of
    assert old is not None
    call_id = new.call_id.removesuffix(_NEW)
    new.transfer_of = old.transfer = None
    port = old.release_port()
    if ua.calls.get(old.call_id) is old:
        _rename(old, call_id + _OLD)
        ua.hangup(old.call_id)
    _rename(new, call_id)
    new.port = port
    new.media_changed(new.getInfo())
    name, uri = name_and_uri(ci.remoteUri)
    log.info("call %s: transferred to %s", call_id, uri)
    ua.emit(api.Transferred(call_id, uri, name))


def _failed(new: SipCall, code: int, reason: str) -> None:
    ua, old = new.ua, new.transfer_of
    assert old is not None
    call_id = new.call_id.removesuffix(_NEW)
    new.transfer_of = old.transfer = None
    ua.bury(new)
    log.info("call %s: the transfer target answered %s %s", call_id, code, reason)
    if ua.calls.get(call_id) is old:
        ua.emit(api.TransferStatus(call_id, code, reason))
    else:
        ua.emit(Disconnected(call_id, code, reason))


def _rename(call: SipCall, call_id: str) -> None:
    """Give ``call`` another id in the user agent's table (its events follow the new one)."""
    ua = call.ua
    if ua.calls.get(call.call_id) is call:
        del ua.calls[call.call_id]
        ua.calls[call_id] = call
    call.call_id = call_id
    call.rx_changed = time.monotonic()
