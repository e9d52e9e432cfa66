"""CPU of the native relay's worker: a 3-party conference room against 3 ordinary calls, on 127.0.0.1.

    .venv/bin/python -m bench.conference --seconds 5

Room: two browser stand-ins (Opus/SRTP) and a phone stand-in (G.711) in one
room, each sending 20 ms packets in real time; the relay decodes each, mixes
every 20 ms and encodes each participant's mix (2 Opus + 1 G.711 encodes).
Calls: three ordinary calls, browser and phone of each sending in real time
(3 Opus decodes, 3 Opus encodes). The worker thread's CPU over the run is
printed as a share of one core, with what each participant or call costs.
"""

from __future__ import annotations

import argparse
import time

from gateway.nativerelay import NativeRelay
from pylibsrtp import Policy

from bench.native_relay import worker_cpu_seconds
from tests.audio import tone
from tests.relayharness import BROWSER_HZ, FRAME_8K, PHONE_HZ, Call, receive_all

PROFILE = Policy.SRTP_PROFILE_AES128_CM_SHA1_80


def _run(calls: list[tuple[Call, bool, bool]], seconds: float) -> float:
    """Each (call, browser sends, phone sends) in real time for ``seconds``; the worker's share of a core."""
    frames = int(seconds * 50)
    opus = {id(call): [call.browser_packet(p) for p in call.opus_packets(tone(BROWSER_HZ, seconds, 48000, pulsed=True))]
            for call, browser, _ in calls if browser}
    g711 = tone(PHONE_HZ, seconds, 8000, pulsed=True)
    phone = {id(call): [call.phone_packet(g711[i * FRAME_8K : (i + 1) * FRAME_8K]) for i in range(frames)]
             for call, _, sends in calls if sends}
    start_cpu, start = worker_cpu_seconds(), time.monotonic()
    for i in range(frames):
        for call, _, _ in calls:
            if id(call) in opus and i < len(opus[id(call)]):
                call.send_from_browser(opus[id(call)][i])
            if id(call) in phone:
                call.send_from_phone(phone[id(call)][i])
            receive_all(call.browser)
            receive_all(call.phone)
        time.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
    return (worker_cpu_seconds() - start_cpu) / (time.monotonic() - start) * 100


def room(seconds: float) -> float:
    relay = NativeRelay()
    relay.start()
    calls = [Call(relay, 0, PROFILE) for _ in range(3)]
    try:
        for index, call in enumerate(calls):
            browser = call.browser_media() if index < 2 else None
            call.handle = relay.add_call(browser, None if browser else call.sip_media(), room=1)
        return _run([(call, index < 2, index == 2) for index, call in enumerate(calls)], seconds)
    finally:
        relay.close()
        for call in calls:
            call.close()


def ordinary(seconds: float) -> float:
    relay = NativeRelay()
    relay.start()
    calls = [Call(relay, 0, PROFILE) for _ in range(3)]
    try:
        for call in calls:
            call.add()
        return _run([(call, True, True) for call in calls], seconds)
    finally:
        relay.close()
        for call in calls:
            call.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    in_room, in_calls = room(args.seconds), ordinary(args.seconds)
    print(f"3-party room: {in_room:.2f}% of a core ({in_room / 3:.2f}% per participant); "
          f"3 ordinary calls: {in_calls:.2f}% ({in_calls / 3:.2f}% per call)")


if __name__ == "__main__":
    main()
