"""One engine's native media path: calls' packets carried by :class:`~gateway.nativerelay.NativeRelay`.

A call's SIP audio is pointed at a socket of this module's (pjsua2 only
negotiates, see :mod:`gateway.sdp`); once the browser's ICE and DTLS are up,
aiortc's media path is taken over (:mod:`gateway.webrtchandoff`) and the relay
carries SRTP/Opus <-> RTP/G.711 with no Python per packet.  What the relay
hands back comes through here: STUN and DTLS go to aioice and aiortc (ICE
consent, DTLS alerts) through the ICE socket they came on, RFC 4733 telephone-events become DTMF events.  The
media timeout is read from the relay's counters, the SIP leg's quality
(jitter, loss, round trip) from its RTCP figures.  Each call has an RTCP
socket on the SIP side too, on the port after RTP's (:mod:`gateway.rtpsockets`).

The built-in applications (600 echo, 601 tone, voicemail) are served by
small asyncio endpoints here: pjsua2 runs without a conference clock in this
mode, and they are not calls worth a native path.

Conference rooms are mixed in the relay: a room's participant is a relay call
with one leg, the browser's (a web user, with no SIP side) or the SIP side's
(a caller to the room's number); see :meth:`NativeMedia.join`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import socket
import time
from typing import Any, Callable

import numpy as np

from . import audioformat, engineapi as api, g711
from .config import Config
from .nativerelay import BrowserMedia, Foreign, NativeRelay, SipMedia, load_error
from .recorder import RATE as RECORDING_RATE, beep_pcm
from .rtpsockets import bind_pair
from .sipapi import MediaReady, MediaTimeout, NativePort, Quality, SipEventSink
from .voicemail import Recording

log = logging.getLogger(__name__)

MEDIA = ("auto", "native", "python")
_CODECS = {0: "PCMU/8000", 8: "PCMA/8000"}
_DTMF = "0123456789*#ABCD"
_TONE_HZ = 440
_FRAME_SAMPLES = 160
"""20 ms at G.711's 8 kHz."""


def unavailable() -> str | None:
    """Why this process cannot carry calls natively (None: it can)."""
    error = load_error()
    if error:
        return error
    try:
        from . import webrtchandoff  # noqa: F401 - checks the aiortc/aioice internals it relies on
    except ImportError as exc:
        return str(exc)
    return None


def wanted(config: Config) -> bool:
    """Whether the engines carry media natively: ``native`` must, ``auto`` does when it can (logged once)."""
    media = config.engines.media
    if media == "python":
        return False
    reason = unavailable()
    if reason is None and any(_is_turn(server) for server in config.webrtc.ice_servers):
        reason = "the gateway's own ICE servers include TURN, whose relayed packets the native path does not carry"
    srtp = [trunk.name for trunk in config.plan.trunks.values() if trunk.srtp != "off"]
    if reason is None and srtp:
        reason = f"trunk {', '.join(srtp)} uses SRTP, which the native path does not carry (pjsua2 does, in Python)"
    if reason is None:
        return True
    if media == "native":
        raise OSError(f"engines.media is \"native\" but {reason}")
    log.warning("media is carried in Python: %s", reason)
    return False


def _is_turn(server: dict[str, Any]) -> bool:
    urls = server.get("urls", [])
    return any(str(url).startswith(("turn:", "turns:")) for url in ([urls] if isinstance(urls, str) else urls))


@dataclasses.dataclass(eq=False)
class _Call:
    sock: socket.socket | None = None
    """The SIP side's RTP socket; None for a web user in a room (no SIP side)."""
    rtcp: socket.socket | None = None
    path: Any = None
    """The browser's :class:`~gateway.webrtchandoff.MediaPath`, once handed off."""
    sip: MediaReady | None = None
    handle: int | None = None
    ssrc: int = dataclasses.field(default_factory=lambda: secrets.randbits(32))
    dtmf: int | None = None
    """RTP timestamp of the last telephone-event reported, so each press is reported once."""
    app: asyncio.DatagramTransport | None = None
    room: int = 0
    """The relay's number for the conference room the call is a participant of (0: none)."""


class NativeMedia:
    """The relay and, per call, its SIP-side socket and the two legs' parameters until both are known."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._events: SipEventSink = lambda event: None
        self._relay = NativeRelay(max_calls=max(64, config.sip.max_calls * 2))
        self._calls: dict[str, _Call] = {}
        self._handles: dict[int, str] = {}
        self._tones: dict[int, list[bytes]] = {}
        self._rooms: dict[str, int] = {}
        """Conference room name -> the relay's number for it."""

    def start(self, events: SipEventSink) -> None:
        """Start the relay; DTMF and media timeouts are reported to ``events``."""
        self._events = events
        self._relay.start(on_foreign=self._foreign)

    def close(self) -> None:
        for call_id in list(self._calls):
            self.close_call(call_id)
        self._relay.close()

    # -- a call's life ------------------------------------------------------------

    def open_call(self, call_id: str) -> NativePort:
        """The socket for the call's SIP media, on the address pjsua2 gives in its SDP; made once per call
        (an incoming call's was made by the SIP leg, see :meth:`adopt`)."""
        call = self._calls.setdefault(call_id, _Call())
        if call.sock is None:
            call.sock, call.rtcp = bind_pair(self._config.sip.listen, self._config.sip.rtp_port)
        return NativePort(call.sock.getsockname()[1])

    def adopt(self, call_id: str, sock: socket.socket, rtcp: socket.socket) -> None:
        """An incoming call's sockets, made by the SIP leg before pjsua2 wrote its SDP answer."""
        self._calls[call_id] = _Call(sock, rtcp)

    async def serve(self, call_id: str, app: str, recording: Recording | None = None) -> NativePort:
        """A built-in application on its own socket: ``echo`` returns what it gets, ``tone`` plays 440 Hz,
        and with a ``recording``, voicemail plays its greeting and records the caller."""
        port = self.open_call(call_id)
        call = self._calls[call_id]
        loop = asyncio.get_running_loop()
        protocol: asyncio.DatagramProtocol
        if recording is not None:
            protocol = _Voicemail(lambda: call.sip, recording)
        elif app == "echo":
            protocol = _Echo()
        else:
            protocol = _Player(lambda: call.sip, self._tone_frame)
        call.app, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=call.sock)
        return port

    def join(self, call_id: str, room: str) -> None:
        """Make the call a participant of conference ``room``: once its one leg is up (the browser's,
        handed off, or the SIP side's, negotiated) the relay mixes it with the room's others."""
        call = self._calls.setdefault(call_id, _Call())
        call.room = self._rooms.setdefault(room, len(self._rooms) + 1)

    def browser_ready(self, call_id: str, path: Any) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.path = path
            self._start(call_id, call)

    def sip_ready(self, event: MediaReady) -> None:
        """pjsua2 negotiated (or renegotiated: hold, resume, a new address) the call's SIP media."""
        call = self._calls.get(event.call_id)
        if call is None:
            return
        call.sip = event
        if call.handle is not None:
            self._relay.update_sip(call.handle, event.remote, event.payload_type, event.send, event.receive, event.rtcp_remote)
        else:
            self._start(event.call_id, call)

    def close_call(self, call_id: str) -> None:
        """Stop carrying the call; its sockets are closed here or, the browser's, by aiortc."""
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        if call.handle is not None:
            self._log_quality(call_id, call.handle)
            self._relay.remove_call(call.handle)
            self._handles.pop(call.handle, None)
        if call.app is not None:
            call.app.close()
        elif call.sock is not None:
            call.sock.close()
        if call.rtcp is not None:
            call.rtcp.close()

    def _start(self, call_id: str, call: _Call) -> None:
        """Hand the call to the relay once both legs are known (a room's participant: its one leg)."""
        if call.handle is not None or (call.path is None and call.sip is None):
            return
        if call.room:
            self._start_participant(call_id, call)
            return
        if call.path is None or call.sip is None:
            return
        call.handle = self._relay.add_call(_browser_media(call.path), self._sip_media(call, call.sip))
        self._handles[call.handle] = call_id
        log.info("call %s: media carried natively (SIP %s %s)", call_id, _CODECS.get(call.sip.payload_type), call.sip.remote)

    def _start_participant(self, call_id: str, call: _Call) -> None:
        """A web participant is answered once the relay carries it; a SIP one was answered by pjsua2."""
        browser = None if call.path is None else _browser_media(call.path)
        sip = None if call.sip is None else self._sip_media(call, call.sip)
        call.handle = self._relay.add_call(browser, sip, room=call.room)
        self._handles[call.handle] = call_id
        log.info("call %s: in conference room %d, from the %s", call_id, call.room, "page" if browser else "SIP side")
        if browser is not None:
            self._events(api.Answered(call_id))

    @staticmethod
    def _sip_media(call: _Call, sip: MediaReady) -> SipMedia:
        assert call.sock is not None and call.rtcp is not None
        return SipMedia(
            call.sock.fileno(), sip.remote, sip.payload_type, call.ssrc, sip.event_payload_type, sip.send, sip.receive,
            call.rtcp.fileno(), sip.rtcp_remote,
        )

    def tap(self, call_id: str) -> NativeTap:
        """The call's recording tap: the relay paces both legs into stereo itself (LookupError: not carried yet)."""
        call = self._calls.get(call_id)
        if call is None or call.handle is None:
            raise LookupError("the call's audio is not flowing yet")
        return NativeTap(self._relay, call.handle)

    # -- what the relay reports -----------------------------------------------------

    def report_timeouts(self) -> None:
        """Once a second (the engine's tick): calls whose far end sent no RTP for ``sip.media_timeout``
        seconds while it should have are reported as :class:`~gateway.sipapi.MediaTimeout`."""
        now, limit = time.monotonic(), self._config.sip.media_timeout
        for call_id, call in list(self._calls.items()):
            if call.handle is None or call.sip is None or not call.sip.receive:
                continue
            if now - self._relay.stats(call.handle)["last_sip_media"] > limit:
                self._events(MediaTimeout(call_id))

    def quality(self, call_id: str) -> Quality:
        """The SIP leg as the relay's RTCP sees it: codec, jitter (ms) and loss (%) of what arrives, and the
        round trip (ms) from the far end's reports (None until one echoes the relay's SR)."""
        call = self._calls.get(call_id)
        if call is None or call.handle is None or call.sip is None:
            return ("", None, None, None)
        stats = self._relay.stats(call.handle)
        return (_CODECS.get(call.sip.payload_type, ""), stats["sip_jitter_ms"], _loss_pct(stats, "sip"), stats["sip_rtt_ms"])

    def _log_quality(self, call_id: str, handle: int) -> None:
        """Both legs' RTCP figures as the call ends: the browser's are nowhere else on the gateway's side."""
        stats = self._relay.stats(handle)
        legs = [
            f"{leg} jitter {stats[f'{leg}_jitter_ms']:.1f} ms, loss {_loss_pct(stats, leg):.1f} %, "
            f"round trip {_ms(stats[f'{leg}_rtt_ms'])}"
            for leg in ("sip", "browser")
        ]
        log.info("call %s: RTCP %s", call_id, "; ".join(legs))

    def send_dtmf(self, call_id: str, digits: str) -> bool:
        """RFC 4733 in the relay's own RTP stream; False when that is not possible (then SIP INFO)."""
        call = self._calls.get(call_id)
        if call is None or call.handle is None:
            return False
        return self._relay.send_dtmf(call.handle, bytes(_DTMF.index(digit) for digit in digits.upper()))

    def _foreign(self, batch: list[Foreign]) -> None:
        for item in batch:
            call_id = self._handles.get(item.handle)
            call = self._calls.get(call_id) if call_id is not None else None
            if call is None:
                continue
            if item.kind == "browser":
                call.path.feed_back(item.data, item.source, item.socket)
            elif item.kind == "moved":
                log.info(
                    "call %s: the browser's media moved to %s:%d, on our %s:%d, and the relay with it",
                    call_id, *item.source, *call.path.local_address(item.socket),
                )
                call.path.follow(item.source, item.socket)
            else:
                self._telephone_event(call_id, call, item.data)

    def _telephone_event(self, call_id: str, call: _Call, packet: bytes) -> None:
        """RFC 4733: one digit per event, however many packets (and end retransmissions) carry it."""
        offset = 12 + 4 * (packet[0] & 0x0F)
        if packet[0] & 0x10 and len(packet) >= offset + 4:
            offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
        if len(packet) < offset + 4 or packet[offset] >= len(_DTMF):
            return
        timestamp = int.from_bytes(packet[4:8], "big")
        if timestamp != call.dtmf:
            call.dtmf = timestamp
            self._events(api.DtmfReceived(call_id, _DTMF[packet[offset]]))

    def _tone_frame(self, payload_type: int, seq: int) -> bytes:
        """Frame ``seq`` of 440 Hz in G.711, from one second of it made once per codec."""
        if payload_type not in self._tones:
            samples = (np.sin(2 * np.pi * _TONE_HZ * np.arange(8000) / 8000) * 8000).astype("<i2")
            data = g711.encode(samples.tobytes(), payload_type)
            self._tones[payload_type] = [data[i : i + _FRAME_SAMPLES] for i in range(0, len(data), _FRAME_SAMPLES)]
        frames = self._tones[payload_type]
        return frames[seq % len(frames)]


def _browser_media(path: Any) -> BrowserMedia:
    """The relay's view of a browser's :class:`~gateway.webrtchandoff.MediaPath`."""
    return BrowserMedia(
        path.fd, path.remote_addr, path.srtp_profile, path.inbound_key, path.outbound_key,
        path.payload_type, path.ssrc, path.sequence, path.timestamp, path.srtcp_index, path.cname, path.other_fds,
    )


class NativeTap:
    """A call's recording in the relay (see :class:`gateway.recorder.Tap`); a call the relay no longer
    carries has nothing more to give."""

    def __init__(self, relay: NativeRelay, handle: int) -> None:
        self._relay = relay
        self._handle = handle

    def start(self) -> None:
        self._relay.record(self._handle, True)

    def take(self) -> bytes:
        try:
            return self._relay.recorded(self._handle)
        except KeyError:
            return b""

    def stop(self) -> bytes:
        try:
            return self._relay.record(self._handle, False)
        except KeyError:
            return b""

    def beep(self) -> None:
        self._relay.play(self._handle, beep_pcm(RECORDING_RATE))


def _loss_pct(stats: dict[str, Any], leg: str) -> float:
    """Of what the leg's far end sent, the share lost so far (RFC 3550's cumulative count, which duplicates
    can take below 0: then none)."""
    expected = stats[f"{leg}_expected"]
    return 100 * max(stats[f"{leg}_lost"], 0) / expected if expected else 0.0


def _ms(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} ms"


class _Echo(asyncio.DatagramProtocol):
    """600: every RTP packet goes back where it came from."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._transport.sendto(data, addr)


class _Player(asyncio.DatagramProtocol):
    """RTP every 20 ms to where the SIP side negotiated: ``payload(payload_type, seq)`` says what (601's tone)."""

    def __init__(self, media: Callable[[], MediaReady | None], payload: Callable[[int, int], bytes]) -> None:
        self._media = media
        self._payload = payload
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]
        self._next = asyncio.get_running_loop().time()
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _send(self) -> None:
        media = self._media()
        if media is not None and media.send:
            header = bytes([0x80, media.payload_type]) + self._seq.to_bytes(2, "big")
            header += (self._seq * _FRAME_SAMPLES & 0xFFFFFFFF).to_bytes(4, "big") + self._ssrc.to_bytes(4, "big")
            self._transport.sendto(header + self._payload(media.payload_type, self._seq), media.remote)
            self._seq = (self._seq + 1) & 0xFFFF
        self._next += audioformat.PTIME_MS / 1000
        self._timer = asyncio.get_running_loop().call_at(self._next, self._send)


class _Voicemail(_Player):
    """Voicemail: plays the recording's greeting and beep, and gives it the caller's G.711 as PCM."""

    def __init__(self, media: Callable[[], MediaReady | None], recording: Recording) -> None:
        super().__init__(media, lambda payload_type, seq: g711.encode(recording.take(), payload_type))
        self._recording = recording

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        media = self._media()
        if media is None or len(data) < 12 or data[1] & 0x7F != media.payload_type:
            return  # not yet negotiated, or RFC 4733 and the like
        offset = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= offset + 4:
            offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
        self._recording.receive(g711.decode(data[offset:], media.payload_type))
