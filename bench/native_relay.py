"""CPU of the native relay's worker thread per packet, each way, on 127.0.0.1.

    .venv/bin/python -m bench.native_relay --packets 5000

One call: the browser stand-in sends Opus/SRTP only (browser -> SIP: SRTP
unprotect, Opus decode, G.711 encode, send), then the phone stand-in sends
G.711 only (SIP -> browser: G.711 decode, Opus encode, SRTP protect, send).
The worker thread's own CPU time (/proc/self/task, thread "mediarelay")
divided by the packets it carried gives microseconds per packet; at 50
packets a second each way, a call costs (both figures summed) * 50 / 10^6
of a core.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tests.audio import tone
from tests.relayharness import BROWSER_HZ, FRAME_8K, PHONE_HZ, Call, receive_all, relay_call, wait_for


def worker_cpu_seconds() -> float:
    """User+system CPU of this process's thread named "mediarelay"."""
    ticks = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        if (task / "comm").read_text().strip() == "mediarelay":
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks
    raise RuntimeError("no mediarelay thread")


def one_way(call: Call, packets: list[bytes], send: str, counter: str) -> float:
    """Microseconds of worker CPU per packet for `packets` sent with call.`send`."""
    start, taken = worker_cpu_seconds(), call.relay.stats(call.handle)[counter]
    for i, packet in enumerate(packets):
        getattr(call, send)(packet)
        if i % 64 == 63:  # stay within the socket buffers
            wait_for(lambda: call.relay.stats(call.handle)[counter] - taken >= i + 1)
            receive_all(call.browser)
            receive_all(call.phone)
    wait_for(lambda: call.relay.stats(call.handle)[counter] - taken >= len(packets))
    return (worker_cpu_seconds() - start) / len(packets) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=5000)
    args = parser.parse_args()
    seconds = args.packets * 0.02
    with relay_call() as call:
        opus = [call.browser_packet(p) for p in call.opus_packets(tone(BROWSER_HZ, seconds, 48000, pulsed=True))]
        g711 = tone(PHONE_HZ, seconds, 8000, pulsed=True)
        phone = [call.phone_packet(g711[i : i + FRAME_8K]) for i in range(0, len(g711) - FRAME_8K + 1, FRAME_8K)]
        to_sip = one_way(call, opus, "send_from_browser", "sip_tx_packets")
        to_browser = one_way(call, phone, "send_from_phone", "browser_tx_packets")
    per_call = (to_sip + to_browser) * 50 / 1e6 * 100
    print(f"browser -> SIP {to_sip:.1f} us/packet, SIP -> browser {to_browser:.1f} us/packet, "
          f"{per_call:.2f}% of a core per call")


if __name__ == "__main__":
    main()
