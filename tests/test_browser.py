"""End to end with a real Chromium on the real page: what a user of the web phone gets.

Each test drives web/ through Chromium against a gateway process, with a
pulsed tone file as the microphone, and checks what the page shows and, by
FFT, what it hears.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import expect

from .audio import dominant_frequency, has_tone, read_wav, tone, write_wav
from .browser import DESKTOP, MIC_HZ, PHONE, BrowserPhone, OpenPhone
from .gatewayprocess import GatewayProcess
from .peers.baresip import Baresip
from .peers.coturn import Coturn
from .webclient import WebClient

pytestmark = pytest.mark.timeout(60)








async def tone_call(phone: BrowserPhone) -> None:
    """Call 601 from the page and hear its 440 Hz: the SIP->browser audio path works."""
    await phone.dial("601")
    await phone.wait_state("answered")
    await phone.wait_tone(440)


async def test_tone_extension_is_heard_and_escape_hangs_up(gateway: GatewayProcess, browser: OpenPhone) -> None:
    """601 through the page: SIP->browser audio plays in #remote-audio, Escape ends the call."""
    async with browser(gateway) as phone:
        await phone.sign_in("alice")
        await tone_call(phone)
        await phone.page.keyboard.press("Escape")
        await phone.wait_state("ended")


async def test_echo_extension_returns_the_pages_microphone(gateway: GatewayProcess, browser: OpenPhone) -> None:
    """600 echoes what the fake mic plays: proves browser->SIP and SIP->browser through the page."""
    async with browser(gateway) as phone:
        await phone.sign_in("alice")
        await phone.dial("600")
        await phone.wait_state("answered")
        await phone.wait_tone(MIC_HZ)
        await phone.hang_up()
        await phone.wait_state("ended")


async def test_incoming_call_answered_both_ways_then_one_declined(
    gateway: GatewayProcess, browser: OpenPhone, web_client: Callable[..., Awaitable[WebClient]]
) -> None:
    """A caller rings the page: the banner names them, Answer connects audio both ways, Decline sends 603."""
    async with browser(gateway) as phone:
        await phone.sign_in("alice")
        carol = await web_client("carol")

        await carol.call("alice", tone_hz=700)
        await phone.wait_state("incoming")
        await expect(phone.page.locator("#incoming")).to_be_visible()
        await expect(phone.page.locator("#incoming-name")).to_contain_text("carol")
        await phone.answer()
        await phone.wait_state("answered")
        await carol.next("answered")
        await phone.wait_tone(700)
        await carol.wait_tone(MIC_HZ)
        await phone.hang_up()
        ended = await carol.next("ended")
        assert (ended["cause"], ended["code"]) == ("normal", 200)
        await carol.hang_up_media()

        await carol.call("alice")
        await phone.wait_state("incoming")
        await phone.decline()
        await expect(phone.page.locator("#incoming")).to_be_hidden()
        await phone.wait_state("ended")
        ended = await carol.next("ended")
        assert (ended["cause"], ended["code"]) == ("declined", 603)


async def test_default_tls_mode_serves_a_working_phone(
    start_gateway: Callable[..., GatewayProcess], browser: OpenPhone
) -> None:
    """With TLS (the default) the page loads over https with its self-signed certificate and calls work."""
    gateway = start_gateway(tls=True)
    assert gateway.url.startswith("https://localhost:")
    async with browser(gateway) as phone:
        assert await phone.page.evaluate("window.isSecureContext && location.protocol === 'https:'")
        await phone.sign_in("alice")
        await tone_call(phone)
        await phone.hang_up()
        await phone.wait_state("ended")


async def test_page_forced_to_relay_calls_through_coturn(
    start_gateway: Callable[..., GatewayProcess], browser: OpenPhone, tmp_path: Path
) -> None:
    """TURN only: the page gets short-lived credentials at sign-in and may use relay candidates alone."""
    with Coturn(tmp_path, "turn-secret") as turn:
        gateway = start_gateway(
            f'[webrtc]\nturn_urls = ["{turn.url}"]\nturn_secret = "turn-secret"\nice_transport_policy = "relay"\n'
        )
        async with browser(gateway) as phone:
            await phone.sign_in("alice")
            await tone_call(phone)
            offer = await phone.page.evaluate("window.phone.pc.localDescription.sdp")
            assert "typ relay" in offer and "typ host" not in offer


async def test_keyboard_only_call(gateway: GatewayProcess, browser: OpenPhone) -> None:
    """Sign in, dial, call and hang up with keys alone: focus lands where the next key is expected."""
    async with browser(gateway) as phone:
        keyboard = phone.page.keyboard
        await expect(phone.page.locator("#sign-in")).to_be_enabled(timeout=10_000)
        await expect(phone.page.locator("#user")).to_be_focused()
        await keyboard.type("alice")
        await keyboard.press("Enter")
        await expect(phone.page.locator("#number")).to_be_focused()
        await keyboard.type("601")
        await keyboard.press("Enter")
        await phone.wait_state("answered")
        await expect(phone.page.locator("#timer")).to_be_visible()
        await keyboard.press("Escape")
        await phone.wait_state("ended")


async def test_screenshots_of_each_state_at_desktop_and_phone_sizes(
    gateway: GatewayProcess, browser: OpenPhone, web_client: Callable[..., Awaitable[WebClient]]
) -> None:
    """Artefacts for review in CI, and no sideways scrolling on a phone-sized screen in any state."""

    async def shoot(phone: BrowserPhone, name: str) -> None:
        for viewport in (DESKTOP, PHONE):
            await phone.screenshot(name, viewport)
            assert await phone.page.evaluate("document.documentElement.scrollWidth <= innerWidth"), (
                f"{name} scrolls sideways at {viewport}"
            )

    async with browser(gateway) as phone:
        await shoot(phone, "signin")
        await phone.sign_in("alice")
        bob = await web_client("bob")
        await phone.wait_state("idle")
        await shoot(phone, "idle")

        await phone.dial("bob")
        await phone.wait_state("ringing")
        await bob.next("incoming")
        await shoot(phone, "ringing")
        await phone.hang_up()
        await bob.next("ended")

        await bob.call("alice")
        await phone.wait_state("incoming")
        await shoot(phone, "incoming")
        await phone.decline()

        await bob.next("ended")
        await bob.hang_up_media()

        await tone_call(phone)
        await shoot(phone, "in-call")
        call = await bob.call("alice")
        await expect(phone.page.locator("#incoming")).to_be_visible()
        await shoot(phone, "call-waiting")
        await bob.send({"type": "hangup", "call": call})
        await expect(phone.page.locator("#incoming")).to_be_hidden()
        await bob.next("ended")
        await bob.hang_up_media()
        await phone.page.click("#hold")
        await expect(phone.page.locator("#quality-summary")).to_have_text("On hold")
        await shoot(phone, "on-hold")
        await phone.hang_up()
        await phone.wait_state("ended")
        await shoot(phone, "ended")

        call = await bob.call("alice")
        await phone.wait_state("incoming")
        await bob.send({"type": "hangup", "call": call})
        await expect(phone.page.locator("#status")).to_have_text("Missed call from bob")
        await shoot(phone, "missed")
        await phone.page.fill("#number", "12$%ab")
        await phone.page.keyboard.press("Enter")
        await expect(phone.page.locator("#error")).to_be_visible()
        await shoot(phone, "error")


async def test_page_calls_a_sip_phone_with_audio_both_ways_and_dtmf(
    gateway: GatewayProcess, browser: OpenPhone, tmp_path: Path
) -> None:
    """The real page and a real SIP phone (baresip): each hears the other's tone, and pad digits arrive as DTMF."""
    phone_hz = 550
    wav = tmp_path / "phone.wav"
    write_wav(wav, tone(phone_hz, 60, 8000), 8000)
    with Baresip(tmp_path, wav) as sip_phone:
        async with browser(gateway) as page_phone:
            await page_phone.sign_in("alice")
            await page_phone.dial(sip_phone.uri)
            await page_phone.wait_state("answered")
            await page_phone.wait_tone(phone_hz)
            for digit in ("1", "#"):
                await page_phone.page.click(f'.key[data-key="{digit}"]')
            digits = [(await asyncio.to_thread(sip_phone.wait_event, "CALL_DTMF_START"))["param"] for _ in range(2)]
            assert digits == ["1", "#"]
            await page_phone.hang_up()
            await page_phone.wait_state("ended")
        await asyncio.to_thread(sip_phone.wait_event, "CALL_CLOSED")
        samples, rate = read_wav(sip_phone.recording())
        assert has_tone(samples[rate:], rate, MIC_HZ), f"the SIP phone heard {dominant_frequency(samples[rate:], rate):.0f} Hz"
