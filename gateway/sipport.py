"""Media objects of a SIP call: the bridge port to Python and the built-in tone.

``BridgePort`` callbacks run on pjsua2's clock thread and touch nothing but
their :class:`~gateway.sipapi.AudioIO`, whose frames cross to asyncio through
:mod:`gateway.sipthread`.

Bridge ports are lent to calls from :class:`BridgePorts` and never freed while
the endpoint lives: pjsua 2.15 removes a port from its conference bridge
asynchronously, and freeing a Python-backed port while the clock thread can
still call it crashed the process about once in fifteen runs of twenty calls.
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
    """A conference port that moves one call's audio to and from Python; silent while lent to no call."""

    def __init__(self, sip: SipThread) -> None:
        super().__init__()
        self._sip = sip
        self.audio: AudioIO | None = None
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, audioformat.RATE, 1, audioformat.PTIME_MS * 1000, 16)
        self.createPort("bridge", fmt)

    def callback_failed(self) -> None:
        """A frame callback raised: this call's audio stops, the clock and other calls go on."""
        self.audio = None

    @guarded
    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        audio = self.audio
        if audio is None:
            return
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        _fill_frame(frame, audio.to_sip.take())
        frame.size = audioformat.FRAME_BYTES

    @guarded
    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        audio = self.audio
        if audio is None or frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
            return
        data = _frame_bytes(frame)
        if len(data) == audioformat.FRAME_BYTES:
            self._sip.to_loop(audio.from_sip, data)


class BridgePorts:
    """Bridge ports kept for the endpoint's life, each lent to one call at a time (SIP thread).

    There are never more than the most calls that had audio at once; a port
    given back stays in the bridge, unconnected and silent, until it is lent again.
    """

    def __init__(self, sip: SipThread) -> None:
        self._sip = sip
        self._free: list[BridgePort] = []
        self._all: list[BridgePort] = []

    def lend(self, audio: AudioIO) -> BridgePort:
        if not self._free:
            port = BridgePort(self._sip)
            self._all.append(port)
            self._free.append(port)
        port = self._free.pop()
        port.audio = audio
        return port

    def give_back(self, port: BridgePort) -> None:
        port.audio = None
        self._free.append(port)

    def __len__(self) -> int:
        return len(self._all)

    def free_all(self) -> None:
        """Free every port: only at shutdown, once no call is left and before ``libDestroy``."""
        for port in self._all:
            port.audio = None
        self._free.clear()
        self._all.clear()


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


