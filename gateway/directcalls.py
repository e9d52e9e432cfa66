"""Calls between two web users of this gateway, browser to browser: no media engine, no SIP.

Call control talks to it as to a media engine (the commands and events of
:mod:`gateway.engineapi`), so ringing, answering, declining, the ring
timeout, hanging up, call waiting, the webhooks and the metrics work for
these calls as for any other.  Only what an engine does with media is
replaced by carrying the pages' SDP across: a ``Dial`` to ``sip:bob@host``
becomes an ``Incoming`` for bob holding the caller's WebRTC offer, the
callee page's ``Accept`` holds its SDP answer, which goes back to the
caller as ``WebrtcAnswer``.  From then on the two pages send each other
Opus themselves; each half's hang-up, hold and DTMF are told to the other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Callable

from . import endcause, engineapi as api
from .endcause import EndCause

DIRECT = "direct"
"""The media path of these calls, as call control's ``Engine.media`` names it."""


@dataclasses.dataclass
class _Half:
    """One page's side of a direct call; ``peer`` is the other side's call id."""

    call_id: str
    peer: str
    answered: bool = False
    held: bool = False


class DirectCalls:
    """An engine link whose "engine" joins two pages' calls to each other.

    Like :class:`gateway.engineapi.LocalLink`, each command is carried out
    on a later loop iteration, so its events never arrive inside call
    control's own handler.
    """

    def __init__(self, emit: Callable[[api.Event], None]) -> None:
        self._emit = emit
        self._halves: dict[str, _Half] = {}

    def send(self, command: api.Command) -> None:
        asyncio.get_running_loop().call_soon(self._carry_out, command)

    def _carry_out(self, command: api.Command) -> None:
        if isinstance(command, api.Dial):
            self._dial(command)
            return
        half = self._halves.get(command.call_id)
        if half is None:  # the call ended already: the other side hung up first
            return
        if isinstance(command, api.Ring):
            self._emit(api.Progress(half.peer, 180, early_media=False))
        elif isinstance(command, api.Accept):
            self._answer(half, command.offer)
        elif isinstance(command, api.Reject):
            self._end(half, endcause.from_sip(command.code, command.reason))
        elif isinstance(command, api.Hangup):
            self._end(half, endcause.NORMAL if half.answered else endcause.CANCELLED)
        elif isinstance(command, api.SendDtmf):
            for digit in command.digits.upper():
                self._emit(api.DtmfReceived(half.peer, digit))
        elif isinstance(command, api.Hold):
            self._hold(half, command.hold)
        # Serve, GetStats and Transfer never come: a direct call has no SIP leg to serve, measure or
        # REFER (call control asks the other page to carry out a transfer, gateway.directtransfer).

    def peer(self, call_id: str) -> str | None:
        """The call id of the other page's half of ``call_id``, while both are up."""
        half = self._halves.get(call_id)
        return half.peer if half is not None else None

    def _dial(self, command: api.Dial) -> None:
        """Ring the user ``sip:user@host`` names, from ``sip:caller@host``, as the SIP path's INVITE would."""
        user, _, host = command.targets[0][1].removeprefix("sip:").partition("@")
        callee = uuid.uuid4().hex[:16]
        self._halves[command.call_id] = _Half(command.call_id, callee)
        self._halves[callee] = _Half(callee, command.call_id)
        self._emit(
            api.Incoming(
                callee, user, f"sip:{command.caller}@{host}", command.caller, trunk="", from_gateway=True,
                offer=command.offer,
            )
        )

    def _answer(self, callee: _Half, answer: str) -> None:
        caller = self._halves[callee.peer]
        caller.answered = callee.answered = True
        self._emit(api.WebrtcAnswer(caller.call_id, answer))
        self._emit(api.Answered(caller.call_id))
        self._emit(api.Answered(callee.call_id))

    def _hold(self, half: _Half, hold: bool) -> None:
        """Both pages learn who holds: the holder stops sending (``local``), and so does the held (``remote``)."""
        half.held = hold
        peer = self._halves[half.peer]
        self._emit(api.HoldChanged(half.call_id, local=half.held, remote=peer.held))
        self._emit(api.HoldChanged(peer.call_id, local=peer.held, remote=half.held))

    def _end(self, half: _Half, cause: EndCause) -> None:
        """Both halves end: the one that asked (call control knows its own cause) and its peer with ``cause``."""
        for call_id in (half.call_id, half.peer):
            self._halves.pop(call_id, None)
            self._emit(api.Ended(call_id, cause.cause, cause.code, cause.reason))
