"""The narrow interface between call control and media engines.

Call control never holds a pjsua2 or aiortc object: it talks to an engine
only through the messages below.  Every message is a small frozen dataclass
of plain values, so it can cross a process boundary as JSON
(:func:`encode` / :func:`decode`) when engines run as worker processes; in
the embedded default both halves share one event loop and the objects are
passed as they are.

An engine is started with a ``SipRole``: on its own, or as a worker behind
the SIP front.

Commands (control -> engine):

- ``Dial``: answer the browser's WebRTC offer and place a SIP call to the first
  of ``targets`` that works: ``(trunk, number)`` pairs, or ``("", uri)`` for a
  direct call; a target that times out or answers 5xx fails over to the next.
  ``caller`` is the web user; trunks that present their callers name them
  ``caller_user`` (their extension, else their name) and ``caller_name``.
- ``Accept``: answer the browser's offer and answer the ringing SIP call.
- ``Serve``: answer a SIP call with a built-in application (``echo``, ``tone``,
  ``voicemail``: play ``greeting`` (a file; "" the default one) and a beep, then
  record the caller into the WAV file ``record``, in the state directory).
- ``Join``: make the call a participant of the conference ``room`` (its name), mixed
  in this engine's native relay: with ``offer``, a web user's, whose browser leg is
  answered (``WebrtcAnswer``, then ``Answered`` once the relay carries it); without,
  the ringing SIP call, answered. The Python media path refuses (503 / SIP 488).
- ``Ring``: send 180 Ringing for an incoming SIP call.
- ``Reject``: refuse an incoming SIP call with ``code``; ``users`` (behind a
  front) names the users this host has no page for, so the front can try
  the host where they are signed in.
- ``Hangup``: end a call in any state (BYE, CANCEL or a final response).
- ``SendDtmf``: send RFC 4733 digits on the SIP leg.
- ``Hold``: put the SIP leg on hold (re-INVITE ``a=sendonly``) or take it off.
- ``GetStats``: report the SIP leg's quality, answered by ``CallStats``.
- ``Record``: start (``on``) or stop recording the call into ``path`` (a file name without its
  extension, the same for every start of one call); ``meta`` is what the recording's metadata
  file says about the call (user, caller, callee...).
- ``Transfer``: ask the SIP far end to call ``target`` (a REFER; ``trunk`` as in
  ``Dial``) or, with ``replacing``, to take over that other call of this engine
  (a REFER with Replaces: attended transfer); answered by ``TransferStatus``.
- ``TransferVerdict``: call control's answer to ``TransferAsked``.

Events (engine -> control):

- ``EngineReady``: the engine listens; ``sip_host`` is where it takes INVITEs,
  ``capacity`` how many SIP calls it carries at once, ``media`` whether their
  packets go through Python (``python``) or the native relay (``native``).
- ``EngineDown``: the engine takes no calls for now (its SIP process stopped,
  and its calls have ended): control gives it none, the front ends the SIP
  dialogs it still keeps for it; an ``EngineReady`` follows once it is back.
- ``Incoming``: a SIP INVITE arrived (on ``trunk``, or "" for direct calls)
  from ``source`` (``ip:port``; ``from_gateway`` when one of the gateway's own
  engines sent it, a call between web users); control decides what happens to it.
  ``offer`` is the calling page's WebRTC offer when the call is direct, browser
  to browser (:mod:`gateway.directcalls`); SIP calls have none.
- ``TrunkState``: a trunk's registration changed (``registered``, SIP ``code``).
- ``WebrtcAnswer``: the engine's SDP answer for the browser.
- ``Progress``: 180/183 from the SIP side (``early_media`` when audio flows).
- ``Answered``: both legs are up.
- ``DtmfReceived``: a digit from the SIP side.
- ``HoldChanged``: the SIP leg is held by us (``local``) and/or the far end (``remote``).
- ``CallStats``: the SIP leg's codec, jitter, loss and round trip, for ``request``
  (each None where it was not measured: the native relay measures no jitter or round trip).
- ``TransferAsked``: the SIP far end asks (REFER) that this call go on with
  ``target`` (a URI); the SIP side waits for ``TransferVerdict``.
- ``Transferred``: after an accepted ``TransferAsked``, the call's page now
  talks to ``peer`` (``peer_name``), the old dialog is ended.
- ``TransferStatus``: a transfer ended without that (``code`` >= 300), or the
  far end reported a ``Transfer`` done (2xx).
- ``SipRefused``: the SIP side refused a request call control never hears of
  (``reason``: ``malformed`` INVITE, ``transfer`` (a REFER refused), ``replaces``,
  ``error``), for the operator's count.
- ``RecordingChanged``: recording started or stopped (``error``: why it stopped by itself, or could
  not start).
- ``RecordingSaved``: the files of a recording were written (at each stop: every segment so far), as
  ``recording`` (its id), or ``error``; ``final`` once the call is over.
- ``VoicemailSaved``: the caller of a ``voicemail`` call left a message of
  ``seconds``, now in its ``record`` file; sent before its ``Ended``.
- ``Ended``: the call is over on both legs, with its cause; sent exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from typing import TYPE_CHECKING, Callable, Protocol, Union

if TYPE_CHECKING:
    from .config import Config


@dataclasses.dataclass(frozen=True)
class SipRole:
    """Where an engine stands: facing the network itself, or a worker behind a SIP front.

    Behind a front every request leaves through it (``front`` as outbound
    proxy, so trunks see one address), and only the worker that
    ``registers`` keeps the trunks' registrations.
    """

    front: str = ""
    registers: bool = True
    internal_host: str = ""
    """Behind a front: the address SIP listens on (RTP stays on ``sip.listen``)."""


@dataclasses.dataclass
class EngineSpec:
    """What a worker process needs to run one engine: its configuration (with its own SIP and RTP
    ports), place, number, and its end of the link to call control."""

    config: Config
    role: SipRole
    index: int
    sock: socket.socket


@dataclasses.dataclass(frozen=True)
class Dial:
    call_id: str
    targets: tuple[tuple[str, str], ...]
    offer: str
    caller: str
    caller_user: str = ""
    caller_name: str = ""


@dataclasses.dataclass(frozen=True)
class Accept:
    call_id: str
    offer: str


@dataclasses.dataclass(frozen=True)
class Serve:
    call_id: str
    app: str
    record: str = ""
    greeting: str = ""


@dataclasses.dataclass(frozen=True)
class Join:
    call_id: str
    room: str
    offer: str = ""


@dataclasses.dataclass(frozen=True)
class Ring:
    call_id: str


@dataclasses.dataclass(frozen=True)
class Reject:
    call_id: str
    code: int
    reason: str
    users: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Hangup:
    call_id: str


@dataclasses.dataclass(frozen=True)
class SendDtmf:
    call_id: str
    digits: str


@dataclasses.dataclass(frozen=True)
class Hold:
    call_id: str
    hold: bool


@dataclasses.dataclass(frozen=True)
class GetStats:
    call_id: str
    request: str


@dataclasses.dataclass(frozen=True)
class Record:
    call_id: str
    on: bool
    path: str = ""
    meta: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Transfer:
    call_id: str
    trunk: str = ""
    target: str = ""
    replacing: str = ""


@dataclasses.dataclass(frozen=True)
class TransferVerdict:
    call_id: str
    allowed: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class EngineReady:
    sip_host: str
    capacity: int
    media: str = "python"


@dataclasses.dataclass(frozen=True)
class EngineDown:
    reason: str


@dataclasses.dataclass(frozen=True)
class Incoming:
    call_id: str
    to_user: str
    from_uri: str
    from_name: str
    trunk: str
    source: str = ""
    from_gateway: bool = False
    offer: str = ""


@dataclasses.dataclass(frozen=True)
class TrunkState:
    trunk: str
    registered: bool
    code: int
    reason: str


@dataclasses.dataclass(frozen=True)
class WebrtcAnswer:
    call_id: str
    sdp: str


@dataclasses.dataclass(frozen=True)
class Progress:
    call_id: str
    code: int
    early_media: bool


@dataclasses.dataclass(frozen=True)
class Answered:
    call_id: str


@dataclasses.dataclass(frozen=True)
class DtmfReceived:
    call_id: str
    digit: str


@dataclasses.dataclass(frozen=True)
class HoldChanged:
    call_id: str
    local: bool
    remote: bool


@dataclasses.dataclass(frozen=True)
class CallStats:
    call_id: str
    request: str
    codec: str
    jitter_ms: float | None
    loss_pct: float | None
    rtt_ms: float | None


@dataclasses.dataclass(frozen=True)
class TransferAsked:
    call_id: str
    target: str


@dataclasses.dataclass(frozen=True)
class Transferred:
    call_id: str
    peer: str
    peer_name: str


@dataclasses.dataclass(frozen=True)
class TransferStatus:
    call_id: str
    code: int
    reason: str


@dataclasses.dataclass(frozen=True)
class SipRefused:
    reason: str
    code: int


@dataclasses.dataclass(frozen=True)
class RecordingChanged:
    call_id: str
    on: bool
    error: str = ""


@dataclasses.dataclass(frozen=True)
class RecordingSaved:
    call_id: str
    recording: str
    seconds: float
    final: bool
    error: str = ""


@dataclasses.dataclass(frozen=True)
class VoicemailSaved:
    call_id: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class Ended:
    call_id: str
    cause: str
    code: int
    reason: str


Command = Union[Dial, Accept, Serve, Join, Ring, Reject, Hangup, SendDtmf, Hold, GetStats, Record, Transfer, TransferVerdict]
Event = Union[
    EngineReady, EngineDown, Incoming, TrunkState, WebrtcAnswer, Progress, Answered, DtmfReceived, HoldChanged, CallStats,
    TransferAsked, Transferred, TransferStatus, SipRefused, RecordingChanged, RecordingSaved, VoicemailSaved, Ended,
]

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Dial, Accept, Serve, Join, Ring, Reject, Hangup, SendDtmf, Hold, GetStats, Record, Transfer, TransferVerdict,
        EngineReady, EngineDown, Incoming, TrunkState, WebrtcAnswer, Progress, Answered, DtmfReceived, HoldChanged,
        CallStats, TransferAsked, Transferred, TransferStatus, SipRefused, RecordingChanged, RecordingSaved, VoicemailSaved, Ended,
    )
}


def encode(message: Command | Event) -> str:
    """One message as a JSON line, for engines in other processes."""
    return json.dumps({"type": type(message).__name__, **dataclasses.asdict(message)})


def decode(line: str) -> Command | Event:
    """The inverse of :func:`encode`; raises ``ValueError`` on anything else."""
    data = json.loads(line)
    cls = _TYPES.get(data.pop("type", None)) if isinstance(data, dict) else None
    if cls is None:
        raise ValueError(f"not an engine message: {line[:80]!r}")
    return cls(**{key: _tuples(value) for key, value in data.items()})


def decode_command(line: str) -> Command:
    """A command from call control (what a worker reads); anything else raises ``ValueError``."""
    message = decode(line)
    if not isinstance(message, _COMMANDS):
        raise ValueError(f"not a command: {type(message).__name__}")
    return message


def decode_event(line: str) -> Event:
    """An event from an engine (what the supervisor reads); anything else raises ``ValueError``."""
    message = decode(line)
    if isinstance(message, _COMMANDS):
        raise ValueError(f"not an event: {type(message).__name__}")
    return message


_COMMANDS = (Dial, Accept, Serve, Join, Ring, Reject, Hangup, SendDtmf, Hold, GetStats, Record, Transfer, TransferVerdict)


def _tuples(value: object) -> object:
    """JSON has no tuples: turn lists back into the tuples the messages hold."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


class EngineLink(Protocol):
    """How call control reaches one engine; events come back through ``on_event``."""

    def send(self, command: Command) -> None: ...


EventSink = Callable[[Event], None]


class LocalLink:
    """The embedded default: engine and call control in one event loop.

    Each message is delivered on a later loop iteration, as it would be from
    another process, so neither side ever runs inside the other's handler.
    """

    def __init__(self, deliver: Callable[[Command], None]) -> None:
        self._deliver = deliver

    def send(self, command: Command) -> None:
        asyncio.get_running_loop().call_soon(self._deliver, command)


class StreamLink:
    """Messages as JSON lines on a stream: both ends of a worker's socket.

    Call control sends commands to a worker through one; the worker emits its
    events through another.  Once the stream closes, messages are dropped.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def send(self, message: Command | Event) -> None:
        if not self._writer.is_closing():
            self._writer.write(encode(message).encode() + b"\n")

    def close(self) -> None:
        self._writer.close()
