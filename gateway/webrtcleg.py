"""The WebRTC leg: one aiortc peer connection carrying one audio track each way.

The browser always offers; this side answers, non-trickle (aiortc gathers
all candidates before the answer is returned).  ICE servers come from the
configuration only: an explicit empty list stops aiortc from falling back
to a public STUN server on a network that may have no internet.  Opus is
encoded and decoded on the event loop rather than in aiortc's threads
(:class:`OpusOnLoop`, :class:`DecodingOnLoop`), saving a thread hand-off
each way for every 20 ms frame.
"""

from __future__ import annotations

import fractions
import logging
import math
import threading
import weakref
from typing import Any, Callable

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import Decoder, get_decoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCEncodedFrame

log = logging.getLogger(__name__)


def ice_servers(config: list[dict[str, Any]]) -> list[RTCIceServer]:
    return [
        RTCIceServer(urls=server["urls"], username=server.get("username"), credential=server.get("credential"))
        for server in config
    ]


class WebRtcLeg:
    """Answers one browser offer and reports when the connection fails."""

    def __init__(
        self,
        servers: list[dict[str, Any]],
        jitter_ms: int,
        on_failed: Callable[[], None],
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        """``on_connected``: the media path will be handed off once connected (see :meth:`take_media_path`)."""
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(servers)))
        self._jitter_ms = jitter_ms
        self._on_failed = on_failed
        self._on_connected = on_connected
        self._pc.on("connectionstatechange", self._state_changed)

    async def answer(
        self, offer: str, outgoing: MediaStreamTrack, on_track: Callable[[MediaStreamTrack], None]
    ) -> str:
        """Accept ``offer``, send ``outgoing``, hand the browser's track to ``on_track``."""
        self._pc.on("track", on_track)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        audio = [t for t in self._pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise ValueError("the offer has no audio")
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
        audio[0].setCodecPreferences(opus)
        _shorten_jitter_buffer(audio[0].receiver, self._jitter_ms)
        _decode_on_loop(audio[0].receiver)
        _encode_on_loop(self._pc.addTrack(outgoing), outgoing)
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        if self._on_connected is not None:
            from .webrtchandoff import note_arrivals

            note_arrivals(audio[0])
        return self._pc.localDescription.sdp

    async def _state_changed(self) -> None:
        state = self._pc.connectionState
        log.debug("WebRTC connection %s", state)
        if state == "failed":
            self._on_failed()
        elif state == "connected" and self._on_connected is not None:
            on_connected, self._on_connected = self._on_connected, None
            on_connected()

    async def take_media_path(self) -> Any:
        """ICE and DTLS are up: take the media path out of aiortc (:mod:`gateway.webrtchandoff`)."""
        from .webrtchandoff import hand_off

        return await hand_off(self._pc)

    async def close(self) -> None:
        await self._pc.close()


def _shorten_jitter_buffer(receiver: RTCRtpReceiver, jitter_ms: int) -> None:
    """Hold ``jitter_ms`` of audio instead of aiortc's fixed four frames.

    aiortc releases an audio frame only after ``prefetch`` later frames have
    arrived (80 ms); on a LAN that is most of the gateway's added latency.
    aiortc has no setting for it, so its private buffer is replaced; if a
    later aiortc renames it, the default stays and a warning says so.
    """
    name = "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, name):
        log.warning("aiortc changed: cannot shorten its %d ms receive buffer", 80)
        return
    setattr(receiver, name, JitterBuffer(capacity=16, prefetch=max(1, jitter_ms // 20)))


def _decode_on_loop(receiver: RTCRtpReceiver) -> None:
    """Have ``receiver`` decode on the event loop instead of in its decoder thread.

    aiortc queues each encoded frame to a thread that decodes it and hands
    the result back with ``run_coroutine_threadsafe`` (a thread wake-up, a
    task and a loop wake-up per frame).  Decoding 20 ms of Opus takes about
    80 us, so it is done in place; :class:`DecodingOnLoop` takes the queue's place.
    If a later aiortc renames it, its thread stays and a warning says so.
    """
    name = "_RTCRtpReceiver__decoder_queue"
    if not hasattr(receiver, name):
        log.warning("aiortc changed: it decodes in a thread of its own")
        return
    setattr(receiver, name, DecodingOnLoop(receiver))


class DecodingOnLoop:
    """Stands in for an ``RTCRtpReceiver``'s decoder queue, decoding as frames are put.

    aiortc puts ``(codec, frame)`` on the loop and ``None`` when the receiver
    stops; decoded frames go straight to the receiver's track queue, where
    its decoder thread would send them.  That thread is still started by
    aiortc: it waits in :meth:`get` until the receiver stops, then ends the
    track as it always does.
    """

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self._receiver = weakref.ref(receiver)
        self._decoder: Decoder | None = None
        self._codec_name = ""
        self._stopped = threading.Event()

    def put(self, task: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        if task is None:
            self._decoder = None
            self._stopped.set()
            return
        codec, encoded = task
        if self._decoder is None or codec.name != self._codec_name:
            self._decoder, self._codec_name = get_decoder(codec), codec.name
        try:
            frames = self._decoder.decode(encoded)
        except av.FFmpegError as exc:
            log.warning("cannot decode a %s frame from the browser: %s", codec.name, exc)
            return
        receiver = self._receiver()
        if receiver is not None:
            for frame in frames:
                receiver.track._queue.put_nowait(frame)

    def get(self) -> None:
        """aiortc's decoder thread: nothing to decode there; ``None`` tells it to end."""
        self._stopped.wait()


def _encode_on_loop(sender: RTCRtpSender, track: MediaStreamTrack) -> None:
    """Have ``sender`` take its Opus packets from an :class:`OpusOnLoop` instead of aiortc's encoder.

    aiortc's ``_next_encoded_frame`` is the one step replaced: packetising,
    SRTP and RTCP stay aiortc's.  If a later aiortc renames it, its own
    encoder stays and a warning says so.
    """
    if not hasattr(sender, "_next_encoded_frame"):
        log.warning("aiortc changed: its Opus encoder runs in a thread pool")
        return
    sender._next_encoded_frame = OpusOnLoop(sender, track).next_frame  # type: ignore[method-assign]


class OpusOnLoop:
    """Encodes one mono 48 kHz track to Opus on the event loop.

    For every 20 ms frame aiortc hands its encoder to a thread pool (a thread
    wake-up and a loop wake-up each way), first upmixes the frame to stereo
    through a resampler, and measures the RFC 6465 audio level for the RTP
    header extension in a pure-Python loop over the samples (about 100 us).
    The gateway's audio is mono 48 kHz already: libopus encodes it as it is
    in about 120 us (mono Opus is valid for ``opus/48000/2``; the browser
    plays it on both channels), and numpy gives the same level in a few us.
    Bit rate and application are aiortc's.  As in aiortc, the codec is
    dropped as soon as the track ends: PyAV's encoder keeps FFmpeg threads
    while it lives.  The sender is held weakly, since it holds this object.
    """

    def __init__(self, sender: RTCRtpSender, track: MediaStreamTrack) -> None:
        self._sender = weakref.ref(sender)
        self._track = track
        self._codec: av.AudioCodecContext | None = None
        self._first_pts: int | None = None

    async def next_frame(self, codec: RTCRtpCodecParameters) -> RTCEncodedFrame | None:
        """What aiortc's ``RTCRtpSender._next_encoded_frame`` returns, for the next frame of the track."""
        try:
            frame = await self._track.recv()
        except BaseException:
            self._codec = None
            raise
        sender = self._sender()
        if sender is None or not sender._enabled:
            return None
        if self._codec is None:
            self._codec = opus_encoder()
        packets = self._codec.encode(frame)
        if not packets:
            return None
        if self._first_pts is None:
            self._first_pts = packets[0].pts
        return RTCEncodedFrame([bytes(p) for p in packets], packets[0].pts - self._first_pts, audio_level_dbov(frame))


def opus_encoder() -> av.AudioCodecContext:
    """The gateway's Opus encoder: mono, aiortc's bit rate and application (benches encode and report with it)."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = 96000
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = 48000
    codec.time_base = fractions.Fraction(1, 48000)
    codec.options = {"application": "voip"}
    return codec


def audio_level_dbov(frame: av.AudioFrame) -> int:
    """RFC 6465 audio level of a mono s16 frame, as aiortc's ``compute_audio_level_dbov`` computes it."""
    samples = np.frombuffer(frame.planes[0], dtype=np.int16, count=frame.samples).astype(np.int64)
    rms = math.sqrt(int(np.dot(samples, samples)) / (frame.samples * 32767 * 32767))
    return round(min(max(20 * math.log10(rms), -127), 0)) if rms > 0 else -127
