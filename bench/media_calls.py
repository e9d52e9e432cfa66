"""N WebRTC calls into the gateway and into rtpengine, side by side, from one cheap load generator.

Targets: ``gateway`` (its packets carried by the native relay), ``gateway-python``
(the same gateway with ``[engines] media = "python"``) and ``rtpengine``. All
bridge WebRTC (ICE, DTLS-SRTP, Opus 48 kHz) to plain RTP PCMU
towards a sipp RTP echo, transcoding both ways. For each target and N it
prints (and ``--json FILE`` writes) what the system under test costs per
call in CPU and PSS (summed over its processes: the gateway with its
workers and Kamailio, or rtpengine; PSS both as what the calls added and as
the whole tree's), the RTP lost, how many checked calls
heard their own tone, the added one-way latency, the load generator's own
CPU per call and how busy the machine was.

    .venv/bin/python -m bench.media_calls --calls 10 50 100 --seconds 30 --against gateway gateway-python rtpengine

The load generator: every call makes real ICE and DTLS handshakes with an
aiortc client offering Opus only; then ``gateway.webrtchandoff`` takes the
client's media path and one loop sends pre-encoded Opus bursts of each
call's own tone over pylibsrtp (tests/srtpcall.py), every 20 ms for all
calls. What comes back is counted for every call (loss from sequence
numbers) and decoded for ``--check`` calls spread over N, which give the
tones and the latency: a burst's round trip minus the echo's own (plain
UDP to sipp, timed first) and the load generator's own Opus delay, halved.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from bench import codecwork
from bench.bursts import LOUD, PERIOD_S, burst_mask, frequency, onsets, percentile, round_trips, tone_intact
from bench.rtpengine import Rtpengine
from gateway.webrtchandoff import hand_off
from gateway.webrtcleg import opus_encoder
from tests import proctree
from tests.audio import tone
from tests.gatewayprocess import GatewayProcess
from tests.peers.net import local_ip
from tests.peers.sipp import Sipp, echo_uas
from tests.srtpcall import RATE, SrtpCall, encode_opus, opus_decoder, pump
from tests.webclient import WebClient

CLIENT_BIT_RATE = 32000  # what a browser sends for voice
CALLS_PER_SECOND = 10
SETUP_TIMEOUT_S = 20.0
WARMUP_S = 3.0
CALLS_PER_WORKER = 4
CORES = os.cpu_count() or 1

Answerer = Callable[[int, str], Awaitable[str]]
"""Places call i with the client's SDP offer on the target; returns the SDP answer."""


@dataclasses.dataclass
class Row:
    target: str
    calls: int
    carried: int
    cpu_per_call_pct: float
    pss_per_call_mib: float
    """What the calls added to the system under test's PSS, per call."""
    tree_pss_per_call_mib: float
    """The whole system under test's PSS while carrying them (idle capacity included), per call."""
    lost_pct: float
    tones_checked: int
    tones_intact: int
    added_one_way_ms_p50: float
    added_one_way_ms_p95: float
    machine_busy_pct: float
    loadgen_cpu_per_call_pct: float
    target_opus: str
    """Channels of the Opus the target sent, as the checked calls saw it."""
    failures: list[str]


def burst_frames(freq: float) -> list[bytes]:
    """One PERIOD_S of call audio, a burst of ``freq`` then silence, as Opus packets to send in a loop."""
    samples = int(PERIOD_S * RATE)
    return encode_opus((tone(freq, PERIOD_S, RATE) * burst_mask(0, samples)).astype(np.int16), CLIENT_BIT_RATE)


def own_opus_delay(frames: list[bytes]) -> float:
    """Seconds from the start of the burst to its onset once decoded: the load generator's own share of a round trip."""
    decoder = opus_decoder()
    decoded = np.concatenate([frame.to_ndarray().reshape(-1) for packet in frames for frame in decoder.decode(av.Packet(packet))])
    return float(np.argmax(np.abs(decoded) > LOUD)) / RATE


async def echo_rtt(sipp: Sipp, count: int = 20) -> float:
    """The echo's own share of a round trip: median of plain UDP datagrams bounced off sipp's RTP echo."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[float] = asyncio.Queue()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Receiver(arrived), local_addr=(sipp.ip, 0), remote_addr=(sipp.ip, sipp.media_port)
    )
    trips = []
    try:
        for _ in range(count):
            sent = time.monotonic()
            transport.sendto(b"\x80\x00" + bytes(170))
            with contextlib.suppress(asyncio.TimeoutError):
                trips.append(await asyncio.wait_for(arrived.get(), 1) - sent)
            await asyncio.sleep(0.01)
    finally:
        transport.close()
    return statistics.median(trips) if trips else 0.0


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, arrived: asyncio.Queue[float]) -> None:
        self._arrived = arrived

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._arrived.put_nowait(time.monotonic())


async def client_offer() -> RTCPeerConnection:
    """A client peer connection offering Opus only, with no track: after the hand-off nothing in it encodes."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("audio", direction="sendrecv")
    transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"])
    await pc.setLocalDescription(await pc.createOffer())
    return pc


@contextlib.asynccontextmanager
async def gateway_target(
    workdir: Path, host: str, n: int, phone: Sipp, media: str = "python"
) -> AsyncIterator[tuple[Answerer, Callable[[], set[int]]]]:
    """The gateway (embedded engine up to 4 calls, then ceil(N/4) engines behind Kamailio), dialled over its
    WebSocket, its packets carried by ``media``: aiortc and pjsua2 in Python, or the native relay."""
    workers = 0 if n <= CALLS_PER_WORKER else -(-n // CALLS_PER_WORKER)
    # Every call comes from this one address: lift the per-source WebSocket limit meant for strangers.
    config = f'[engines]\nworkers = {workers}\nmedia = "{media}"\n[http]\nmax_sockets_per_source = {n + 10}\n'
    gateway = GatewayProcess(workdir, config, log_level="warning", host=host)
    clients: list[WebClient] = []

    async def place(i: int, offer: str) -> str:
        client = WebClient(gateway.url)
        clients.append(client)
        await client.connect()
        await client.sign_in(f"bench{i}")
        await client.send({"type": "call", "to": phone.uri(f"echo{i}"), "sdp": offer})
        while True:
            message = await client.next(timeout=SETUP_TIMEOUT_S)
            if message["type"] == "sdp":
                return message["sdp"]
            if message["type"] in ("ended", "error"):
                raise RuntimeError(f"gateway: {message.get('reason') or message.get('message') or message}")

    try:
        await asyncio.sleep(2)  # workers and Kamailio up and settled
        yield place, lambda: proctree.tree(gateway.process.pid)
    finally:
        for client in clients:
            await client.close()
        gateway.stop()


@contextlib.asynccontextmanager
async def rtpengine_target(workdir: Path, host: str, n: int, phone: Sipp) -> AsyncIterator[tuple[Answerer, Callable[[], set[int]]]]:
    """rtpengine, offered the client's SDP over ng and answered with the sipp echo's address, PCMU."""
    far_end = (
        f"v=0\r\no=- 1 1 IN IP4 {phone.ip}\r\ns=-\r\nc=IN IP4 {phone.ip}\r\nt=0 0\r\n"
        f"m=audio {phone.media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    calls: list[str] = []
    with Rtpengine(workdir, host, n) as engine:

        async def place(i: int, offer: str) -> str:
            call_id, from_tag, to_tag = f"bench{i}-{secrets.token_hex(4)}", f"client{i}", f"echo{i}"
            engine.offer(call_id, from_tag, offer)
            calls.append(call_id)
            return engine.answer(call_id, from_tag, to_tag, far_end)

        try:
            yield place, lambda: {engine.pid}
        finally:
            for call_id in calls:
                with contextlib.suppress(Exception):
                    engine.delete(call_id)


TARGETS = {
    "gateway": functools.partial(gateway_target, media="native"),
    "gateway-python": gateway_target,
    "rtpengine": rtpengine_target,
}


async def set_up(i: int, place: Answerer, checked: bool, pcs: list[RTCPeerConnection], calls: list[SrtpCall]) -> SrtpCall:
    """Call i: offer, answer, ICE and DTLS done by aiortc, then the media path handed off and sending from the pump."""
    pc = await client_offer()
    pcs.append(pc)
    answer = await place(i, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed"):
            raise RuntimeError(f"ICE/DTLS {pc.connectionState}")
        await asyncio.sleep(0.05)
    call = SrtpCall(await hand_off(pc), burst_frames(frequency(i)), decode=checked)
    calls.append(call)
    return call


@dataclasses.dataclass
class Snapshot:
    """Counters at one moment: CPU of the target's processes and of the load generator, the machine, each call's RTP."""

    at: float
    target_cpu: dict[int, float]
    loadgen_cpu: float
    machine: float
    rtp: dict[int, tuple[int, int | None]]
    """Per call i: packets received, highest sequence number."""

    @classmethod
    def take(cls, pids: set[int], calls: dict[int, SrtpCall]) -> Snapshot:
        return cls(
            time.monotonic(), proctree.cpu(pids), proctree.cpu_seconds(os.getpid()), proctree.machine_busy(),
            {i: (call.packets, call.highest) for i, call in calls.items()},
        )


def lost_pct(before: tuple[int, int | None], call: SrtpCall) -> float:
    """RTP lost on the way back over the window, from sequence numbers (100 if nothing came)."""
    packets, highest = before
    if highest is None or call.highest is None or call.highest == highest:
        return 100.0
    return max(0.0, 100 * (1 - (call.packets - packets) / (call.highest - highest)))


async def run(target: str, n: int, seconds: float, check: int, workdir: Path) -> Row:
    """One target at N calls: set them up, pump, measure one window of ``seconds``, tear down."""
    root = workdir / f"{target}-n{n}"
    root.mkdir()
    host = local_ip()
    spread = min(n, check)
    checked = {round(k * (n - 1) / max(1, spread - 1)) for k in range(spread)}
    pcs: list[RTCPeerConnection] = []
    calls: list[SrtpCall] = []
    with echo_uas(root / "sipp", ip=host) as phone:
        echo = await echo_rtt(phone)
        async with TARGETS[target](root, host, n, phone) as (place, pids):
            idle_pss = proctree.pss(pids())
            pumping = asyncio.ensure_future(pump(calls, n / CALLS_PER_SECOND + SETUP_TIMEOUT_S + WARMUP_S + seconds + 5))
            try:
                setups = []
                for i in range(n):
                    setups.append(asyncio.ensure_future(asyncio.wait_for(set_up(i, place, i in checked, pcs, calls), SETUP_TIMEOUT_S)))
                    await asyncio.sleep(1 / CALLS_PER_SECOND)
                results = await asyncio.gather(*setups, return_exceptions=True)
                up = {i: r for i, r in enumerate(results) if isinstance(r, SrtpCall)}
                failures = [f"{type(r).__name__}: {r}" for r in results if not isinstance(r, SrtpCall)]
                await asyncio.sleep(WARMUP_S)
                processes = pids()
                before = Snapshot.take(processes, up)
                await asyncio.sleep(seconds)
                after = Snapshot.take(processes, up)
                loaded_pss = proctree.pss(pids())
            finally:
                pumping.cancel()
                for call in calls:
                    call.close()
                for pc in pcs:
                    await pc.close()
    elapsed, carried = after.at - before.at, max(1, len(up))
    lost = [lost_pct(before.rtp[i], call) for i, call in up.items()]
    sample = {i: call for i, call in up.items() if i in checked}
    own = own_opus_delay(burst_frames(frequency(0))) + echo
    added = [
        (trip - own) / 2 for call in sample.values()
        for trip in round_trips([t for t in call.loop_starts if t >= before.at], onsets(call.received, before.at))
    ]
    return Row(
        target, n, len(up), 100 * proctree.cpu_used(before.target_cpu, after.target_cpu) / elapsed / carried,
        (loaded_pss - idle_pss) / carried, loaded_pss / carried, statistics.mean(lost) if lost else float("nan"), len(sample),
        sum(tone_intact(call.received, before.at, frequency(i)) for i, call in sample.items()),
        1000 * percentile(added, 50), 1000 * percentile(added, 95),
        100 * (after.machine - before.machine) / elapsed / CORES, 100 * (after.loadgen_cpu - before.loadgen_cpu) / elapsed / carried,
        opus_seen(sample), failures,
    )


def opus_seen(sample: dict[int, SrtpCall]) -> str:
    """Whether the target's Opus came coded as stereo or mono, as the checked calls saw it."""
    if not sample:
        return "nothing received"
    return "stereo" if any(call.stereo for call in sample.values()) else "mono"


def print_row(row: Row) -> None:
    print(
        f"{row.target:14s} N={row.calls:3d} carried={row.carried:3d} cpu/call={row.cpu_per_call_pct:5.2f}% "
        f"pss/call={row.pss_per_call_mib:5.2f} MiB (whole tree {row.tree_pss_per_call_mib:5.2f}) lost={row.lost_pct:4.1f}% tones intact={row.tones_intact}/{row.tones_checked} "
        f"added one-way p50/p95={row.added_one_way_ms_p50:4.0f}/{row.added_one_way_ms_p95:4.0f} ms "
        f"machine busy={row.machine_busy_pct:3.0f}% loadgen cpu/call={row.loadgen_cpu_per_call_pct:4.2f}% "
        f"target's Opus: {row.target_opus}",
        flush=True,
    )
    for failure in sorted(set(row.failures)):
        print(f"    not carried: {failure}", flush=True)


def encoder_settings() -> str:
    """What each side is set to encode, so rows are read knowing the targets do different work."""
    codec = opus_encoder()
    return (
        f"load generator sends Opus mono {CLIENT_BIT_RATE // 1000} kb/s (pre-encoded); "
        f"gateway-python encodes Opus {codec.layout.name} {codec.bit_rate // 1000} kb/s {codec.options.get('application', '')}; "
        f"gateway (native relay) encodes Opus mono 20 kb/s voip, complexity 5, in-band FEC; "
        f"rtpengine 10.5 encodes Opus stereo at its default 32 kb/s; both transcode to PCMU towards the echo"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--against", nargs="+", choices=sorted(TARGETS), default=sorted(TARGETS))
    parser.add_argument("--check", type=int, default=10, help="calls (spread over N) whose audio is decoded and checked")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    print(encoder_settings(), flush=True)
    rows = []
    codec_work = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.calls:
            for target in args.against:
                row = await run(target, n, args.seconds, args.check, Path(tmp))
                rows.append(row)
                print_row(row)
            bare = codecwork.cpu_per_call_pct(n, args.seconds, Path(tmp))
            codec_work.append({"calls": n, "cpu_per_call_pct": bare})
            print(f"{'bare codec work':14s} N={n:3d} cpu/call={bare:5.2f}% (Opus decode + G.711 + Opus encode only)", flush=True)
    if args.json:
        runs = {"runs": [dataclasses.asdict(row) for row in rows], "codec_work": codec_work}
        args.json.write_text(json.dumps(runs, indent=2, allow_nan=True))


if __name__ == "__main__":
    asyncio.run(main())
