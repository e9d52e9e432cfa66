"""What only the native path has to prove; the rest of the suite runs on it already (``media`` defaults to
``auto``, and this machine has the relay), and ``tests/test_python_media.py`` runs the core call tests on
the Python path too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from .browser import OpenPhone
from .gatewayprocess import GatewayProcess
from .peers.baresip import Baresip
from .peers.coturn import Coturn
from .peers.net import wait_for_async
from .test_browser import tone_call
from .test_sip_peers import PAGE_HZ

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
