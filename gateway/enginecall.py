"""One call as a media engine carries it: its state machine, legs and bridge.

The engine's view is finer than the page's (:mod:`gateway.callstate`): it
knows whether a SIP dialog exists at this moment, which target of a
failover list is being tried, and whether the end was asked for or
reported.  Every transition is checked against one table and logged once,
so an impossible sequence (an answer after a hang-up, a second end) is a
no-op with a debug line instead of a half-torn-down call.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .dialplan import CallerId

from .bridge import Bridge
from .endcause import EndCause
from .sipapi import CallAudio, Caller

if TYPE_CHECKING:
    from .engine import BrowserLeg
    from .voicemail import Recording

log = logging.getLogger(__name__)


class Phase(enum.Enum):
    DIALLING = "dialling"
    """Outbound, no SIP dialog: answering the browser's offer, or between two targets."""
    INVITING = "inviting"
    """An INVITE is out to the current target; nothing back yet."""
    EARLY = "early"
    """The target answered 180 or 183."""
    INCOMING = "incoming"
    """An INVITE arrived; call control is deciding."""
    RINGING = "ringing"
    """180 sent to the caller; a page rings."""
    ACCEPTING = "accepting"
    """The page answered: its offer is being answered, then 200 OK goes out."""
    SERVING = "serving"
    """Answered by a built-in application (echo, tone, voicemail)."""
    JOINING = "joining"
    """A conference room's participant: its one leg (browser or SIP) is being answered into the room."""
    ANSWERED = "answered"
    TRANSFERRING = "transferring"
    """The far end's REFER was accepted: the gateway calls the new party, the old dialog may be gone."""
    ENDING = "ending"
    """Hang-up sent; waiting for the SIP leg to confirm."""
    ENDED = "ended"


_END = frozenset({Phase.ENDING, Phase.ENDED})
_NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.DIALLING: frozenset({Phase.INVITING}) | _END,
    Phase.INVITING: frozenset({Phase.EARLY, Phase.ANSWERED, Phase.DIALLING}) | _END,
    Phase.EARLY: frozenset({Phase.ANSWERED, Phase.DIALLING}) | _END,
    Phase.INCOMING: frozenset({Phase.RINGING, Phase.ACCEPTING, Phase.SERVING, Phase.JOINING}) | _END,
    Phase.RINGING: frozenset({Phase.ACCEPTING, Phase.SERVING}) | _END,  # serving: nobody answered, voicemail did
    Phase.ACCEPTING: frozenset({Phase.ANSWERED}) | _END,
    Phase.SERVING: frozenset({Phase.ANSWERED}) | _END,
    Phase.JOINING: frozenset({Phase.ANSWERED}) | _END,
    Phase.ANSWERED: frozenset({Phase.TRANSFERRING}) | _END,
    Phase.TRANSFERRING: frozenset({Phase.ANSWERED}) | _END,
    Phase.ENDING: frozenset({Phase.ENDED}),
    Phase.ENDED: frozenset(),
}


class EngineCall:
    """One call: its phase, the targets left to try, and the legs it owns."""

    def __init__(
        self, call_id: str, phase: Phase, targets: tuple[tuple[str, str], ...] = (), caller: Caller | None = None
    ) -> None:
        self.call_id = call_id
        self.phase = phase
        self.targets = list(targets)
        """``(trunk, target)`` pairs not tried yet, in failover order."""
        self.caller = caller or Caller("", CallerId("", ""))
        self.dialog = phase is Phase.INCOMING
        """Whether the SIP leg holds a dialog for this call right now."""
        self.attempt = 0
        self.abandoned = 0
        """The attempt given up because its target stayed silent (0: none)."""
        self.responded = 0
        """The last attempt whose target answered at all, if only with 100 Trying (0: none)."""
        self.timers: list[asyncio.TimerHandle] = []
        """When to give up the current attempt (see ``MediaEngine._watch``)."""
        self.cause: EndCause | None = None
        """Why the engine itself ends the call, when it does; otherwise the SIP side's reason."""
        self.bridge = Bridge()
        self.audio: CallAudio = self.bridge.audio
        """Where the SIP leg's audio goes: the bridge, or (native media) the relay's socket."""
        self.browser: BrowserLeg | None = None
        self.recording: Recording | None = None
        """Voicemail: the caller's message, written to ``record_to`` when the call ends."""
        self.record_to: Path | None = None
        self.verdict: Callable[[tuple[bool, str]], None] | None = None
        """Where call control's verdict on the far end's REFER goes, while the SIP side waits for it."""
        self.ended = asyncio.Event()

    @property
    def ending(self) -> bool:
        return self.phase in _END

    def stop_timers(self) -> None:
        """Cancel the current attempt's give-up timers (answered, failed over or ended)."""
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    def move(self, new: Phase) -> bool:
        """Go to ``new`` if the table allows it; False (and nothing changed) otherwise."""
        if new not in _NEXT[self.phase]:
            log.debug("engine call %s: %s --> %s not taken", self.call_id, self.phase.value, new.value)
            return False
        log.info("engine call %s: %s --> %s", self.call_id, self.phase.value, new.value)
        self.phase = new
        return True
