"""CPU a call recording costs, on the native path.

    .venv/bin/python -m bench.recording --calls 8 --seconds 10

1. The relay: CALLS calls through one relay, both ends sending 20 ms packets in real
   time (the recording is paced by the clock), first without recording, then with
   every call recorded and drained once a second as the engine does; the relay
   thread's CPU (/proc/self/task, "mediarelay") per call, in % of a core, both ways.
2. The engine's share: draining a call's second of stereo and appending it to its part
   file (Python, once a second per call).
3. The Python media path's tap (gateway.bridge.BridgeTap): pairing 50 frames a second
   and narrowing them to 8 kHz once a second, per call-second.
4. Saving: pydub assembling and exporting one minute of a call, WAV and, with ffmpeg,
   MP3 and Opus (ffmpeg's own CPU included), once per stop.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from pylibsrtp import Policy

from gateway import audioformat
from gateway.bridge import BridgeTap
from gateway.config import RecordingConfig
from gateway.nativerelay import NativeRelay
from gateway.recorder import BYTES_PER_SECOND, CallRecording, ffmpeg_missing
from tests.audio import tone
from tests.relayharness import BROWSER_HZ, FRAME_8K, PHONE_HZ, Call, receive_all

from .native_relay import worker_cpu_seconds


def carry(calls: list[Call], seconds: float, record: bool) -> tuple[float, float]:
    """Relay CPU (% of a core per call) and the drain's Python CPU (ms per call-second)."""
    browser = list(calls[0].opus_packets(tone(BROWSER_HZ, seconds, 48000, pulsed=True)))
    phone = tone(PHONE_HZ, seconds, 8000, pulsed=True)
    for call in calls:
        call.relay.record(call.handle, record)
    drained, drain_cpu = 0, 0.0
    start_cpu, start = worker_cpu_seconds(), time.monotonic()
    with tempfile.TemporaryFile() as part:
        for i, packet in enumerate(browser):
            for call in calls:
                call.send_from_browser(call.browser_packet(packet))
                call.send_from_phone(call.phone_packet(phone[i * FRAME_8K : (i + 1) * FRAME_8K]))
            if record and i % 50 == 49:
                before = time.thread_time()
                for call in calls:
                    data = call.relay.recorded(call.handle)
                    part.write(data)
                    drained += len(data)
                part.flush()
                drain_cpu += time.thread_time() - before
            time.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
            for call in calls:
                receive_all(call.phone)
                call.hear_browser()
    relay = (worker_cpu_seconds() - start_cpu) / (time.monotonic() - start) / len(calls) * 100
    for call in calls:
        call.relay.record(call.handle, False)
    per_call_second = drain_cpu * 1000 / max(drained / BYTES_PER_SECOND, 1e-9)
    return relay, per_call_second


def bridge_tap_cost(seconds: int) -> float:
    """ms of CPU per call-second for the Python path's tap."""
    frame = tone(BROWSER_HZ, 0.02, audioformat.RATE).tobytes()
    tap = BridgeTap()
    tap.start()
    before = time.thread_time()
    for _ in range(seconds):
        for _ in range(50):
            tap.received(tap.sent(frame))
        tap.take()
    tap.stop()
    return (time.thread_time() - before) * 1000 / seconds


def save_cost(seconds: float, formats: list[str]) -> tuple[float, float]:
    """CPU seconds (this process, ffmpeg) to save `seconds` of a recording in `formats`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "alice" / "20260101-000000-0000abcd"

        class Tap:
            def start(self) -> None: ...
            def beep(self) -> None: ...
            def stop(self) -> bytes:
                return b""

            def take(self) -> bytes:
                t = np.arange(int(seconds * 8000)) / 8000
                stereo = np.stack([np.sin(2 * np.pi * 700 * t), np.sin(2 * np.pi * 1100 * t)], 1) * 8000
                return stereo.astype("<i2").tobytes()

        recording = CallRecording(path, {"user": "alice"}, Tap(), RecordingConfig(enabled=True, formats=formats))
        recording.start()
        recording.drain()
        recording.stop()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        before = time.process_time()
        recording.save()
        own = time.process_time() - before
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own, (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    relay = NativeRelay()
    relay.start()
    calls = [Call(relay, 0, Policy.SRTP_PROFILE_AES128_CM_SHA1_80) for _ in range(args.calls)]
    try:
        for call in calls:
            call.add()
        plain, _ = carry(calls, args.seconds, record=False)
        recorded, drain = carry(calls, args.seconds, record=True)
        dropped = sum(relay.stats(call.handle)["recording_dropped"] for call in calls)
    finally:
        relay.close()
        for call in calls:
            call.close()
    print(f"relay thread: {plain:.2f}% of a core per call, {recorded:.2f}% recording ({dropped} frames dropped)")
    print(f"engine drain and write: {drain:.3f} ms CPU per call-second ({drain / 10:.4f}% of a core per call)")
    print(f"Python path tap: {bridge_tap_cost(60):.2f} ms CPU per call-second")
    wav_own, _ = save_cost(60, ["wav"])
    print(f"saving one minute as WAV: {wav_own * 1000:.0f} ms CPU")
    if not ffmpeg_missing(["mp3", "opus"]):
        own, ffmpeg = save_cost(60, ["wav", "mp3", "opus"])
        print(f"saving one minute as WAV, MP3 and Opus: {own * 1000:.0f} ms CPU here, {ffmpeg * 1000:.0f} ms in ffmpeg")


if __name__ == "__main__":
    main()
