"""Blind transfer of a direct call: the other page places the new call itself, as a phone obeying a REFER.

A direct call (:mod:`gateway.directcalls`) has no SIP leg to REFER, so when
alice transfers her call with bob to T, bob's page is asked instead
(``transfer_request``) and calls T through the ordinary ``call`` request,
naming the call it hands over (``transfer_of``): the dialplan checks T for
bob as for any call he places, after it was checked for alice.  Call control
watches that new call: once it is answered, both halves of the direct call
end with cause ``transferred``; if it fails, is refused, or bob's page does
not place it in time, both pages get ``transfer_failed`` and the direct call
goes on as it was.  Either page hanging up meanwhile ends the direct call
only: bob's new call goes on, as a REFER's does when the transferor leaves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING

from . import endcause
from .callstate import CallState
from .endcause import EndCause
from .requesterror import RequestError

if TYPE_CHECKING:
    from .control import CallControl
    from .controlcall import ControlCall, Session

log = logging.getLogger(__name__)

PLACE_SECONDS = 15.0
"""How long the other page has to place the new call (it opens a microphone and gathers ICE first)."""

_PLACE_REFUSALS = {"rejected": 403, "busy": 486}
"""The SIP code a ``transfer_failed`` carries when the other page's ``call`` is refused with that error."""


@dataclasses.dataclass(eq=False)
class _Pending:
    """One transfer under way: ``transferor``'s page asked, ``transferee``'s page is to call ``to``."""

    transferor: str
    transferee: str
    to: str
    timer: asyncio.TimerHandle
    new_call: str = ""
    """The call the transferee's page placed for it, once placed."""


class DirectTransfers:
    """The transfers of direct calls under way, keyed by the transferee's call id."""

    def __init__(self, control: CallControl) -> None:
        self._control = control
        self._pending: dict[str, _Pending] = {}

    def start(self, call: ControlCall, peer_id: str, to: str) -> None:
        """``call``'s page transfers it to ``to`` (already checked for its user): ask the page of ``peer_id`` to call it."""
        peer = self._control.find(peer_id)
        if peer is None or peer.owner is None or peer.state is not CallState.ANSWERED:
            raise RequestError("wrong_state", "The other side of this call is not answered on its page")
        if peer.transfer:
            raise RequestError("wrong_state", f"{peer.user} is transferring this call already")
        log.info("call %s: %s transfers it to %s; %s's page places that call", call.call_id, call.user, to, peer.user)
        call.transfer, peer.transfer = "page", "far_end"
        timer = asyncio.get_running_loop().call_later(PLACE_SECONDS, self._not_placed, peer_id)
        self._pending[peer_id] = _Pending(call.call_id, peer_id, to, timer)
        peer.tell_owner({"type": "transfer_request", "call": peer_id, "to": to})

    def place_call(self, session: Session, transferee_id: str, to: str, offer: str) -> str:
        """The transferee's page calls ``to`` for the transfer of its call ``transferee_id``; the new call's id."""
        pending = self._pending.get(transferee_id)
        transferee = self._control.find(transferee_id)
        if pending is None or transferee is None or transferee.owner is not session:
            raise RequestError("no_such_call", "No transfer of that call is asked of this page")
        if pending.new_call:
            raise RequestError("wrong_state", "The call for this transfer is placed already")
        if to != pending.to:
            raise RequestError("bad_message", f"This transfer is to {pending.to}, not {to}")
        try:
            pending.new_call = self._control.place_call(session, to, offer)
        except RequestError as exc:
            self._fail(pending, _PLACE_REFUSALS.get(exc.code, 500), f"{transferee.user} cannot call it: {exc.message}")
            raise
        pending.timer.cancel()
        return pending.new_call

    def answered(self, call: ControlCall) -> None:
        """A call was answered: if it is a transfer's new call, the direct call it replaces ends, both halves."""
        pending = next((p for p in self._pending.values() if p.new_call == call.call_id), None)
        if pending is None:
            return
        del self._pending[pending.transferee]
        log.info("call %s: the transfer's new call is answered; call %s ends", call.call_id, pending.transferor)
        for call_id in (pending.transferee, pending.transferor):
            half = self._control.find(call_id)
            if half is not None:
                self._control.end(half, endcause.TRANSFERRED)

    def ended(self, call: ControlCall, cause: EndCause) -> None:
        """A call ended: a transfer's new call unanswered fails the transfer; either half of a direct call drops it."""
        for pending in list(self._pending.values()):
            if call.call_id == pending.new_call:
                self._fail(pending, cause.code, cause.reason)
            elif call.call_id in (pending.transferor, pending.transferee):
                self._forget(pending)

    def _not_placed(self, transferee_id: str) -> None:
        pending = self._pending.get(transferee_id)
        transferee = self._control.find(transferee_id)
        if pending is not None:
            self._fail(pending, 408, f"{transferee.user if transferee else 'the other'}'s page did not call it")

    def _fail(self, pending: _Pending, code: int, why: str) -> None:
        """Both pages learn the transfer did not happen; their direct call goes on as it was."""
        self._forget(pending)
        reason = f"The transfer to {pending.to} failed: {why}"
        log.info("call %s: %s", pending.transferor, reason)
        for call_id in (pending.transferor, pending.transferee):
            half = self._control.find(call_id)
            if half is not None:
                half.tell_owner({"type": "transfer_failed", "call": call_id, "code": code, "reason": reason})

    def _forget(self, pending: _Pending) -> None:
        pending.timer.cancel()
        self._pending.pop(pending.transferee, None)
        for call_id in (pending.transferor, pending.transferee):
            half = self._control.find(call_id)
            if half is not None:
                half.transfer = ""
