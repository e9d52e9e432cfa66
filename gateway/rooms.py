"""Conference rooms as call control sees them: who is in which room, on which engine.

A room (``[[rooms]]`` in the dialplan) is joined by dialling its number from
the page or by calling it over SIP; each participant is a call of its own,
which the engine makes a participant of the room's mix in its native relay
(:class:`gateway.engineapi.Join`).  A room lives on one engine, its first
participant's, while anyone is in it: later web participants are placed on
that engine; behind a SIP front a :class:`RoomRouter` (the front) sends SIP
callers of the room's number to that engine's worker, and one that reached
another engine all the same is refused.  Rooms need the native media path;
on the Python one they are refused plainly.
Every web participant's page is told the room's roster (a ``room`` message)
whenever someone joins or leaves.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Callable, Protocol

from . import engineapi as api
from .dialplan import Dialplan, Route
from .endcause import EndCause
from .requesterror import RequestError

if TYPE_CHECKING:
    from .controlcall import ControlCall, Engine

log = logging.getLogger(__name__)

NEED_NATIVE = "Conference rooms need the native media relay, and this gateway carries audio in Python"


class RoomRouter(Protocol):
    """Sends SIP calls to a room's number to the engine (``host:port`` of its SIP) that carries the room."""

    def room_opened(self, number: str, engine: str) -> None: ...
    def room_closed(self, number: str) -> None: ...


@dataclasses.dataclass(eq=False)
class _Room:
    name: str
    number: str
    engine: Engine
    calls: list[ControlCall] = dataclasses.field(default_factory=list)
    """The participants, in the order they joined."""


class Rooms:
    """The rooms that have participants now."""

    def __init__(self, plan: Dialplan, router: RoomRouter | None = None) -> None:
        self._plan = plan
        self._router = router
        self._rooms: dict[str, _Room] = {}
        self._of: dict[str, _Room] = {}
        """Call id -> the room it is a participant of."""

    def engine_for(self, route: Route, free_engine: Callable[[], Engine]) -> Engine:
        """Where a web user joining ``route``'s room is carried: the room's engine, or for its first
        participant ``free_engine()``; RequestError when the room is full or cannot be carried.

        A web participant takes none of its engine's SIP lines (``capacity``), only a call of its
        relay, so a room's engine takes one however many calls it counts."""
        room = self._rooms.get(route.target)
        self._check_room(route)
        engine = room.engine if room is not None else free_engine()
        if engine.media != "native":
            raise RequestError("not_possible", NEED_NATIVE)
        return engine

    def join(self, call: ControlCall, route: Route, offer: str) -> None:
        """The page's call ``call`` joins ``route``'s room on its engine (chosen by :meth:`engine_for`)."""
        self._add(call, route)
        log.info("call %s: %s joins room %s", call.call_id, call.user, route.target)
        call.engine.link.send(api.Join(call.call_id, route.target, offer))

    def admit(self, call: ControlCall, route: Route) -> EndCause | None:
        """A SIP caller to the room's number: answered into the room, or the reason it is refused."""
        room = self._rooms.get(route.target)
        try:
            self._check_room(route)
        except RequestError as refused:
            return EndCause("busy", 486, refused.message)
        if call.engine.media != "native":
            return EndCause("failed", 488, NEED_NATIVE)
        if room is not None and room.engine is not call.engine:
            return EndCause("failed", 503, f"The room {route.target} is carried by another media engine")
        self._add(call, route)
        log.info("call %s: %s joins room %s over SIP", call.call_id, call.caller, route.target)
        call.engine.link.send(api.Join(call.call_id, route.target))
        return None

    def refuse(self, call: ControlCall, what: str) -> None:
        """RequestError when ``call`` is a room's participant: being ``what`` (held, transferred, recorded)
        is for calls between two parties."""
        if call.call_id in self._of:
            raise RequestError("not_possible", f"A call in a conference room cannot be {what}")

    def answered(self, call: ControlCall) -> None:
        """A participant is in: every page in the room gets the roster."""
        room = self._of.get(call.call_id)
        if room is not None:
            self._tell(room)

    def left(self, call: ControlCall) -> None:
        """A participant's call ended: the others' pages get the roster; the last one closes the room."""
        room = self._of.pop(call.call_id, None)
        if room is None:
            return
        room.calls.remove(call)
        log.info("call %s: left room %s (%d still in it)", call.call_id, room.name, len(room.calls))
        if room.calls:
            self._tell(room)
        else:
            del self._rooms[room.name]
            if self._router is not None:
                self._router.room_closed(room.number)

    def _check_room(self, route: Route) -> None:
        definition = self._plan.room(route.target)
        room = self._rooms.get(route.target)
        if definition is not None and room is not None and len(room.calls) >= definition.max_participants:
            raise RequestError("room_full", f"The room {route.target} is full ({definition.max_participants} people)")

    def _add(self, call: ControlCall, route: Route) -> None:
        room = self._rooms.get(route.target)
        if room is None:
            room = self._rooms[route.target] = _Room(route.target, route.number, call.engine)
            if self._router is not None:
                self._router.room_opened(route.number, call.engine.sip_host)
        room.calls.append(call)
        self._of[call.call_id] = room

    @staticmethod
    def _tell(room: _Room) -> None:
        names = [call.user or call.caller_name or _sip_user(call.caller) for call in room.calls]
        for call in room.calls:
            if call.owner is not None:
                call.owner.send(
                    {"type": "room", "call": call.call_id, "room": room.name, "number": room.number, "participants": names}
                )


def _sip_user(uri: str) -> str:
    """``sip:alice@host:port`` -> ``alice``: how a SIP caller is named in the roster without a display name."""
    return uri.split(":", 1)[-1].split("@", 1)[0]
