"""Call transfer as call control decides it: what a page may ask for, and which REFERs are obeyed.

A page transfers an answered call of its own, blind (``to``: checked by the
dialplan exactly as if the user had dialled it) or attended (``to_call``:
another answered call of that page).  Either way the engine REFERs the far
end, which places the new call itself; the page's call ends with cause
``transferred`` once the far end reports success, and stays as it was when
it reports failure or refuses the REFER.  A direct call between two pages has
no far end to REFER: the other page carries out a blind transfer itself
(:mod:`gateway.directtransfer`), and an attended one is refused.

A far end's REFER (a PBX transferring the page's call elsewhere) is obeyed
only when the far end is a trunk, one of ``trusted_sources`` or the gateway
itself (another web user's call), and the target is one the dialplan lets
the page's user call, dialled the way the dialplan would dial it.  pjsua2
dials a REFER's target itself, as the Refer-To URI on the call's own
account, so that URI must be the dialplan's own way there: a web user or
built-in extension at the gateway's address, a number the dialplan sends
through the very trunk the call came through, at that trunk's address (any
trunk's address is read this way, so a sip: address cannot reach a trunk
around the user's permissions), or a sip: address the user may call as it
is.  Everything else is refused with 403, and the page is told.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Collection
from typing import TYPE_CHECKING
from urllib.parse import unquote

from . import endcause, engineapi as api
from .callstate import CallState
from .dialplan import Dialplan, Route, Target
from .directcalls import DirectCalls
from .directtransfer import DirectTransfers
from .endcause import EndCause
from .requesterror import RequestError

if TYPE_CHECKING:
    from .control import CallControl
    from .controlcall import ControlCall, Session

log = logging.getLogger(__name__)

_URI = re.compile(
    r"^\s*<?sips?:(?:(?P<user>[^@;?>]+)@)?(?P<host>\[[^\]>]+\]|[^:;?>]+)(?::(?P<port>\d+))?[^>]*>?\s*$", re.IGNORECASE
)


@dataclasses.dataclass(frozen=True)
class FarEnd:
    """Whom a call's SIP side talks to, as far as a REFER from there is concerned."""

    trusted: bool = False
    """A trunk, a trusted source or the gateway itself: its REFERs are considered at all."""
    trunk: str = ""
    """The trunk the call goes through, if any."""


class Transfers:
    """Call control's side of transfers: the page's requests, the far end's REFERs, and how either ends."""

    def __init__(self, control: CallControl) -> None:
        self._control = control
        self._direct = DirectTransfers(control)

    def transfer(self, session: Session, call_id: str, to: str) -> None:
        """Blind transfer: REFER the far end of an answered call to ``to``, which the user must be allowed to dial."""
        call = self._transferable(session, call_id)
        route = self._control.dialplan.outbound(to, call.user)
        if route.action == "reject":
            raise RequestError("rejected", route.reason)
        if isinstance(call.engine.link, DirectCalls):
            self._direct.start(call, call.engine.link.peer(call_id) or "", to)
            return
        (trunk, target), *_ = self._control.targets(route)
        log.info("call %s: %s transfers it to %s (%s %s)", call_id, call.user, to, trunk, target)
        call.transfer = "page"
        call.engine.link.send(api.Transfer(call_id, trunk, target))

    def transfer_to_call(self, session: Session, call_id: str, other_id: str) -> None:
        """Attended transfer: REFER the far end of ``call_id`` to take over ``other_id``'s far end (with Replaces)."""
        call = self._transferable(session, call_id)
        other = self._transferable(session, other_id)
        if other is call:
            raise RequestError("wrong_state", "A call cannot be transferred to itself")
        direct = next((c for c in (call, other) if c.direct), None)
        if direct is not None:
            raise RequestError(
                "not_possible",
                f"Your call with {direct.peer} goes straight between two browsers, so the gateway cannot join it"
                " to another call: transfer it blind instead",
            )
        if other.engine is not call.engine:
            raise RequestError("wrong_state", "These two calls are carried by different media engines: transfer one blind")
        log.info("call %s: %s transfers it to the far end of call %s", call_id, call.user, other_id)
        call.transfer, call.transfer_with = "page", other_id
        call.engine.link.send(api.Transfer(call_id, replacing=other_id))

    def place_call(self, session: Session, transfer_of: str, to: str, offer: str) -> str:
        """The page places the call that carries out a ``transfer_request`` for its direct call ``transfer_of``."""
        return self._direct.place_call(session, transfer_of, to, offer)

    def answered(self, call: ControlCall) -> None:
        """Any call is answered: it may be the one a direct call is transferred to."""
        self._direct.answered(call)

    def ended(self, call: ControlCall, cause: EndCause) -> None:
        """Any call ended: it may be a direct call being transferred, or the call it is transferred to."""
        self._direct.ended(call, cause)

    def asked(self, call: ControlCall, target: str) -> None:
        """The far end REFERs the call to ``target``: obey (the engine calls it) or refuse (403), and tell the page."""
        refusal = (
            "the call is not answered on a page" if call.state is not CallState.ANSWERED or call.owner is None
            else "a transfer is under way" if call.transfer
            else refer_refusal(self._control.dialplan, call.far_end, call.user, target, self._control.gateway_addresses())
        )
        call.engine.link.send(api.TransferVerdict(call.call_id, refusal is None, refusal or ""))
        if refusal is None:
            log.info("call %s: the far end transfers it to %s", call.call_id, target)
            call.transfer = "far_end"
            call.tell_owner({"type": "transferring", "call": call.call_id, "to": target})
        else:
            log.warning("call %s: REFER to %s refused: %s", call.call_id, target, refusal)
            reason = f"The other side's transfer to {target} was refused: {refusal}"
            call.tell_owner({"type": "transfer_failed", "call": call.call_id, "code": 403, "reason": reason})

    def status(self, call: ControlCall, event: api.TransferStatus) -> None:
        """A transfer's outcome: the page's call ends once its far end has the new party, else it goes on."""
        asked_by, other = call.transfer, self._control.find(call.transfer_with)
        call.transfer = call.transfer_with = ""
        if 200 <= event.code < 300 and asked_by == "page":
            for ended in (call, other):
                if ended is not None and ended.owner is call.owner:
                    self._control.end(ended, endcause.TRANSFERRED)
            return
        reason = event.reason if asked_by == "far_end" else f"The other side did not take the transfer ({event.reason})"
        call.tell_owner({"type": "transfer_failed", "call": call.call_id, "code": event.code, "reason": reason})

    def _transferable(self, session: Session, call_id: str) -> ControlCall:
        call = self._control.answered_call(session, call_id, "Only an answered call can be transferred")
        self._control.rooms.refuse(call, "transferred")
        if call.transfer:
            raise RequestError("wrong_state", "This call is being transferred already")
        return call


def far_end_of_route(route: Route) -> FarEnd:
    """The far end of a call the dialplan routed: the gateway itself, a trunk, or a sip: address (a stranger)."""
    if route.action == "local":
        return FarEnd(trusted=True)
    first = route.targets[0] if route.targets else None
    if route.action == "trunk" and isinstance(first, Target):
        return FarEnd(trusted=True, trunk=first.trunk)
    return FarEnd()


def far_end_of_incoming(plan: Dialplan, trunk: str, source: str, from_gateway: bool) -> FarEnd:
    """The far end of a SIP call to the gateway: its trunk, the gateway itself, or its source address."""
    return FarEnd(trusted=bool(trunk) or from_gateway or plan.trusts(source), trunk=trunk)


def refer_refusal(plan: Dialplan, far_end: FarEnd, user: str, target: str, gateway: Collection[str]) -> str | None:
    """Why the far end's REFER of ``user``'s call to ``target`` is refused, or None to obey it.

    ``gateway`` holds the gateway's own SIP addresses (``host:port``).
    """
    if not far_end.trusted:
        return "transfers are taken only from trunks and trusted sources"
    match = _URI.match(target)
    if match is None or not match["user"]:
        return f"{target} is not a sip: address with a user part"
    number, address = unquote(match["user"]), (match["host"].lower().strip("[]"), int(match["port"] or 5060))
    trunk = next((name for name, trunk in plan.trunks.items() if address == (trunk.hostname.lower(), trunk.port or 5060)), "")
    if address in {_address(text) for text in gateway}:
        dialled, way = number, "local"
    elif trunk:
        dialled, way = number, "trunk"
    else:
        dialled, way = f"sip:{number}@{match['host']}" + (f":{match['port']}" if match["port"] else ""), "sip"
    route = plan.outbound(dialled, user)
    if route.action == "reject":
        return f"{user} may not call {dialled}: {route.reason}"
    first = route.targets[0] if route.targets else None
    if route.action != way or (way == "trunk" and not (isinstance(first, Target) and first.trunk == trunk)):
        return f"the dialplan would call {dialled} another way"
    if way == "trunk" and trunk != far_end.trunk:
        return f"only trunk {trunk} itself may transfer calls to its numbers"
    return None


def _address(text: str) -> tuple[str, int]:
    """The gateway's ``host:port`` (``[v6]:port``) as a lower-case host without brackets and a port."""
    host, _, port = text.rpartition(":")
    return host.lower().strip("[]"), int(port) if port.isdigit() else 5060
