"""Call history: one entry per call and web user, as call control saw the call end.

Call control knows every call a user places or is rung for, so the history is
the gateway's, not one browser's: every page of the user shows the same list,
and it outlives a reload, another browser and a restart (:mod:`gateway.userfiles`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .controlcall import ControlCall

MAX_ENTRIES = 200
"""Entries kept per user, newest first; older ones are dropped."""
DIRECTIONS = ("in", "out")


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    peer: str
    """What was dialled, or who called: a SIP URI, or a web user's name."""
    peer_name: str
    """The name the caller's SIP side gave (From's display name), or ""."""
    direction: str
    """``in`` (rang this user) or ``out`` (placed by this user)."""
    start: float
    """Unix time the call began (dialled, or started to ring)."""
    answered: bool
    """Whether this user talked: answered here, or answered by the far end."""
    duration: float
    """Seconds from the answer to the end; 0 when not answered."""
    cause: str
    """How it ended for this user: an end cause of docs/protocol.md."""

    def stored(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> HistoryEntry:
        """An entry read back from a file; ValueError when it is not one this module wrote."""
        fields = {field.name: field.type for field in dataclasses.fields(cls)}
        if not isinstance(data, Mapping) or set(data) != set(fields):
            raise ValueError(f"a history entry has the fields {', '.join(fields)}")
        kinds = {"str": str, "float": (int, float), "bool": bool}
        for name, kind in fields.items():
            value = data[name]
            if not isinstance(value, kinds[str(kind)]) or (kind != "bool" and isinstance(value, bool)):
                raise ValueError(f"history entry field {name!r} must be {kind}")
        entry = cls(**data)
        if entry.direction not in DIRECTIONS or entry.duration < 0 or len(entry.peer) > 1024 or len(entry.peer_name) > 256:
            raise ValueError("a history entry's direction, duration or peer is out of range")
        return entry

    def for_page(self, contact_name: str) -> dict[str, Any]:
        """As the page gets it: ``contact_name`` is the user's name for the peer now ("" if none)."""
        return {**self.stored(), "contact_name": contact_name}


def entry(call: ControlCall, user: str) -> HistoryEntry:
    """How ``call`` went for ``user``: one of those it rang may have missed what another answered."""
    assert call.end is not None and call.ended is not None
    talked = call.answered is not None and user == call.user
    cause = call.end.cause
    if call.answered is not None and not talked:
        cause = "answered_elsewhere"
    direction = "in" if call.direction == "inbound" else "out"
    duration = round(call.ended - call.answered, 3) if talked and call.answered is not None else 0.0
    return HistoryEntry(call.peer, call.peer_name, direction, round(call.created, 3), talked, duration, cause)
