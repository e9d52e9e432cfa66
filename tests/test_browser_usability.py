"""Where users trip on the web phone, in a real Chromium: the keyboard while a
call rings, quality on hold, plain words for how calls end, what the number
field accepts, touch target sizes, colour contrast and a layout that stays put.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import expect

from .browser import OpenPhone
from .gatewayprocess import GatewayProcess
from .webclient import WebClient

pytestmark = pytest.mark.timeout(90)


async def test_enter_answers_and_escape_declines_a_ringing_call(
    gateway: GatewayProcess, browser: OpenPhone, web_client: Callable[..., Awaitable[WebClient]]
) -> None:
    """With the number field focused, Enter answers the call ringing in and Escape declines the next one."""
    async with browser(gateway) as phone:
        page = phone.page
        await phone.sign_in("alice")
        await expect(page.locator("#number")).to_be_focused()
        carol = await web_client("carol")

        await carol.call("alice")
        await phone.wait_state("incoming")
        await expect(page.locator("#number")).to_be_focused()
        await page.keyboard.press("Enter")
        await phone.wait_state("answered")
        await carol.next("answered")
        await expect(page.locator("#error")).to_be_hidden()
        await page.keyboard.press("Escape")
        await phone.wait_state("ended")
        await carol.next("ended")
        await carol.hang_up_media()

        await page.locator("#number").focus()
        await carol.call("alice")
        await phone.wait_state("incoming")
        await page.keyboard.press("Escape")
        ended = await carol.next("ended")
        assert ended["cause"] == "declined"
        await expect(page.locator("#incoming")).to_be_hidden()
