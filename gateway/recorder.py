"""Recording calls in the media engine: both legs to a file per call.

The audio comes from a :class:`Tap` on the path that carries the call: the native relay
(:meth:`gateway.nativemedia.NativeMedia.tap`), which paces both legs into 8 kHz stereo in C, or
the Python bridge (:meth:`gateway.bridge.Bridge.tap`). Either way it arrives as 16-bit stereo at
8 kHz, **the browser's leg left and the SIP leg right**: kept apart, each side can be heard (or
transcribed) alone and nothing is lost by a mix, for twice the size of mono (1.9 MB a minute of
WAV). 8 kHz is G.711's rate, so the SIP leg loses nothing; the browser's Opus is narrowed to it.

Once a second (the engine's tick) each recording takes what its tap holds and appends it to
``<id>.part`` beside where the recording goes, so neither a long call nor a slow disk holds the
packet path. At each stop (the page's, the call's end, ``max_minutes``, a full disk) pydub
assembles the segments so far, with a short silence between them, and exports WAV (and MP3/Opus
through ffmpeg when configured) in a worker thread, then writes the metadata
(:func:`gateway.recordings.write_meta`). A disk that fails stops the recording, never the call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable, Protocol

import numpy as np

with warnings.catch_warnings():  # pydub warns at import of what only its mp3/opus export needs
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "Couldn't find ffmpeg", RuntimeWarning)
    from pydub import AudioSegment

from . import engineapi as api
from .background import Background
from .config import RecordingConfig
from .recordings import write_meta

log = logging.getLogger(__name__)

RATE = 8000
CHANNELS = ("browser", "sip")
"""Left, right."""
BYTES_PER_SECOND = RATE * 2 * len(CHANNELS)
BEEP_HZ = 1400
BEEP_SECONDS = 0.4
BEEP_LEVEL = 0.25
"""Of full scale, mixed over what the page sends: clearly heard, not painful."""
GAP_MS = 300
"""Silence between a call's segments in its file, so the cut can be heard."""
_NEEDS_FFMPEG = ("mp3", "opus")
_EXPORT: dict[str, dict[str, Any]] = {"wav": {}, "mp3": {"bitrate": "32k"}, "opus": {"bitrate": "24k"}}


class Tap(Protocol):
    """Where a call's two legs are taken from, as 8 kHz s16 stereo (browser left, SIP right)."""

    def start(self) -> None: ...
    def take(self) -> bytes:
        """What was recorded since last taken."""
    def stop(self) -> bytes:
        """Stop recording; what was still waiting."""
    def beep(self) -> None:
        """Play the recording beep towards the SIP side."""


def beep_pcm(rate: int) -> bytes:
    """The recording beep as s16 mono at ``rate``: BEEP_HZ for BEEP_SECONDS with 10 ms ramps."""
    count = int(rate * BEEP_SECONDS)
    ramp = np.minimum(1.0, np.minimum(np.arange(count), np.arange(count)[::-1]) / (rate / 100))
    samples = np.sin(2 * np.pi * BEEP_HZ * np.arange(count) / rate) * ramp * BEEP_LEVEL * 32767
    return samples.astype("<i2").tobytes()


def ffmpeg_missing(formats: list[str]) -> list[str]:
    """The configured formats that cannot be written because ffmpeg is not installed."""
    return [name for name in formats if name in _NEEDS_FFMPEG] if shutil.which("ffmpeg") is None else []


@dataclasses.dataclass
class _Segment:
    start: float
    """Wall-clock time it started (time.time())."""
    size: int = 0
    """Bytes of stereo samples."""


class CallRecording:
    """One call's recording: its segments in ``<path>.part`` until it is saved as ``<path>.wav``..."""

    def __init__(self, path: Path, meta: dict[str, str], tap: Tap, config: RecordingConfig) -> None:
        self.path = path
        self._part = path.parent / f"{path.name}.part"
        self._meta = meta
        self._tap = tap
        self._config = config
        self._segments: list[_Segment] = []
        self._file: BinaryIO | None = None
        self.saving = asyncio.Lock()
        """One export at a time: a quick stop, start and stop again waits for the first."""

    @property
    def on(self) -> bool:
        return self._file is not None

    @property
    def seconds(self) -> float:
        return sum(segment.size for segment in self._segments) / BYTES_PER_SECOND

    @property
    def full(self) -> bool:
        return self.seconds >= self._config.max_minutes * 60

    def start(self) -> None:
        """A new segment; OSError when the folder or file cannot be made (nothing started then)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._part, "ab")  # noqa: SIM115 - open across ticks, closed by stop()
        self._segments.append(_Segment(time.time()))
        self._tap.start()
        if self._config.beep:
            self._tap.beep()

    def drain(self) -> None:
        """Append what the tap holds; OSError (a full disk) leaves the recording on for :meth:`stop`."""
        self._write(self._tap.take())

    def stop(self) -> None:
        """End the segment; an OSError on its last bytes still ends it."""
        try:
            self._write(self._tap.stop())
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _write(self, data: bytes) -> None:
        if self._file is None or not data:
            return
        self._file.write(data)
        self._file.flush()
        self._segments[-1].size += len(data)

    def save(self) -> list[str]:
        """Export the segments so far and write the metadata (blocking: run in a thread); the files' names."""
        raw = self._part.read_bytes()
        audio, offset = AudioSegment.empty(), 0
        gap = AudioSegment.silent(GAP_MS, RATE).set_channels(2)
        for segment in self._segments:
            piece = AudioSegment(raw[offset : offset + segment.size], sample_width=2, frame_rate=RATE, channels=2)
            audio = audio + gap + piece if len(audio) else piece
            offset += segment.size
        files = {}
        formats = ["wav", *(name for name in self._config.formats if name != "wav")]
        for name in formats:
            if name in ffmpeg_missing([name]):
                continue
            target = self.path.parent / f"{self.path.name}.{name}"
            temporary = self.path.parent / f"{self.path.name}.{name}.part"
            audio.export(temporary, format=name, **_EXPORT[name]).close()
            os.replace(temporary, target)
            files[name] = target.name
        write_meta(self.path, self._metadata(files))
        return list(files.values())

    def _metadata(self, files: dict[str, str]) -> dict[str, Any]:
        first = self._segments[0].start
        return {
            "id": self.path.name,
            **self._meta,
            "start": _iso(first),
            "duration": round(self.seconds, 2),
            "files": files,
            "rate": RATE,
            "channels": list(CHANNELS),
            "segments": [
                {"start": _iso(segment.start), "duration": round(segment.size / BYTES_PER_SECOND, 2)}
                for segment in self._segments
            ],
        }

    def discard_part(self) -> None:
        try:
            self._part.unlink()
        except FileNotFoundError:
            pass


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


class Recorders:
    """One engine's recordings: started and stopped by :class:`~gateway.engineapi.Record`, drained each tick."""

    def __init__(self, config: RecordingConfig, emit: api.EventSink) -> None:
        self._config = config
        self._emit = emit
        self._calls: dict[str, CallRecording] = {}
        self._background = Background(log, "saving a recording")
        missing = ffmpeg_missing(config.formats) if config.enabled else []
        if missing:
            log.warning("recording.formats asks for %s but ffmpeg is not installed: only WAV is written", ", ".join(missing))

    def record(self, command: api.Record, tap: Callable[[], Tap]) -> None:
        """Start or stop ``command.call_id``'s recording; ``tap`` finds its audio (LookupError: none yet)."""
        recording = self._calls.get(command.call_id)
        if not command.on:
            if recording is not None and recording.on:
                self._stop(command.call_id, recording, "")
            return
        if recording is not None and recording.on:
            self._emit(api.RecordingChanged(command.call_id, True))
            return
        try:
            if recording is None:
                recording = CallRecording(Path(command.path), dict(command.meta), tap(), self._config)
            if recording.full:
                raise LookupError(f"this call's recording has reached its {self._config.max_minutes:g} minutes")
            recording.start()
        except LookupError as exc:
            self._emit(api.RecordingChanged(command.call_id, False, f"Cannot record: {exc}"))
            return
        except OSError as exc:
            log.warning("call %s: cannot record to %s: %s", command.call_id, command.path, exc)
            self._emit(api.RecordingChanged(command.call_id, False, f"Cannot record: {_disk_error(exc)}"))
            return
        self._calls[command.call_id] = recording
        log.info("call %s: recording to %s", command.call_id, recording.path)
        self._emit(api.RecordingChanged(command.call_id, True))

    def tick(self) -> None:
        """Once a second: take each recording's audio; stop those that are full or cannot be written."""
        for call_id, recording in list(self._calls.items()):
            if not recording.on:
                continue
            try:
                recording.drain()
            except OSError as exc:
                log.warning("call %s: recording stopped: %s", call_id, exc)
                self._stop(call_id, recording, f"Recording stopped: {_disk_error(exc)}")
                continue
            if recording.full:
                self._stop(call_id, recording, f"Recording stopped at its limit of {self._config.max_minutes:g} minutes")

    def ended(self, call_id: str) -> None:
        """The call is over (before its media path closes): stop, save the last time, remove the part file.

        Only :class:`~gateway.engineapi.RecordingSaved` (``final``) follows, and only if it was recording."""
        recording = self._calls.pop(call_id, None)
        if recording is None:
            return
        if recording.on:
            self._stop(call_id, recording, "", final=True)
        else:
            self._background.spawn(self._discard(recording))

    async def close(self) -> None:
        """Until every recording is saved (the engine stops after its calls have ended)."""
        await self._background.wait()

    def _stop(self, call_id: str, recording: CallRecording, error: str, final: bool = False) -> None:
        try:
            recording.stop()
        except OSError as exc:
            error = error or f"Recording stopped: {_disk_error(exc)}"
        if not final:
            self._emit(api.RecordingChanged(call_id, False, error))
        self._background.spawn(self._save(call_id, recording, final))

    async def _save(self, call_id: str, recording: CallRecording, final: bool) -> None:
        """Export in a thread; at the call's end the part file goes once saved (kept for the operator if not)."""
        async with recording.saving:
            try:
                files = await asyncio.to_thread(recording.save)
            except Exception as exc:  # noqa: BLE001 - the disk, or ffmpeg (pydub's CouldntEncodeError): the call goes on
                log.warning("call %s: cannot save recording %s: %s", call_id, recording.path, exc)
                self._emit(api.RecordingSaved(call_id, recording.path.name, recording.seconds, final, f"Cannot save the recording: {exc}"))
                return
            log.info("call %s: recording saved: %s (%.1f s)", call_id, ", ".join(files), recording.seconds)
            self._emit(api.RecordingSaved(call_id, recording.path.name, recording.seconds, final))
            if final:
                await asyncio.to_thread(recording.discard_part)

    async def _discard(self, recording: CallRecording) -> None:
        async with recording.saving:
            await asyncio.to_thread(recording.discard_part)


def _disk_error(exc: OSError) -> str:
    """A sentence for the page: the storage's problem without the gateway's paths."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the recordings storage is full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR):
        return "the recordings folder is not writable"
    return f"the recordings storage failed ({exc.strerror or exc})"
