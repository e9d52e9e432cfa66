"""The SIP leg as the media engine sees it, with no pjsua2 in sight.

The engine asks through :class:`SipLeg` (coroutines), hears back through
typed events delivered on its event loop, and gets :class:`SipError` when
pjsua2 refuses something.  Audio crosses through :class:`AudioIO`.  The real
leg is :class:`gateway.pjsipleg.PjsipLeg`; tests drive the engine with a
fake one, so the engine's call logic is tested without a SIP stack.

Events the SIP leg emits: :class:`~gateway.engineapi.Incoming`,
:class:`~gateway.engineapi.Progress`, :class:`~gateway.engineapi.Answered`,
:class:`~gateway.engineapi.DtmfReceived`, :class:`~gateway.engineapi.HoldChanged`,
:class:`~gateway.engineapi.TrunkState`, :class:`~gateway.engineapi.Transferred`,
:class:`~gateway.engineapi.TransferStatus` and :class:`~gateway.engineapi.SipRefused`
(the engine passes them on as they are), plus :class:`Disconnected`, :class:`Responded`,
:class:`MediaTimeout`, :class:`MediaReady`, :class:`NativeSocket` and :class:`TransferRequest`,
which only the engine sees.

A call's audio goes one of two ways: through pjsua2's conference bridge to
Python (:class:`AudioIO`), or past pjsua2 altogether (:class:`NativePort`):
then the SDP pjsua2 sends names another socket, pjsua2 only negotiates, and
the leg reports what was negotiated as :class:`MediaReady`.
"""

from __future__ import annotations

import collections
import dataclasses
import socket
from collections.abc import Sequence
from typing import Callable, Protocol, Union

from .dialplan import CallerId

from . import engineapi as api

TOO_MANY_CALLS = 70010
"""pjsua's PJ_ETOOMANY: every call slot is taken."""


class SipError(Exception):
    """pjsua2 refused an operation; raised on the asyncio side instead of ``pjsua2.Error``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    @property
    def no_free_line(self) -> bool:
        return self.status == TOO_MANY_CALLS


@dataclasses.dataclass(frozen=True)
class Disconnected:
    """The dialog is over (final response, BYE, CANCEL or timeout); its pjsua2 objects are gone."""

    call_id: str
    code: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Responded:
    """The far end answered an INVITE of this call at all, if only with 100 Trying: it is there.

    Sent once per dialog; ringing, an answer and a refusal have their own events."""

    call_id: str


@dataclasses.dataclass(frozen=True)
class MediaTimeout:
    """No RTP from the far end for ``sip.media_timeout`` seconds."""

    call_id: str


@dataclasses.dataclass(frozen=True)
class MediaReady:
    """The SIP media of a :class:`NativePort` call as negotiated (again after every re-INVITE)."""

    call_id: str
    remote: tuple[str, int]
    """Where the far end takes RTP."""
    payload_type: int
    """0 PCMU or 8 PCMA."""
    event_payload_type: int | None
    """RFC 4733 telephone-event, when negotiated."""
    send: bool
    receive: bool
    """False while the call is held in that direction."""
    rtcp_remote: tuple[str, int] | None = None
    """Where the far end takes RTCP (its ``a=rtcp``, else the port after RTP's)."""


@dataclasses.dataclass(frozen=True)
class NativeSocket:
    """The sockets an incoming call's :class:`NativePort` names (RTP, and RTCP on the next port), made by
    the SIP leg (pjsua2 writes its SDP answer before the engine hears of the call); from now on the engine's."""

    call_id: str
    sock: socket.socket
    rtcp: socket.socket


@dataclasses.dataclass(frozen=True)
class TransferRequest:
    """The far end of an answered call sent a REFER to ``target``: ``answer(allowed, reason)`` says
    whether the gateway calls it.  The SIP thread waits for the answer (see :class:`gateway.sipthread.Reply`)."""

    call_id: str
    target: str
    answer: Callable[[tuple[bool, str]], None]


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who places an outgoing call: the web user ``name`` (the From of a direct call), and
    ``identity``, which trunks that present their callers (``caller_id = "user"``) show."""

    name: str
    identity: CallerId


SipEvent = Union[
    api.Incoming, api.Progress, api.Answered, api.DtmfReceived, api.HoldChanged, api.TrunkState, api.SipRefused,
    api.Transferred, api.TransferStatus, Disconnected, Responded, MediaTimeout, MediaReady, NativeSocket,
    TransferRequest,
]
SipEventSink = Callable[[SipEvent], None]

Quality = tuple[str, float | None, float | None, float | None]
"""A SIP leg's codec, jitter (ms), loss (%) and round trip (ms); None: not measured."""


class FrameQueue:
    """Bounded hand-off of PCM frames from asyncio to the SIP side's clock thread.

    Old frames are dropped when it is full, so latency cannot grow; an empty
    queue yields silence, so the SIP side never stalls.  ``put`` and ``take``
    are single deque operations, atomic in CPython, so no lock is needed.
    """

    def __init__(self, depth: int, silence: bytes) -> None:
        self._frames: collections.deque[bytes] = collections.deque(maxlen=depth)
        self._silence = silence

    def put(self, frame: bytes) -> None:
        self._frames.append(frame)

    def take(self) -> bytes:
        try:
            return self._frames.popleft()
        except IndexError:
            return self._silence


class FrameSource(Protocol):
    """What the SIP side plays: a 20 ms frame whenever pjsua2's clock asks (on its thread, so never blocking)."""

    def take(self) -> bytes: ...


@dataclasses.dataclass
class AudioIO:
    """Where a call's audio goes: frames to the SIP side (a :class:`FrameQueue`, or a built-in application
    such as voicemail), and a sink for frames from it."""

    to_sip: FrameSource
    from_sip: Callable[[bytes], None]


@dataclasses.dataclass(frozen=True)
class NativePort:
    """A call's audio bypasses pjsua2: its SDP names this port (on the address pjsua2's SDP gives) instead,
    and RTCP is taken on the next one."""

    port: int


CallAudio = Union[AudioIO, NativePort]


class SipLeg(Protocol):
    """What the engine asks of the SIP side; every call is identified by the engine's call id."""

    address: str
    """``host:port`` where this leg takes SIP, once started."""

    async def start(self, events: SipEventSink) -> None: ...
    async def stop(self) -> None:
        """Hang up every dialog (BYE, CANCEL or a final response) and free the stack."""
    async def make_call(self, call_id: str, trunk: str, target: str, caller: Caller, audio: CallAudio) -> None:
        """INVITE ``target`` (through ``trunk``, or a URI with no trunk); raises :class:`SipError`."""
    async def ring(self, call_id: str) -> None: ...
    async def answer(self, call_id: str, audio: CallAudio) -> None: ...
    async def serve(self, call_id: str, app: str, audio: CallAudio | None) -> None:
        """Answer with a built-in application: pjsua2's own (``audio`` None), one in Python on the
        conference bridge (:class:`AudioIO`), or ``audio``'s port (native media)."""
    async def reject(self, call_id: str, code: int, reason: str, users: Sequence[str]) -> None: ...
    async def hangup(self, call_id: str) -> None: ...
    async def send_dtmf(self, call_id: str, digits: str) -> None: ...
    async def hold(self, call_id: str, hold: bool) -> None: ...
    async def transfer(self, call_id: str, trunk: str, target: str, replacing: str) -> None:
        """REFER the far end to ``target`` (``trunk`` as in :meth:`make_call`), or with ``replacing``
        to that other call's far end (attended); the outcome comes as a TransferStatus."""
    async def quality(self, call_id: str) -> Quality:
        """Codec, jitter (ms), loss (%), round trip (ms); empty values for an unknown call."""
    async def tick(self) -> None:
        """Once a second: look for calls whose RTP stopped (reported as :class:`MediaTimeout`)."""
