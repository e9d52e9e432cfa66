"""The page outlives a gateway restart: it says so, reconnects, signs in again and calls."""

from __future__ import annotations

from collections.abc import Callable
from playwright.async_api import expect

from .browser import OpenPhone
from .gatewayprocess import GatewayProcess


async def test_page_reconnects_after_the_gateway_restarts(
    start_gateway: Callable[..., GatewayProcess], browser: OpenPhone
) -> None:
    first = start_gateway()
    async with browser(first) as phone:
        await phone.sign_in("alice")
        assert first.stop() == 0
        await expect(phone.page.locator("#conn-state")).to_have_attribute("data-state", "reconnecting", timeout=10_000)
        second = start_gateway(http_port=first.http_port)
        await expect(phone.page.locator("#conn-state")).to_have_attribute("data-state", "connected", timeout=30_000)
        await expect(phone.page.locator("body")).to_have_attribute("data-signed-in", "true", timeout=10_000)
        await phone.dial("601")
        await phone.wait_state("answered")
        await phone.wait_tone(440)
        assert second.process.poll() is None
