"""The native relay carries the browser's media on the pair it actually comes on, and follows it.

On a host with two IPv4 addresses facing the browser (a Docker host's ``docker0`` beside its own), each end
has a host candidate on each, and the pair the page's ICE agent sends on need not be the one aioice holds as
nominated: an aioice page with aggressive nomination keeps the last pair whose check completed, Chromium may
switch pairs. The hand-off once took aioice's pair, and the relay read a socket the page's media never came
to. Here the gateway and the page share a namespace with two addresses, and the page sends on a pair of
its choosing, and moves in mid-call: to another of its own sockets, or to the gateway's other address (a
socket the relay reads only because it reads every local socket of the call). The echo extension brings
its tone back, so the tone heard went to the relay and came back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aioice.ice import Candidate, CandidatePair, Connection, StunProtocol

from .browser import MIC_HZ, BrowserPhone, open_phone, require_chromium
from .gatewayprocess import GatewayProcess
from .peers import netns
from .peers.net import wait_for_async
from .test_native_media import NATIVE
from .webclient import WebClient

PAGE_HZ = 650
ECHO = "600"


class PairChoosingClient(WebClient):
    """A page whose ICE agent sends its DTLS and media from ``sending`` to the gateway's candidate that is
    not on the nominated pair, and can move to another of its own sockets."""

    sending: CandidatePair | None = None

    def ice(self) -> Connection:
        assert self.pc is not None
        return self.pc.getTransceivers()[0].sender.transport.transport._connection

    async def offer(self, tone: float, remote_offer: str = "") -> str:
        sdp = await super().offer(tone, remote_offer)
        connection = self.ice()
        connect = connection.connect

        async def connect_then_choose() -> None:
            await connect()
            self._choose(connection)

        async def send_on_chosen_pair(data: bytes, component: int) -> None:
            assert self.sending is not None
            await self.sending.protocol.send_data(data, self.sending.remote_addr)

        connection.connect = connect_then_choose  # type: ignore[method-assign]
        connection.sendto = send_on_chosen_pair  # type: ignore[method-assign]
        return sdp

    def _choose(self, connection: Connection) -> None:
        nominated = connection._nominated[1]
        other: Candidate = next(c for c in connection.remote_candidates if (c.host, c.port) != nominated.remote_addr)
        self.sending = CandidatePair(self._spare_protocol(nominated.protocol), other)

    def _spare_protocol(self, than: StunProtocol) -> StunProtocol:
        return next(p for p in self.ice()._protocols if p is not than)

    def move(self) -> None:
        """Send from another of the page's sockets and close the one sent from so far (not the nominated
        one: aioice's ICE keeps working), so the gateway must follow the media to be heard."""
        assert self.sending is not None
        left = self.sending.protocol
        self.sending = CandidatePair(self._spare_protocol(left), self.sending.remote_candidate)
        left.transport.close()

    def move_to_the_gateways_other_address(self) -> None:
        """Send, from the same socket, to the gateway's other candidate (its other address): its media then
        arrives on another of the gateway's sockets, as when an ICE agent switches pairs."""
        assert self.sending is not None
        now = self.sending.remote_candidate
        other = next(c for c in self.ice().remote_candidates if (c.host, c.port) != (now.host, now.port))
        self.sending = CandidatePair(self.sending.protocol, other)


def moved_in_the_log(gateway: GatewayProcess, sending: CandidatePair) -> bool:
    """Whether the gateway logged that it followed the page's media to ``sending`` (page side, gateway side)."""
    line = "media moved to {}:{}, on our {}:{}, and the relay".format(*sending.local_addr, *sending.remote_addr)
    return line in gateway.log()


@asynccontextmanager
async def page_on_a_two_address_host(workdir: Path) -> AsyncIterator[tuple[GatewayProcess, PairChoosingClient]]:
    """A native gateway and a signed-in page in one namespace with two addresses."""
    with netns.two_address_host() as host:
        gateway = GatewayProcess(workdir, NATIVE, host=host.address, netns=host.netns)
        try:
            with netns.inside(host):
                page = PairChoosingClient(gateway.url)
                try:
                    await page.connect()
                    await page.sign_in("alice")
                    yield gateway, page
                finally:
                    await page.close()
        finally:
            assert gateway.stop() == 0, gateway.log()[-3000:]
        assert "media carried natively" in gateway.log()


async def test_the_relay_takes_the_pair_the_pages_media_comes_on(tmp_path: Path) -> None:
    async with page_on_a_two_address_host(tmp_path) as (gateway, page):
        await page.call(ECHO, tone_hz=PAGE_HZ)
        await page.next("answered")
        assert page.pc is not None and page.pc.localDescription.sdp.count("typ host") == 2
        await page.wait_tone(PAGE_HZ)


@pytest.mark.parametrize("where", ["another_page_socket", "the_gateways_other_address"])
async def test_the_relay_follows_the_pages_media(tmp_path: Path, where: str) -> None:
    """Mid-call the page sends from its other socket (to the same gateway socket), or to the gateway's other
    address (another of the call's sockets there): the relay follows, and the gateway logs the move."""
    async with page_on_a_two_address_host(tmp_path) as (gateway, page):
        await page.call(ECHO, tone_hz=PAGE_HZ)
        await page.next("answered")
        await page.wait_tone(PAGE_HZ)
        if where == "another_page_socket":
            page.move()
        else:
            page.move_to_the_gateways_other_address()
        page.received.clear()
        await page.wait_tone(PAGE_HZ)
        sending = page.sending
        assert sending is not None
        await wait_for_async(lambda: moved_in_the_log(gateway, sending), 5)


_SELECTED_PAIR = """async () => {
  const stats = await window.phone.pc.getStats();
  let found = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) found = stats.get(s.selectedCandidatePairId);
  });
  if (!found) return null;
  const local = stats.get(found.localCandidateId), remote = stats.get(found.remoteCandidateId);
  return { local: [local.address, local.port], remote: [remote.address, remote.port] };
}"""


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4-ipv4", "ipv4-ipv6"])
async def test_chromium_moved_to_the_gateways_other_address_is_still_heard_both_ways(
    tmp_path: Path, mic_wav: Path, ipv6: bool
) -> None:
    """Chromium and the gateway in one namespace with two addresses (signalling on its loopback, which neither
    offers as a candidate): the page calls the echo and hears its microphone. Then the address of the gateway's
    side of Chromium's selected pair goes away, so Chromium switches to a pair on the other address (another
    socket of the gateway's), and the echo must be heard again. With an IPv6 address beside the IPv4 one,
    Chromium starts on IPv6 (preferred) and moves to IPv4."""
    with netns.two_address_host(ipv6) as host:
        gateway = GatewayProcess(tmp_path, NATIVE, netns=host.netns)
        try:
            chromium = netns.program_inside(host, require_chromium(), tmp_path)
            async with open_phone(gateway.url, mic_wav, "two-address-chromium", executable=chromium) as phone:
                await phone.sign_in("alice")
                await phone.dial(ECHO)
                await phone.wait_state("answered")
                await phone.wait_tone(MIC_HZ)
                before = await wait_for_async(lambda: phone.page.evaluate(_SELECTED_PAIR), 5)
                offer = await phone.page.evaluate("window.phone.pc.localDescription.sdp")
                assert offer.count("typ host") == 2, offer
                assert (":" in before["remote"][0]) == ipv6, before
                netns.delete_address(host, before["remote"][0])
                after = await wait_for_async(lambda: _pair_moved(phone, before), 15)
                assert after["local"][0] == after["remote"][0] != before["remote"][0], (before, after)
                await phone.wait_tone(MIC_HZ)
                moved = "media moved to {}:{}, on our {}:{}, and the relay".format(*after["local"], *after["remote"])
                await wait_for_async(lambda: moved in gateway.log(), 5)
        finally:
            assert gateway.stop() == 0, gateway.log()[-3000:]
        assert "media carried natively" in gateway.log()


async def _pair_moved(phone: BrowserPhone, before: dict[str, list]) -> dict[str, list] | None:
    pair = await phone.page.evaluate(_SELECTED_PAIR)
    return pair if pair and pair["remote"] != before["remote"] else None
