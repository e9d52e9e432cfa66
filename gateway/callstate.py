"""Call state as the page sees it, with every transition logged once."""

from __future__ import annotations

import enum
import logging

log = logging.getLogger(__name__)


class CallState(enum.Enum):
    CALLING = "calling"
    RINGING = "ringing"
    EARLY_MEDIA = "early_media"
    INCOMING = "incoming"
    ANSWERING = "answering"
    ANSWERED = "answered"
    ENDING = "ending"
    ENDED = "ended"


_ALLOWED: dict[CallState, frozenset[CallState]] = {
    CallState.CALLING: frozenset({CallState.RINGING, CallState.EARLY_MEDIA, CallState.ANSWERED}),
    CallState.RINGING: frozenset({CallState.EARLY_MEDIA, CallState.ANSWERED}),
    CallState.EARLY_MEDIA: frozenset({CallState.RINGING, CallState.ANSWERED}),
    CallState.INCOMING: frozenset({CallState.ANSWERING, CallState.CALLING}),  # calling: a click-to-call answered
    CallState.ANSWERING: frozenset({CallState.ANSWERED}),
    CallState.ANSWERED: frozenset(),
    CallState.ENDING: frozenset(),
    CallState.ENDED: frozenset(),
}
_ENDABLE = frozenset(CallState) - {CallState.ENDED}


def can_move(old: CallState, new: CallState) -> bool:
    """Whether a call may go from ``old`` to ``new``; every live state may end."""
    if new in (CallState.ENDING, CallState.ENDED):
        return old in _ENDABLE and old is not new
    return new in _ALLOWED[old]


def log_move(call_id: str, old: CallState, new: CallState) -> None:
    log.info("call %s: %s --> %s", call_id, old.value, new.value)
