"""N concurrent bridged calls: browser stand-ins (aiortc) -> gateway -> sipp RTP echo.

Prints, for each N: the gateway's CPU per call, PSS per call, round-trip and
gateway-added one-way latency (median and p95), frames lost, and how many
calls got their own tone back intact.  ``--json FILE`` writes the same rows.

    .venv/bin/python -m bench.bridge_calls --calls 1 2 4 5 --seconds 10

Latency: every call sends a 40 ms burst of its own frequency twice a second;
the burst's return is timed by the sender.  The round trip also holds the
stand-in's own aiortc receive buffer, so a direct aiortc-to-aiortc echo is
measured first; gateway-added one way = (RTT through gateway - RTT direct / 2) / 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.bursts import burst_mask, onsets, percentile, round_trips, tone_intact
from tests.gatewayprocess import GatewayProcess
from tests.proctree import cpu_seconds, pss_mib
from tests.peers.sipp import echo_uas
from tests.webclient import FRAME, RATE, ToneTrack, WebClient

WARMUP_S = 3.0


class BurstTrack(ToneTrack):
    """Silence with a burst of ``freq`` every PERIOD_S; remembers when each burst left."""

    def __init__(self, freq: float) -> None:
        super().__init__(freq, amplitude=0.5)
        self.sent: list[float] = []

    def samples(self, first: int) -> np.ndarray:
        in_burst = burst_mask(first, FRAME)
        if in_burst[0] and not burst_mask(first - 1, 1)[0]:
            self.sent.append(time.monotonic())
        return super().samples(first) * in_burst


async def direct_rtt(seconds: float) -> list[float]:
    """The stand-ins' own share: aiortc to an aiortc echo, no gateway."""
    caller, echo = RTCPeerConnection(RTCConfiguration(iceServers=[])), RTCPeerConnection(RTCConfiguration(iceServers=[]))
    burst, received = BurstTrack(1000), []

    async def listen(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                received.append((time.monotonic(), frame.to_ndarray().reshape(-1)[:: len(frame.layout.channels)]))

    caller.addTrack(burst)
    caller.on("track", lambda track: asyncio.ensure_future(listen(track)))
    echo.on("track", lambda track: echo.addTrack(track))
    await caller.setLocalDescription(await caller.createOffer())
    await echo.setRemoteDescription(caller.localDescription)
    await echo.setLocalDescription(await echo.createAnswer())
    await caller.setRemoteDescription(echo.localDescription)
    await asyncio.sleep(WARMUP_S + seconds)
    trips = round_trips(burst.sent, onsets(received, time.monotonic() - seconds))
    await caller.close()
    await echo.close()
    return trips


@dataclasses.dataclass
class Row:
    calls: int
    carried: int
    cpu_per_call_pct: float
    pss_per_call_mib: float
    rtt_median_ms: float
    rtt_p95_ms: float
    added_one_way_median_ms: float
    added_one_way_p95_ms: float
    frames_lost_pct: float
    tones_intact: int


async def run(n: int, seconds: float, direct: float, workdir: Path, config: str) -> Row:
    root = workdir / f"n{n}"
    root.mkdir()
    gateway = GatewayProcess(root, config, log_level="warning")
    clients: list[WebClient] = []
    with echo_uas(root / "sipp") as phone:
        try:
            await asyncio.sleep(1)
            idle_pss = pss_mib(gateway.process.pid)
            for i in range(n):
                client = WebClient(gateway.url)
                clients.append(client)
                await client.connect()
                await client.sign_in(f"bench{i}")
                await client.send({"type": "call", "to": phone.uri("echo"), "sdp": await client.offer(BurstTrack(500 + 150 * i))})
            carried = [await outcome(client) for client in clients]
            await asyncio.sleep(WARMUP_S)
            start, cpu0 = time.monotonic(), cpu_seconds(gateway.process.pid)
            await asyncio.sleep(seconds)
            cpu = cpu_seconds(gateway.process.pid) - cpu0
            pss = pss_mib(gateway.process.pid)
            up = [client for client, ok in zip(clients, carried) if ok]
            trips = [t for c in up for t in round_trips(c.tone.sent, onsets(c.received, start))]
            expected = seconds * RATE / FRAME
            lost = [max(0.0, 1 - sum(1 for arrived, _ in c.received if arrived >= start) / expected) for c in up]
            intact = sum(tone_intact(c.received, start, c.tone.freq) for c in up)
        finally:
            for client in clients:
                await client.close()
            gateway.stop()
    calls = max(1, len(up))
    added = [(t - direct / 2) / 2 for t in trips]
    return Row(
        n, len(up), 100 * cpu / seconds / calls, (pss - idle_pss) / calls,
        1000 * statistics.median(trips) if trips else float("nan"), 1000 * percentile(trips, 95),
        1000 * statistics.median(added) if added else float("nan"), 1000 * percentile(added, 95),
        100 * statistics.mean(lost) if lost else float("nan"), intact,
    )


async def outcome(client: WebClient) -> bool:
    """Follow one call's setup: True once answered, False if refused or ended."""
    while True:
        message = await client.next(timeout=15)
        if message["type"] == "sdp":
            await client.apply_answer(message["sdp"])
        elif message["type"] == "answered":
            return True
        elif message["type"] in ("ended", "error"):
            return False


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 2, 4, 5])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--config", type=Path, help="gateway configuration file to run with")
    args = parser.parse_args()
    trips = await direct_rtt(args.seconds)
    direct = statistics.median(trips)
    print(f"direct aiortc->aiortc echo RTT (the stand-ins' own buffers): median {1000 * direct:.0f} ms")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.calls:
            row = await run(n, args.seconds, direct, Path(tmp), args.config.read_text() if args.config else "")
            rows.append(row)
            print(
                f"N={row.calls:3d} carried={row.carried:3d} cpu/call={row.cpu_per_call_pct:5.1f}% "
                f"pss/call={row.pss_per_call_mib:5.1f} MiB rtt={row.rtt_median_ms:4.0f}/{row.rtt_p95_ms:4.0f} ms "
                f"added one-way={row.added_one_way_median_ms:4.0f}/{row.added_one_way_p95_ms:4.0f} ms "
                f"lost={row.frames_lost_pct:4.1f}% tones intact={row.tones_intact}/{row.carried}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"direct_rtt_ms": 1000 * direct, "rows": [dataclasses.asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
