"""Media objects of a SIP call: the bridge port to Python and the built-in tone.

``BridgePort`` callbacks run on pjsua2's clock thread and touch nothing but
their :class:`~gateway.sipapi.AudioIO`, whose frames cross to asyncio through
:mod:`gateway.sipthread`.
"""

from __future__ import annotations

import ctypes

import pjsua2 as pj

from . import audioformat
from .sipapi import AudioIO
from .sipthread import SipThread, guarded

TONE_HZ = 440


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


def _fill_frame(frame: pj.MediaFrame, data: bytes) -> None:
    """Copy ``data`` into the frame's own vector through its data pointer.

    Assigning ``pj.ByteVector(data)`` converts the bytes element by element
    (about 50 us per frame); resizing the vector in C++ and copying into
    libstdc++'s ``begin`` costs a few microseconds.
    """
    vector = frame.buf
    vector.resize(len(data))
    begin = ctypes.c_void_p.from_address(int(vector.this)).value
    ctypes.memmove(begin, data, len(data))


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

    def callback_failed(self) -> None:
        """A frame callback raised: this call's audio stops, the clock and other calls go on."""
        self.closed = True

    @guarded
    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        if self.closed:
            return
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        _fill_frame(frame, self._audio.to_sip.take())
        frame.size = audioformat.FRAME_BYTES

    @guarded
    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        if self.closed or frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
            return
        data = _frame_bytes(frame)
        if len(data) == audioformat.FRAME_BYTES:
            self._sip.to_loop(self._audio.from_sip, data)


def tone_generator() -> pj.ToneGenerator:
    """A steady 440 Hz tone, the built-in ``tone`` application."""
    tone = pj.ToneGenerator()
    tone.createToneGenerator(audioformat.RATE, 1)
    desc = pj.ToneDesc()
    desc.freq1 = TONE_HZ
    desc.freq2 = 0
    desc.on_msec = 1000
    desc.off_msec = 0
    desc.volume = 0
    tones = pj.ToneDescVector()
    tones.append(desc)
    tone.play(tones, True)
    return tone


