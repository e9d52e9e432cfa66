"""Voicemail, the built-in application for a call nobody answered: a greeting, a beep, a recording.

One :class:`Recording` per call, on PCM frames at the rate of the call's
media path (8 kHz from the native path's G.711, the conference bridge's
48 kHz on the Python path), so both paths share it.  What the caller says
after the beep is kept in memory, at most ``max_seconds``, and written as
an 8 kHz WAV when the call ends; a message that is too short or silent is
dropped.  pydub reads the greeting and writes the WAV (no ffmpeg needed for
WAV).

The default greeting (``greeting.wav``, 8 kHz) was spoken by espeak-ng
(``-v en-gb -s 150``): "Your call could not be answered. Please leave a
message after the tone."
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

from . import audioformat

with warnings.catch_warnings():
    # pydub warns at import when ffmpeg is missing: only formats other than WAV need it.
    warnings.simplefilter("ignore")
    from pydub import AudioSegment, generators, silence

log = logging.getLogger(__name__)

GREETING = Path(__file__).with_name("greeting.wav")
BEEP_HZ = 1400
BEEP_MS = 500
MESSAGE_RATE = 8000
MIN_MESSAGE_MS = 1000
"""Shorter messages (a caller who hung up at the beep) are dropped."""
MIN_VOICE_MS = 300
VOICE_DBFS = -45.0
"""A message with less than MIN_VOICE_MS above this level is silence, and dropped."""


def load_greeting(path: str) -> AudioSegment:
    """The greeting to play: ``path`` ("" or unreadable: the default one, with a log line)."""
    if path:
        try:
            return AudioSegment.from_file(path)
        except Exception as exc:  # noqa: BLE001 - a broken file (or no ffmpeg for it): the default greeting instead
            log.warning("voicemail greeting %s cannot be read (%s); the default greeting plays", path, exc)
    return AudioSegment.from_wav(GREETING)


class Recording:
    """One caller leaving a message: what they hear (``take``) and what they say (``receive``).

    On the Python path ``take`` runs on pjsua2's clock thread and
    ``receive`` on the event loop; each touches its own counter, and the
    lock guards the message buffer against ``save`` in a worker thread.
    """

    def __init__(self, greeting: AudioSegment, rate: int, max_seconds: float) -> None:
        beep = generators.Sine(BEEP_HZ, sample_rate=rate).to_audio_segment(BEEP_MS, volume=-9.0)
        prompt = greeting.set_channels(1).set_sample_width(2).set_frame_rate(rate) + beep.set_sample_width(2)
        self.rate = rate
        self._frame_bytes = rate * audioformat.PTIME_MS // 1000 * 2
        data = prompt.raw_data
        self._prompt = data + bytes(-len(data) % self._frame_bytes)
        self._silence = bytes(self._frame_bytes)
        self._played = 0
        self._message = bytearray()
        self._limit = int(max_seconds * rate) * 2
        self._lock = threading.Lock()

    @property
    def prompt_seconds(self) -> float:
        """How long the greeting and the beep play."""
        return len(self._prompt) / 2 / self.rate

    @property
    def prompted(self) -> bool:
        return self._played >= len(self._prompt)

    def take(self) -> bytes:
        """The next 20 ms the caller hears: the greeting, the beep, then silence."""
        if self.prompted:
            return self._silence
        frame = self._prompt[self._played : self._played + self._frame_bytes]
        self._played += self._frame_bytes
        return frame

    def receive(self, pcm: bytes) -> None:
        """What the caller said; kept once the beep has played, up to ``max_seconds``."""
        if not self.prompted:
            return
        with self._lock:
            self._message += pcm[: max(self._limit - len(self._message), 0)]

    def save(self, path: Path) -> float:
        """Write the message as an 8 kHz WAV at ``path``; its length in seconds, or 0 (nothing written)
        when it is too short or silent.  Raises OSError when it cannot be written."""
        with self._lock:
            message = AudioSegment(bytes(self._message), sample_width=2, frame_rate=self.rate, channels=1)
        message = message.set_frame_rate(MESSAGE_RATE)
        voice = sum(end - start for start, end in silence.detect_nonsilent(message, 100, VOICE_DBFS, seek_step=20))
        if len(message) < MIN_MESSAGE_MS or voice < MIN_VOICE_MS:
            log.info("voicemail: message of %.1f s with %.1f s of voice dropped", len(message) / 1000, voice / 1000)
            return 0.0
        partial = path.with_name(path.name + ".part")
        message.export(partial, format="wav").close()
        partial.replace(path)
        return len(message) / 1000
