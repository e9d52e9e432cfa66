"""Calls whose packets the native relay carries (``[engines] media = "native"``), with real peers.

The same tests as the Python path's, collected again here with ``gateway``
overridden, so every behaviour is checked on both paths; plus what only the
native path has to prove (its media timeout, a page forced through TURN).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from .browser import OpenPhone
from .gatewayprocess import GatewayProcess
from .peers.baresip import Baresip
from .peers.coturn import Coturn
from .test_browser import (  # noqa: F401 - collected again, on the native path
    test_incoming_call_answered_both_ways_then_one_declined,
    test_page_calls_a_sip_phone_with_audio_both_ways_and_dtmf,
    tone_call,
)
from .test_builtin_extensions import (  # noqa: F401
    test_echo_extension_returns_your_voice,
    test_tone_extension_plays_440_hz,
)
from .test_sip_peers import (  # noqa: F401
    PAGE_HZ,
    test_dtmf_from_the_page_reaches_the_sip_phone,
    test_early_media_reaches_the_page_before_the_answer,
    test_page_calls_a_sip_phone_and_both_hear_each_other,
    test_page_that_vanishes_mid_call_sends_bye,
    test_sip_phone_calls_a_page_and_hangs_up,
    test_the_page_can_read_the_sip_legs_quality,
)
from .test_web_calls import (  # noqa: F401
    test_call_between_two_pages_carries_audio_both_ways,
    test_twenty_calls_in_a_row_leak_nothing,
)
from .webclient import WebClient

NATIVE = '[engines]\nmedia = "native"\n'


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    """Overrides conftest's: the default gateway with its media on the native relay."""
    gateway = start_gateway(NATIVE)
    assert [engine["media"] for engine in gateway.health()["engines"]] == ["native"]
    return gateway


async def test_the_native_relay_carries_the_calls(gateway: GatewayProcess, web_client, phone: Baresip) -> None:
    """Not the Python bridge: the log names the relay for the call."""
    alice = await web_client()
    await alice.call(phone.uri, tone_hz=PAGE_HZ)
    await alice.next("answered")
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
    for _ in range(100):
        if "media carried natively" in gateway.log():
            break
        await asyncio.sleep(0.05)
    assert "media carried natively" in gateway.log()


async def test_a_sip_phone_that_vanishes_ends_the_call_by_the_relays_counters(
    start_gateway: Callable[..., GatewayProcess], phone: Baresip
) -> None:
    gateway = start_gateway(NATIVE + "[sip]\nmedia_timeout = 2.0\n")
    alice = WebClient(gateway.url)
    try:
        await alice.connect()
        await alice.sign_in("alice")
        await alice.call(phone.uri, tone_hz=PAGE_HZ)
        await alice.next("answered")
        await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
        phone.kill()
        ended = await alice.next("ended", timeout=10)
        assert (ended["cause"], ended["code"]) == ("network_error", 408)
    finally:
        await alice.close()


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
