"""A call as call control keeps it, the engine it is on, and the page (session) it talks to.

Plain data, shared by call control and the modules that read its calls
(:mod:`gateway.rooms`, :mod:`gateway.transfer`, :mod:`gateway.callview`,
:mod:`gateway.callhistory`); only :mod:`gateway.control` changes them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Protocol

from . import engineapi as api
from .callquality import LegQuality
from .callstate import CallState
from .directcalls import DIRECT
from .endcause import EndCause
from .transfer import FarEnd


class Session(Protocol):
    """One signalling connection (a browser tab)."""

    user: str | None
    source: str
    """The address the connection comes from (sign-in back-off counts per address)."""

    def send(self, message: dict[str, Any]) -> None: ...


@dataclasses.dataclass(eq=False)
class Engine:
    """One media engine as call control sees it: a link and a count of its calls."""

    link: api.EngineLink
    sip_host: str = ""
    capacity: int = 0
    calls: int = 0
    media: str = ""

    @property
    def full(self) -> bool:
        return self.calls >= self.capacity


@dataclasses.dataclass(eq=False)
class ControlCall:
    call_id: str
    state: CallState
    engine: Engine
    direction: str
    """``outbound-dial`` (a page dialled), ``outbound-api`` (click-to-call) or ``inbound`` (SIP to the gateway)."""
    caller: str
    """The web user who calls, or the SIP From URI."""
    callee: str
    """What was dialled, or the user, group or extension a SIP call is for."""
    caller_name: str = ""
    """The SIP caller's display name."""
    user: str = ""
    """The web user whose page has the call (while a SIP call rings: the user or group it is for); "" for a built-in."""
    operator: str = ""
    """The API operator who placed it (click-to-call)."""
    mailbox: str = ""
    """The user whose mailbox notes this SIP call if no page answers it ("": a group, or no mailbox)."""
    entry: str = ""
    """Its id in the mailbox, once it went to voicemail (the message's file name)."""
    message: float = 0.0
    """Seconds of the voicemail message the caller left."""
    dial: tuple[tuple[str, str], ...] = ()
    """Click-to-call: the targets the page that answers dials (:class:`api.Dial`)."""
    owner: Session | None = None
    ringing: set[Session] = dataclasses.field(default_factory=set)
    local_cause: EndCause | None = None
    ring_timer: asyncio.TimerHandle | None = None
    created: float = dataclasses.field(default_factory=time.time)
    answered: float | None = None
    ended: float | None = None
    end: EndCause | None = None
    quality: dict[str, LegQuality] = dataclasses.field(default_factory=dict)
    """Each leg's last reported figures (``sip``, ``browser``), counted once the call ends."""
    peer: str = ""
    """Who the web user talks to, as the history keeps it: what was dialled, the From URI, or a web user's name."""
    peer_name: str = ""
    """The From display name of an incoming call."""
    history: tuple[str, ...] = ()
    """The web users whose call history records this call when it ends."""
    recording: str = ""
    """Where the call's recording goes (without extension), once its page has started one."""
    recording_on: bool = False
    far_end: FarEnd = FarEnd()
    """Whose REFERs the call's SIP side may obey (:mod:`gateway.transfer`)."""
    transfer: str = ""
    """A transfer under way: ``page`` (the page asked), ``far_end`` (a REFER obeyed), or ""."""
    transfer_with: str = ""
    """An attended transfer's other call, which ends with this one."""

    def tell_owner(self, message: dict[str, Any]) -> None:
        """Send ``message`` to the page that has the call, if one has it."""
        if self.owner is not None:
            self.owner.send(message)

    def sessions(self) -> set[Session]:
        return self.ringing | ({self.owner} if self.owner is not None else set())

    @property
    def direct(self) -> bool:
        """Browser to browser between two pages of this gateway (:mod:`gateway.directcalls`), no SIP leg."""
        return self.engine.media == DIRECT
