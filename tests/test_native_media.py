"""What only the native path has to prove; the rest of the suite runs on it already (``media`` defaults to
``auto``, and this machine has the relay), and ``tests/test_python_media.py`` runs the core call tests on
the Python path too."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.rtpsockets import PORTS_PER_ENGINE, bind_pair

from .audio import has_tone, tone, write_wav
from .browser import MIC_HZ, OpenPhone
from .conftest import PHONE_HZ
from .gatewayprocess import GatewayProcess
from .peers.baresip import Baresip
from .peers.coturn import Coturn
from .peers.delaylink import delayed_host
from .peers.net import LOOPBACK, wait_for_async
from .peers.sipp import SCENARIOS, Sipp, received
from .relayharness import parse_rtcp
from .test_browser import tone_call
from .test_sip_peers import PAGE_HZ, assert_phone_heard
from .webclient import RATE, WebClient

NATIVE = '[engines]\nmedia = "native"\n'


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    """Overrides conftest's: a gateway that must carry its media natively (it would not start otherwise)."""
    gateway = start_gateway(NATIVE)
    assert [engine["media"] for engine in gateway.health()["engines"]] == ["native"]
    return gateway


async def test_the_native_relay_carries_the_calls(gateway: GatewayProcess, web_client, phone: Baresip) -> None:
    """Not the Python bridge: the log names the relay for the call."""
    alice = await web_client()
    await alice.call(phone.uri, tone_hz=PAGE_HZ)
    await alice.next("answered")
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
    await wait_for_async(lambda: "media carried natively" in gateway.log(), 5)


async def test_a_page_forced_through_turn_is_carried_natively(
    start_gateway: Callable[..., GatewayProcess], browser: OpenPhone, tmp_path: Path
) -> None:
    """The page's relayed candidate reaches the gateway as plain UDP from coturn: the relay takes it like any other."""
    with Coturn(tmp_path, "turn-secret") as turn:
        gateway = start_gateway(
            NATIVE + f'[webrtc]\nturn_urls = ["{turn.url}"]\nturn_secret = "turn-secret"\nice_transport_policy = "relay"\n'
        )
        async with browser(gateway) as phone:
            await phone.sign_in("alice")
            await tone_call(phone)
            offer = await phone.page.evaluate("window.phone.pc.localDescription.sdp")
            assert "typ relay" in offer and "typ host" not in offer
        assert "media carried natively" in gateway.log()


_RTCP_FROM_THE_GATEWAY = """async () => {
  let inbound = null, outbound = null;
  (await window.phone.pc.getStats()).forEach((s) => {
    if (s.type === "remote-inbound-rtp" && s.roundTripTimeMeasurements > 0) inbound = s;
    if (s.type === "remote-outbound-rtp") outbound = s;
  });
  return inbound && outbound && { rtt: inbound.roundTripTime, lost: inbound.packetsLost, sent: outbound.packetsSent };
}"""


async def test_chromium_takes_the_gateways_rtcp(gateway: GatewayProcess, browser: OpenPhone) -> None:
    """The relay's SRTCP reaches Chromium's getStats(): remote-inbound-rtp with a round trip measured from its
    RR, remote-outbound-rtp from its SR."""
    async with browser(gateway) as phone:
        await phone.sign_in("alice")
        await phone.dial("600")
        await phone.wait_state("answered")
        await phone.wait_tone(MIC_HZ)
        stats = await wait_for_async(lambda: phone.page.evaluate(_RTCP_FROM_THE_GATEWAY), 30)
        assert 0 < stats["rtt"] < 0.5 and stats["lost"] == 0 and stats["sent"] > 0, stats
        await phone.hang_up()
        await phone.wait_state("ended")


async def test_rfc4733_digits_from_a_sip_phone_reach_the_page(gateway: GatewayProcess, web_client, phone: Baresip) -> None:
    """baresip sends telephone-events in the RTP stream; the relay hands them back and the page gets each digit once."""
    alice = await web_client()
    call = await alice.call(phone.uri)
    await alice.next("answered")
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
    for digit in "4#":
        phone.command("sndcode", digit)
        dtmf = await alice.next("dtmf")
        assert (dtmf["call"], dtmf["digit"]) == (call, digit)


ONE_WAY_S, JITTER_S = 0.02, 0.005


async def test_rtcp_gives_the_page_the_sip_legs_round_trip_and_jitter_and_the_browser_the_gateways_reports(
    tmp_path: Path,
) -> None:
    """The gateway behind a link of 20 ms each way (5 ms of jitter towards it), the page and baresip before it.
    The relay's RTCP with baresip gives the page's ``stats`` the SIP leg's round trip (about 40 ms), its
    jitter and no loss; the page's aiortc takes the relay's SRTCP RR: its remote-inbound-rtp has a round trip."""
    wav = tmp_path / "phone-tone.wav"
    write_wav(wav, tone(PHONE_HZ, 60, 8000), 8000)
    with delayed_host(ONE_WAY_S, JITTER_S) as (outside, host):
        (tmp_path / "gateway").mkdir()
        gateway = GatewayProcess(tmp_path / "gateway", NATIVE, host=host.address, netns=host.netns)
        alice = WebClient(gateway.url)
        try:
            with Baresip(tmp_path, wav, ip=outside) as phone:
                await alice.connect()
                await alice.sign_in("alice")
                call = await alice.call(phone.uri, tone_hz=PAGE_HZ)
                await alice.next("answered")
                await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")

                async def sip_quality() -> dict[str, Any] | None:
                    await alice.send({"type": "stats", "call": call, "id": "q"})
                    sip = (await alice.next("stats"))["sip"]
                    return sip if "rtt_ms" in sip else None  # once baresip's RR echoed the relay's SR (left out before)

                sip = await wait_for_async(sip_quality, 30)
                assert 2 * ONE_WAY_S * 1000 - 10 <= sip["rtt_ms"] < 500, sip
                assert 0.3 <= sip["jitter_ms"] < 30 and sip["loss_pct"] == 0, sip
                assert sip["codec"] in ("PCMU/8000", "PCMA/8000")

                remote = await wait_for_async(lambda: _remote_inbound(alice), 30)
                assert 2 * ONE_WAY_S - 0.01 <= remote.roundTripTime < 0.5, remote
                assert has_tone(alice.last_heard(1.0), RATE, PHONE_HZ)
                await alice.send({"type": "hangup", "call": call})
                await alice.next("ended")
                await asyncio.to_thread(phone.wait_event, "CALL_CLOSED")
                assert_phone_heard(phone, PAGE_HZ)
        finally:
            await alice.close()
            assert gateway.stop() == 0, gateway.log()[-3000:]
        browser_leg = re.search(r"browser jitter [\d.]+ ms, loss 0\.0 %, round trip ([\d.]+) ms", gateway.log())
        assert browser_leg and float(browser_leg.group(1)) >= 2 * ONE_WAY_S * 1000 - 10, "the relay took no RR from the page"


async def _remote_inbound(client: WebClient) -> Any:
    """The page's remote-inbound-rtp stats once they have a round trip (from an RR that echoed its SR)."""
    assert client.pc is not None
    found = [s for s in (await client.pc.getStats()).values() if s.type == "remote-inbound-rtp"]
    return next((s for s in found if s.roundTripTime is not None), None)


def free_port_block(size: int) -> int:
    """The first port of ``size`` consecutive UDP ports the kernel lets us bind now, below its ephemeral range."""
    for first in range(20000, 32000, size):
        sockets: list[socket.socket] = []
        try:
            for port in range(first, first + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("0.0.0.0", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no free block of UDP ports")


def udp_ports(pid: int) -> set[int]:
    """The local ports of the UDP sockets process ``pid`` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}") if os.path.exists(f"/proc/{pid}/fd/{fd}") else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_the_relays_sip_ports_come_from_the_configured_range(
    start_gateway: Callable[..., GatewayProcess], connect_client, phone: Baresip
) -> None:
    """``[sip] rtp_port`` is what an operator opens in a firewall: the relay's RTP and RTCP are there."""
    first = free_port_block(PORTS_PER_ENGINE)
    gateway = start_gateway(NATIVE, rtp_port=first)
    alice = await connect_client(gateway, "alice")
    call = await alice.call(phone.uri, tone_hz=PAGE_HZ)
    await alice.next("answered")
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
    in_block = udp_ports(gateway.process.pid) & set(range(first, first + PORTS_PER_ENGINE))
    rtp = [port for port in in_block if port % 2 == 0 and port + 1 in in_block]
    assert len(rtp) == 1, f"one RTP/RTCP pair in {first}-{first + PORTS_PER_ENGINE - 1}, got {sorted(in_block)}"
    # Two seconds heard both ways: long enough for the phone to record the page too.
    await wait_for_async(lambda: len(alice.last_heard(2.0)) == 2 * RATE and has_tone(alice.last_heard(2.0), RATE, PHONE_HZ), 15)
    await alice.send({"type": "hangup", "call": call})
    await alice.next("ended")
    await asyncio.to_thread(phone.wait_event, "CALL_CLOSED")
    assert_phone_heard(phone, PAGE_HZ)


def _arrived(sock: socket.socket, into: list[tuple[int, bytes]]) -> None:
    """Every datagram waiting on non-blocking ``sock``, with its source port, added to ``into``."""
    while True:
        try:
            packet, source = sock.recvfrom(4096)
        except BlockingIOError:
            return
        into.append((source[1], packet))


async def test_only_the_relay_sends_the_far_end_media(gateway: GatewayProcess, web_client, tmp_path: Path) -> None:
    """pjsua2 only negotiates: every RTP and RTCP datagram the far end gets in a call, from its start to past
    its end, comes from the relay's port pair, none from a stream of pjsua2's own (which the far end could
    only take for a silent second member of the session)."""
    rtp, rtcp = bind_pair(LOOPBACK)
    got_rtp: list[tuple[int, bytes]] = []
    got_rtcp: list[tuple[int, bytes]] = []
    scenario = ["-sf", str(SCENARIOS / "uas_media_at.xml"), "-m", "1"]
    with rtp, rtcp, Sipp(tmp_path, "media_at", scenario, variables={"rtp_port": str(rtp.getsockname()[1])}) as peer:
        rtp.setblocking(False)
        rtcp.setblocking(False)
        alice = await web_client()
        call = await alice.call(peer.uri(), tone_hz=PAGE_HZ)
        await alice.next("answered")

        def relay_reported() -> bool:  # an SR whose SSRC is the RTP stream's: the relay's, a few seconds in
            _arrived(rtp, got_rtp)
            _arrived(rtcp, got_rtcp)
            ssrcs = {int.from_bytes(packet[8:12], "big") for _, packet in got_rtp}
            return any(report.ssrc in ssrcs for _, packet in got_rtcp for report in parse_rtcp(packet)[0])

        await wait_for_async(relay_reported, 10)
        await alice.send({"type": "hangup", "call": call})
        await alice.next("ended")
        assert (await asyncio.to_thread(peer.result, 10)).returncode == 0
        _arrived(rtp, got_rtp)
        _arrived(rtcp, got_rtcp)
    offer = received(peer, "INVITE")[0]
    relay = int(re.search(r"^m=audio (\d+) ", offer, re.MULTILINE).group(1))
    assert {port for port, _ in got_rtp} == {relay}
    assert {port for port, _ in got_rtcp} == {relay + 1}, [(port, parse_rtcp(packet)) for port, packet in got_rtcp]
