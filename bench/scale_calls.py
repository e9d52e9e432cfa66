"""N concurrent calls from one headless Chromium page through a gateway with worker processes.

For each N: the gateway with ceil(N/4) engines behind its Kamailio front, a
sipp RTP echo phone, and one Chromium page holding N RTCPeerConnections, each
with its own WebSocket, user and frequency (bench/scale_page.js). Prints the
gateway system's CPU and PSS per call (the gateway and all its descendants:
forkserver, workers, Kamailio), Chromium's own CPU per call, round-trip and
gateway-added one-way latency, audio lost and tones intact; goes up in N until
calls fail, tones break or more than 1% of the audio is lost.

    .venv/bin/python -m bench.scale_calls --calls 4 8 16 32 --seconds 10

Latency: every call sends a 40 ms burst twice a second and the page times its
return on its audio clock.  A direct Chromium-to-Chromium echo (two
connections in the page) is measured first; gateway-added one way =
(RTT through gateway - RTT direct) / 2.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import Browser, Page, async_playwright

from bench.bursts import frequency, percentile, round_trips
from tests import proctree
from tests.audio import dominant_frequency
from tests.gatewayprocess import GatewayProcess
from tests.peers.net import local_ip
from tests.peers.sipp import echo_uas

PAGE_JS = Path(__file__).with_name("scale_page.js")
PAGE_URL = "http://localhost/scale_calls"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
CALLS_PER_WORKER = 4
WARMUP_S = 3.0
CALLS_PER_SECOND = 10
LOSS_LIMIT_PCT = 1.0
CORES = os.cpu_count() or 1


@dataclasses.dataclass
class Leg:
    """What one call's page side measured over the window."""

    trips: list[float]
    intact: bool
    packets_lost_pct: float
    concealed_pct: float


def measure_leg(report: dict[str, Any], before: dict[str, float]) -> Leg:
    """Round trips, tone and loss of one call from the page's report and its counters at the window's start."""
    after = report["stats"]
    received = after["packetsReceived"] - before["packetsReceived"]
    lost = after["packetsLost"] - before["packetsLost"]
    samples = after["totalSamplesReceived"] - before["totalSamplesReceived"]
    concealed = after["concealedSamples"] - before["concealedSamples"]
    bursts = [np.asarray(b) for b in report["bursts"]]
    heard = dominant_frequency(np.round(np.concatenate(bursts) * 32767).astype(np.int16), report["rate"]) if bursts else 0.0
    return Leg(
        trips=round_trips(report["sent"], report["back"]),
        intact=abs(heard - report["freq"]) < 20,
        packets_lost_pct=100 * lost / (lost + received) if lost + received > 0 else 100.0,
        concealed_pct=100 * concealed / samples if samples > 0 else 100.0,
    )


@dataclasses.dataclass
class Usage:
    """CPU over one window, in cores (1.0 is one core busy all the time)."""

    trees: dict[str, float]
    busiest: dict[str, tuple[int, float]]
    """Per tree, its busiest process and its share of one core."""
    machine: float


async def measure(page: Page, seconds: float, trees: dict[str, set[int]]) -> tuple[list[Leg], Usage]:
    """After a warm-up, every leg of the page and the CPU used by each process tree over one window of ``seconds``."""
    await asyncio.sleep(WARMUP_S)
    start = await page.evaluate("bench.mark()")
    before, machine0, started = {name: proctree.cpu(pids) for name, pids in trees.items()}, proctree.machine_busy(), time.monotonic()
    await asyncio.sleep(seconds)
    reports = await page.evaluate("since => bench.report(since)", start["at"])
    after, machine1, elapsed = {name: proctree.cpu(pids) for name, pids in trees.items()}, proctree.machine_busy(), time.monotonic() - started
    legs = [measure_leg(report, counters) for report, counters in zip(reports, start["stats"])]
    busiest = {}
    for name in trees:
        pid = max(before[name].keys() & after[name].keys(), key=lambda p: after[name][p] - before[name][p], default=0)
        busiest[name] = (pid, (after[name].get(pid, 0) - before[name].get(pid, 0)) / elapsed)
    usage = Usage(
        {name: proctree.cpu_used(before[name], after[name]) / elapsed for name in trees}, busiest,
        (machine1 - machine0) / elapsed,
    )
    return legs, usage


@dataclasses.dataclass
class Row:
    calls: int
    workers: int
    carried: int
    cpu_per_call_pct: float
    chromium_cpu_per_call_pct: float
    pss_per_call_mib: float
    rtt_median_ms: float
    rtt_p95_ms: float
    added_one_way_median_ms: float
    added_one_way_p95_ms: float
    packets_lost_pct: float
    concealed_pct: float
    tones_intact: int
    sipp_cpu_pct: float
    machine_busy_pct: float
    """Of all cores, whoever used them."""
    foreign_cpu_pct: float
    """Of one core: what processes outside this benchmark used meanwhile (other people's tests, say)."""
    busiest_gateway_process: str
    busiest_gateway_process_pct: float
    """Of one core: a worker near 100% is out of CPU whatever the machine has left."""
    failures: list[str]

    def broke(self) -> str:
        """Why this N is past what the system carries, or "" if it held."""
        if self.carried < self.calls:
            return f"only {self.carried}/{self.calls} calls carried ({'; '.join(sorted(set(self.failures)))})"
        if self.tones_intact < self.carried:
            return f"only {self.tones_intact}/{self.carried} tones came back intact"
        if max(self.packets_lost_pct, self.concealed_pct) > LOSS_LIMIT_PCT:
            return (
                f"audio lost: {self.packets_lost_pct:.1f}% packets, {self.concealed_pct:.1f}% samples concealed; "
                f"machine {self.machine_busy_pct:.0f}% busy over {CORES} cores "
                f"({self.foreign_cpu_pct:.0f}% of a core by processes outside this benchmark), busiest gateway process "
                f"{self.busiest_gateway_process} at {self.busiest_gateway_process_pct:.0f}% of a core"
            )
        return ""


async def open_page(browser: Browser) -> Page:
    """A fresh page with the bench script, at a localhost address (a secure context: AudioWorklet works).

    Playwright answers the request itself, so no web server is needed.
    """
    page = await browser.new_page()
    html = f"<!doctype html><title>scale_calls</title><script>{PAGE_JS.read_text()}</script>"
    await page.route(PAGE_URL, lambda route: route.fulfill(content_type="text/html", body=html))
    await page.goto(PAGE_URL)
    return page


def own_pids(name: str) -> set[int]:
    """This benchmark's descendants whose name starts with ``name``: Chromium's processes, sipp."""
    return {pid for pid in proctree.tree(os.getpid()) if proctree.comm(pid).startswith(name)}


async def direct_rtt(browser: Browser, seconds: float) -> list[float]:
    """Chromium's own share of a round trip: one connection echoed by another in the same page."""
    page = await open_page(browser)
    try:
        await page.evaluate("freq => bench.startDirect(freq)", 1000)
        (leg,), _ = await measure(page, seconds, {})
        return leg.trips
    finally:
        await page.close()


def role(gateway: GatewayProcess, pid: int) -> str:
    """What a process of the gateway's tree is: the gateway itself, worker N (from its log), or its name."""
    if pid == gateway.process.pid:
        return f"gateway pid {pid}"
    for index, worker_pid, _ in gateway.worker_starts():
        if worker_pid == pid:
            return f"worker {index} pid {pid}"
    return f"{proctree.comm(pid)} pid {pid}"


async def run(browser: Browser, n: int, workers: int, seconds: float, direct: float, workdir: Path) -> Row:
    root = workdir / f"n{n}"
    root.mkdir()
    host = local_ip()
    gateway = GatewayProcess(root, f"[engines]\nworkers = {workers}\n", log_level="info", host=host)
    page = await open_page(browser)
    try:
        with echo_uas(root / "sipp", ip=host) as phone:
            await asyncio.sleep(2)  # workers and Kamailio up and settled
            idle_pss = proctree.pss(proctree.tree(gateway.process.pid))
            outcomes = await page.evaluate(
                "([ws, uris, freqs, rate]) => bench.startCalls(ws, uris, freqs, 'bench', rate)",
                [
                    gateway.url.replace("http", "ws", 1) + "ws", [phone.uri(f"echo{i}") for i in range(n)],
                    [frequency(i) for i in range(n)], CALLS_PER_SECOND,
                ],
            )
            trees = {
                "gateway": proctree.tree(gateway.process.pid), "chromium": own_pids("chrom"), "sipp": own_pids("sipp"),
                "bench": proctree.tree(os.getpid()),
            }
            legs, usage = await measure(page, seconds, trees)
            pss = proctree.pss(proctree.tree(gateway.process.pid)) - idle_pss
    finally:
        await page.close()
        gateway.stop()
    up = [leg for leg, outcome in zip(legs, outcomes) if outcome == "answered"]
    calls = max(1, len(up))
    trips = [t for leg in up for t in leg.trips]
    added = [(t - direct) / 2 for t in trips]
    return Row(
        n, workers, len(up), 100 * usage.trees["gateway"] / calls, 100 * usage.trees["chromium"] / calls, pss / calls,
        1000 * statistics.median(trips) if trips else float("nan"), 1000 * percentile(trips, 95),
        1000 * statistics.median(added) if added else float("nan"), 1000 * percentile(added, 95),
        statistics.mean(leg.packets_lost_pct for leg in up) if up else float("nan"),
        statistics.mean(leg.concealed_pct for leg in up) if up else float("nan"),
        sum(leg.intact for leg in up), 100 * usage.trees["sipp"], 100 * usage.machine / CORES,
        100 * (usage.machine - usage.trees["bench"]),
        role(gateway, usage.busiest["gateway"][0]), 100 * usage.busiest["gateway"][1],
        [outcome for outcome in outcomes if outcome != "answered"],
    )


def print_row(row: Row) -> None:
    print(
        f"N={row.calls:3d} workers={row.workers:2d} carried={row.carried:3d} "
        f"cpu/call={row.cpu_per_call_pct:5.1f}% chromium cpu/call={row.chromium_cpu_per_call_pct:5.1f}% "
        f"pss/call={row.pss_per_call_mib:5.1f} MiB rtt={row.rtt_median_ms:4.0f}/{row.rtt_p95_ms:4.0f} ms "
        f"added one-way={row.added_one_way_median_ms:4.0f}/{row.added_one_way_p95_ms:4.0f} ms "
        f"lost={row.packets_lost_pct:4.1f}% concealed={row.concealed_pct:4.1f}% "
        f"tones intact={row.tones_intact}/{row.carried} | sipp cpu={row.sipp_cpu_pct:.0f}% "
        f"machine busy={row.machine_busy_pct:.0f}% (foreign {row.foreign_cpu_pct:.0f}%) busiest gw proc={row.busiest_gateway_process_pct:.0f}% ({row.busiest_gateway_process})",
        flush=True,
    )


def sizes(calls: list[int], most: int) -> Iterator[int]:
    """The N asked for, then doubling the largest, up to ``most``: the caller stops at the first breakdown."""
    yield from calls
    n = max(calls) * 2
    while n <= most:
        yield n
        n *= 2


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, help="engines ([engines] workers) for every N (default: ceil(N/4))")
    parser.add_argument("--max-calls", type=int, default=256, help="after --calls, keep doubling N up to this until it breaks")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows, broke = [], ""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            direct = statistics.median(await direct_rtt(browser, args.seconds))
            print(f"direct Chromium->Chromium echo RTT (the browser's own share): median {1000 * direct:.0f} ms", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                for n in sizes(args.calls, args.max_calls):
                    workers = args.workers or -(-n // CALLS_PER_WORKER)
                    row = await run(browser, n, workers, args.seconds, direct, Path(tmp))
                    rows.append(row)
                    print_row(row)
                    broke = row.broke()
                    if broke:
                        print(f"broke down at N={n}: {broke}", flush=True)
                        break
        finally:
            await browser.close()
    if not broke:
        print(f"held up to N={rows[-1].calls} (--max-calls {args.max_calls})", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"direct_rtt_ms": 1000 * direct, "rows": [dataclasses.asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
