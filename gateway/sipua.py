"""The SIP leg: one pjsua2 endpoint, its local account and its calls.

Everything in this module runs on the SIP thread (see :mod:`gateway.sipthread`),
except the audio port callbacks, which run on pjsua2's clock thread and
touch nothing but their :class:`AudioIO`.  Calls are known to the rest of the
gateway by a string id; the pjsua2 objects never leave this module.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import re
import time
from typing import Callable, Protocol

import pjsua2 as pj

from . import audioformat
from .config import SipConfig
from .sipthread import FrameQueue, SipThread

log = logging.getLogger(__name__)

_CODEC_PRIORITY = {"PCMU/8000/1": 250, "PCMA/8000/1": 240, "G722/16000/1": 230}
_GRAVE_SECONDS = 0.2
_REQUEST_USER = re.compile(r"^[A-Z]+ sips?:([^@;>\s]+)@")
_URI_USER = re.compile(r"sips?:([^@;>\s]+)@")
_DISPLAY_NAME = re.compile(r'^\s*"?([^"<]*?)"?\s*<')
_NAME_ADDR = re.compile(r'^[^<]*<|>.*$')


class SipEvents(Protocol):
    """What the SIP leg reports; each method is called on the asyncio loop."""

    def on_incoming(self, call_id: str, to_user: str, from_uri: str, from_name: str) -> None: ...
    def on_progress(self, call_id: str, code: int, early_media: bool) -> None: ...
    def on_answered(self, call_id: str) -> None: ...
    def on_dtmf(self, call_id: str, digit: str) -> None: ...
    def on_media_timeout(self, call_id: str) -> None: ...
    def on_disconnected(self, call_id: str, code: int, reason: str) -> None: ...


@dataclasses.dataclass
class AudioIO:
    """Where a call's audio goes: frames to the SIP side, and a sink for frames from it."""

    to_sip: FrameQueue
    from_sip: Callable[[bytes], None]


def _frame_bytes(frame: pj.MediaFrame) -> bytes:
    """Read a frame's payload through the vector's data pointer.

    ``bytes(frame.buf)`` iterates the SWIG vector element by element and costs
    about 1.5 ms per 20 ms frame; reading libstdc++'s ``[begin, end)`` pair
    directly costs a few microseconds.
    """
    vector = frame.buf
    begin, end = (ctypes.c_void_p * 2).from_address(int(vector.this))
    if not begin or not end:
        return b""
    return ctypes.string_at(begin, end - begin)


class BridgePort(pj.AudioMediaPort):
    """A conference port that moves one call's audio to and from Python."""

    def __init__(self, sip: SipThread, audio: AudioIO) -> None:
        super().__init__()
        self._sip = sip
        self._audio = audio
        self.closed = False
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, audioformat.RATE, 1, audioformat.PTIME_MS * 1000, 16)
        self.createPort("bridge", fmt)

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        if self.closed:
            return
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        frame.buf = pj.ByteVector(self._audio.to_sip.take())
        frame.size = audioformat.FRAME_BYTES

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        if self.closed or frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
            return
        data = _frame_bytes(frame)
        if len(data) == audioformat.FRAME_BYTES:
            self._sip.to_loop(self._audio.from_sip, data)


class SipCall(pj.Call):
    """One SIP dialog; reports its progress to the user agent."""

    def __init__(self, ua: SipUserAgent, call_id: str, pj_call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(ua.account, pj_call_id)
        self.ua = ua
        self.call_id = call_id
        self.audio: AudioIO | None = None
        self.app: str | None = None
        self.port: BridgePort | None = None
        self.tone: pj.ToneGenerator | None = None
        self.rx_packets = -1
        self.rx_changed = time.monotonic()

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        ci = self.getInfo()
        log.debug("SIP call %s: %s (%s)", self.call_id, ci.stateText, ci.lastStatusCode)
        if ci.state == pj.PJSIP_INV_STATE_EARLY and ci.role == pj.PJSIP_ROLE_UAC:
            self.ua.emit("on_progress", self.call_id, ci.lastStatusCode, self._audio_index(ci) is not None)
        elif ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.ua.emit("on_answered", self.call_id)
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ua.bury(self)
            self.ua.emit("on_disconnected", self.call_id, ci.lastStatusCode, ci.lastReason)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        ci = self.getInfo()
        index = self._audio_index(ci)
        if index is None:
            return
        media = self.getAudioMedia(index)
        if self.app == "echo":
            media.startTransmit(media)
        elif self.app == "tone":
            self.tone = self.tone or _tone_generator()
            self.tone.startTransmit(media)
        elif self.audio is not None:
            if self.port is None:
                self.port = BridgePort(self.ua.sip, self.audio)
            media.startTransmit(self.port)
            self.port.startTransmit(media)
        if ci.state == pj.PJSIP_INV_STATE_EARLY and ci.role == pj.PJSIP_ROLE_UAC:
            self.ua.emit("on_progress", self.call_id, 183, True)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self.ua.emit("on_dtmf", self.call_id, prm.digit)

    def received_packets(self) -> int | None:
        """RTP packets received so far, or None while no audio stream runs or the far end holds."""
        ci = self.getInfo()
        if ci.state != pj.PJSIP_INV_STATE_CONFIRMED:
            return None
        index = self._audio_index(ci)
        if index is None:
            return None
        return self.getStreamStat(index).rtcp.rxStat.pkt

    @staticmethod
    def _audio_index(ci: pj.CallInfo) -> int | None:
        for index, media in enumerate(ci.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                return index
        return None

    def detach_media(self) -> list[pj.AudioMedia]:
        """Silence this call's own media objects and hand them over for deletion."""
        media: list[pj.AudioMedia] = []
        if self.port is not None:
            self.port.closed = True
            media.append(self.port)
        if self.tone is not None:
            self.tone.stop()
            media.append(self.tone)
        self.port = self.tone = None
        return media


def _tone_generator() -> pj.ToneGenerator:
    """A steady 440 Hz tone, the built-in ``tone`` application."""
    tone = pj.ToneGenerator()
    tone.createToneGenerator(audioformat.RATE, 1)
    desc = pj.ToneDesc()
    desc.freq1 = 440
    desc.freq2 = 0
    desc.on_msec = 1000
    desc.off_msec = 0
    desc.volume = 0
    tones = pj.ToneDescVector()
    tones.append(desc)
    tone.play(tones, True)
    return tone


class InvitePacer:
    """Admits at most ``rate`` new INVITEs a second by holding the SIP thread.

    pjsua opens two RTP sockets for every INVITE before the application sees
    it, and a closed socket's slot in pjlib's 64-slot I/O queue is reused only
    after 500 ms: above about 60 INVITEs a second the queue runs out and pjlib
    aborts the process.  Holding the SIP thread leaves later INVITEs in the
    kernel's socket buffer (their senders retransmit), so a flood is slowed
    down instead of fatal.  Media runs on other threads and is not held.
    """

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0

    def admit(self) -> None:
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(now, self._next) + self._interval


class _Account(pj.Account):
    def __init__(self, ua: SipUserAgent) -> None:
        super().__init__()
        self.ua = ua

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.ua.incoming(prm)


class SipUserAgent:
    """The pjsua2 endpoint with one local account; lives on the SIP thread."""

    def __init__(self, sip: SipThread, events: SipEvents, config: SipConfig, new_call_id: Callable[[], str]) -> None:
        self.sip = sip
        self.events = events
        self.config = config
        self.new_call_id = new_call_id
        self.endpoint: pj.Endpoint | None = None
        self.account: _Account | None = None
        self.address = ""
        self.calls: dict[str, SipCall] = {}
        self.pacer = InvitePacer(config.max_invites_per_second)
        self.graveyard: list[tuple[float, list[pj.AudioMedia]]] = []

    # -- life cycle ---------------------------------------------------------

    def create(self) -> pj.Endpoint:
        """Create, configure and start the endpoint (SIP thread)."""
        ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = self.config.max_calls
        cfg.uaConfig.userAgent = "webrtc-sip-gateway"
        cfg.logConfig.level = self.config.log_level
        cfg.logConfig.consoleLevel = self.config.log_level
        cfg.medConfig.clockRate = audioformat.RATE
        cfg.medConfig.sndClockRate = audioformat.RATE
        cfg.medConfig.channelCount = 1
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        ep.libInit(cfg)
        ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():
            ep.codecSetPriority(codec.codecId, _CODEC_PRIORITY.get(codec.codecId, 0))
        transport = pj.TransportConfig()
        transport.port = self.config.port
        transport.boundAddress = self.config.listen
        if self.config.public_host:
            transport.publicAddress = self.config.public_host
        try:
            udp = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
            if self.config.tcp:
                transport.port = int(ep.transportGetInfo(udp).localName.rsplit(":", 1)[1])
                ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, transport)
        except pj.Error as exc:
            ep.libDestroy()
            raise OSError(f"cannot listen for SIP on {self.config.listen}:{transport.port}: {exc.reason}") from None
        ep.libStart()
        self.endpoint = ep
        self.address = ep.transportGetInfo(udp).localName
        account = pj.AccountConfig()
        account.idUri = f"sip:gateway@{self.address}"
        account.mediaConfig.transportConfig.port = self.config.rtp_port
        account.mediaConfig.transportConfig.boundAddress = self.config.listen
        if self.config.public_host:
            account.mediaConfig.transportConfig.publicAddress = self.config.public_host
        self.account = _Account(self)
        self.account.create(account, True)
        log.info("SIP listening on %s (udp%s)", self.address, "+tcp" if self.config.tcp else "")
        return ep

    def destroy(self) -> None:
        """Hang up everything, wait for it, then tear pjsua2 down in a safe order (SIP thread).

        No local variable may hold a call past ``libDestroy``: a pjsua2 object
        freed after it aborts the process.
        """
        self._hang_up_all()
        deadline = time.monotonic() + 3
        while self.calls and time.monotonic() < deadline:
            self.sip.handle_events(0.05)
        self._close_all_media()
        self.sip.handle_events(0.1)
        self.calls.clear()
        self.graveyard.clear()
        if self.account is not None:
            self.account.shutdown()
            self.account = None
        if self.endpoint is not None:
            self.endpoint.libDestroy()
        self.sip.forget_endpoint()
        self.endpoint = None

    def _hang_up_all(self) -> None:
        for call in list(self.calls.values()):
            self._hangup(call, pj.CallOpParam())

    def _close_all_media(self) -> None:
        for call in self.calls.values():
            self.graveyard.append((0.0, call.detach_media()))

    # -- called from the asyncio side through SipThread.run -----------------

    def make_call(self, call_id: str, uri: str, caller: str, audio: AudioIO) -> None:
        """Send an INVITE; raises ``pj.Error`` (for example no free call slot)."""
        call = SipCall(self, call_id)
        call.audio = audio
        prm = pj.CallOpParam(True)
        prm.txOption.localUri = f'"{caller}" <sip:{caller}@{self.address}>'
        call.makeCall(uri, prm)
        self.calls[call_id] = call

    def ring(self, call_id: str) -> None:
        self._answer_with(call_id, 180)

    def answer(self, call_id: str, audio: AudioIO) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.audio = audio
            self._answer_with(call_id, 200)

    def serve(self, call_id: str, app: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.app = app
            self._answer_with(call_id, 200)

    def reject(self, call_id: str, code: int, reason: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            prm = pj.CallOpParam()
            prm.statusCode = code
            prm.reason = reason
            self._hangup(call, prm)

    def hangup(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            self._hangup(call, pj.CallOpParam())

    def send_dtmf(self, call_id: str, digits: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.dialDtmf(digits)

    def tick(self) -> None:
        """Once a second: end calls whose RTP stopped, and free dead calls' objects."""
        now = time.monotonic()
        for call in self.calls.values():
            packets = call.received_packets()
            if packets is None or packets != call.rx_packets:
                call.rx_packets = -1 if packets is None else packets
                call.rx_changed = now
            elif now - call.rx_changed > self.config.media_timeout:
                call.rx_changed = now
                self.emit("on_media_timeout", call.call_id)
        self.graveyard = [(died, media) for died, media in self.graveyard if now - died < _GRAVE_SECONDS]

    # -- inside this module -------------------------------------------------

    def emit(self, name: str, *args: object) -> None:
        self.sip.to_loop(getattr(self.events, name), *args)

    def incoming(self, prm: pj.OnIncomingCallParam) -> None:
        self.pacer.admit()
        call_id = self.new_call_id()
        call = SipCall(self, call_id, prm.callId)
        self.calls[call_id] = call
        ci = call.getInfo()
        request = _REQUEST_USER.match(prm.rdata.wholeMsg)
        uri_user = _URI_USER.search(ci.localUri)
        to_user = request.group(1) if request else uri_user.group(1) if uri_user else ""
        name = _DISPLAY_NAME.match(ci.remoteUri)
        from_uri = _NAME_ADDR.sub("", ci.remoteUri).strip()
        log.info("SIP INVITE %s for %r from %s", call_id, to_user, from_uri)
        self.emit("on_incoming", call_id, to_user, from_uri, name.group(1).strip() if name else "")

    def bury(self, call: SipCall) -> None:
        """A disconnected call: forget it now, delete its media a little later.

        The Call object must go at once, inside its DISCONNECTED callback: its
        destructor hangs up whatever call holds its pjsua slot, and pjsua
        reuses slots for the next call.  Its port may still be inside a clock
        tick, so the port waits in the graveyard until the next tick.
        """
        self.graveyard.append((time.monotonic(), call.detach_media()))
        self.calls.pop(call.call_id, None)

    def _answer_with(self, call_id: str, code: int) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            prm = pj.CallOpParam()
            prm.statusCode = code
            call.answer(prm)

    @staticmethod
    def _hangup(call: SipCall, prm: pj.CallOpParam) -> None:
        try:
            call.hangup(prm)
        except pj.Error as exc:
            log.debug("hangup of %s: %s", call.call_id, exc.info())
