"""The media bridge: one call's audio between aiortc and the SIP leg.

Browser -> SIP: frames decoded by aiortc (Opus, 48 kHz stereo) are folded to
mono and put on the SIP leg's :class:`~gateway.sipapi.FrameQueue`.
SIP -> browser: pjsua2's clock delivers a frame every 20 ms; it is queued
for :class:`SipAudioTrack`, which aiortc's sender pulls.  Both queues are a
few frames deep and drop the oldest frame, so latency cannot build up; when
the SIP side has nothing yet, the track sends silence instead of stalling.
A recording (:class:`BridgeTap`) taps both directions here.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from . import audioformat
from .recorder import RATE as RECORDING_RATE, beep_pcm
from .sipapi import AudioIO, FrameQueue

log = logging.getLogger(__name__)

TO_SIP_DEPTH = 3
TO_BROWSER_DEPTH = 3
_SILENCE_AFTER = 0.06
_TIME_BASE = fractions.Fraction(1, audioformat.RATE)


class SipAudioTrack(MediaStreamTrack):
    """The SIP side's audio as an aiortc track, paced by pjsua2's clock."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._frames: collections.deque[bytes] = collections.deque(maxlen=TO_BROWSER_DEPTH)
        self._waiter: asyncio.Future[None] | None = None
        self._pts = 0

    def push(self, pcm: bytes) -> None:
        """Called on the loop for every frame pjsua2 hands over."""
        self._frames.append(pcm)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._frames:
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = loop.call_later(_SILENCE_AFTER, _resolve, self._waiter)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
        pcm = self._frames.popleft() if self._frames else audioformat.SILENCE
        frame = av.AudioFrame(format="s16", layout="mono", samples=audioformat.FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = audioformat.RATE
        frame.time_base = _TIME_BASE
        frame.pts = self._pts
        self._pts += audioformat.FRAME_SAMPLES
        return frame

    def stop(self) -> None:
        super().stop()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class BridgeTap:
    """A call's recording on the Python path (a :class:`gateway.recorder.Tap`).

    Each frame from SIP (pjsua2's clock, every 20 ms) is paired with the oldest browser frame sent
    towards SIP since, or silence: the legs stay in step as the SIP side's clock keeps them. They are
    kept as 48 kHz stereo and narrowed to the recording's 8 kHz when taken, once a second, so the
    per-frame cost is a copy. The beep is mixed into what goes to SIP.
    """

    def __init__(self) -> None:
        self.on = False
        self._left: collections.deque[bytes] = collections.deque(maxlen=TO_SIP_DEPTH + 2)
        self._stereo = bytearray()
        self._beep = np.zeros(0, np.int32)
        self._resampler: av.AudioResampler | None = None
        self._pts = 0

    def start(self) -> None:
        self.on = True
        self._resampler = av.AudioResampler("s16", "stereo", RECORDING_RATE)

    def beep(self) -> None:
        self._beep = np.frombuffer(beep_pcm(audioformat.RATE), np.int16).astype(np.int32)

    def sent(self, frame: bytes) -> bytes:
        """A browser frame on its way to SIP: with the beep mixed in, and kept for pairing while recording."""
        if len(self._beep):
            mixed = np.frombuffer(frame, np.int16).astype(np.int32)
            count = min(len(mixed), len(self._beep))
            mixed[:count] += self._beep[:count]
            self._beep = self._beep[count:]
            frame = np.clip(mixed, -32768, 32767).astype(np.int16).tobytes()
        if self.on:
            self._left.append(frame)
        return frame

    def received(self, frame: bytes) -> None:
        """A frame from SIP: one stereo frame of the recording."""
        if not self.on:
            return
        left = self._left.popleft() if self._left else audioformat.SILENCE
        stereo = np.empty(2 * audioformat.FRAME_SAMPLES, np.int16)
        stereo[0::2] = np.frombuffer(left, np.int16)
        stereo[1::2] = np.frombuffer(frame, np.int16)
        self._stereo += stereo.tobytes()

    def take(self) -> bytes:
        return self._narrow(flush=False)

    def stop(self) -> bytes:
        rest = self._narrow(flush=True)
        self.on = False
        self._left.clear()
        self._resampler = None
        return rest

    def _narrow(self, flush: bool) -> bytes:
        """What was recorded since last taken, at the recording's rate."""
        if self._resampler is None:
            return b""
        frames: list[av.AudioFrame] = []
        if self._stereo:
            samples = np.frombuffer(bytes(self._stereo), np.int16)
            self._stereo.clear()
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate, frame.time_base, frame.pts = audioformat.RATE, _TIME_BASE, self._pts
            self._pts += len(samples) // 2
            frames += self._resampler.resample(frame)
        if flush:
            frames += self._resampler.resample(None)
        return b"".join(frame.to_ndarray().tobytes() for frame in frames)


class Bridge:
    """Joins a browser's audio track and a SIP call's audio port."""

    def __init__(self) -> None:
        self.to_sip = FrameQueue(TO_SIP_DEPTH, audioformat.SILENCE)
        self.to_browser = SipAudioTrack()
        self.tap = BridgeTap()
        self.audio = AudioIO(self.to_sip, self._from_sip)
        self._pump: asyncio.Task[None] | None = None
        self._pending = bytearray()
        self._resampler: av.AudioResampler | None = None

    def _from_sip(self, pcm: bytes) -> None:
        self.to_browser.push(pcm)
        self.tap.received(pcm)

    def attach(self, browser_track: MediaStreamTrack) -> None:
        """Start moving the browser's audio towards the SIP leg."""
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._run(browser_track))

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                self._feed(await track.recv())
        except MediaStreamError:
            pass

    def _feed(self, frame: av.AudioFrame) -> None:
        if frame.format.name != "s16" or frame.sample_rate != audioformat.RATE or frame.layout.name not in ("mono", "stereo"):
            self._resampler = self._resampler or av.AudioResampler("s16", "mono", audioformat.RATE)
            for converted in self._resampler.resample(frame):
                self._feed(converted)
            return
        samples = np.frombuffer(frame.planes[0], dtype=np.int16, count=frame.samples * len(frame.layout.channels))
        if frame.layout.name == "stereo":
            samples = samples[::2]
        self._pending += samples.tobytes()
        while len(self._pending) >= audioformat.FRAME_BYTES:
            self.to_sip.put(self.tap.sent(bytes(self._pending[: audioformat.FRAME_BYTES])))
            del self._pending[: audioformat.FRAME_BYTES]

    async def close(self) -> None:
        self.to_browser.stop()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
