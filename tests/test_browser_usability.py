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


# getStats() as a bad network reports it: 50 ms jitter, counting its calls in window.__statsCalls.
JITTERY_STATS = """() => {
  window.__statsCalls = 0;
  let received = 0;
  RTCPeerConnection.prototype.getStats = async function () {
    window.__statsCalls += 1;
    received += 50;
    return new Map([
      ["T", { id: "T", type: "transport", selectedCandidatePairId: "P" }],
      ["P", { id: "P", type: "candidate-pair", currentRoundTripTime: 0.02 }],
      ["I", { id: "I", type: "inbound-rtp", kind: "audio", jitter: 0.05, packetsLost: 0,
              packetsReceived: received, codecId: "C" }],
      ["C", { id: "C", type: "codec", mimeType: "audio/opus", clockRate: 48000, channels: 2 }],
    ]);
  };
}"""


async def test_on_hold_the_quality_panel_says_so_instead_of_warning(gateway: GatewayProcess, browser: OpenPhone) -> None:
    """No audio flows on hold, so stale jitter is no "Poor connection"; after resuming the panel measures again."""
    async with browser(gateway) as phone:
        page = phone.page
        await phone.sign_in("alice")
        await phone.dial("601")
        await phone.wait_state("answered")
        await page.locator("#hold").click()
        await expect(page.locator("#status")).to_have_attribute("data-hold", "local")
        await page.evaluate(JITTERY_STATS)
        await page.wait_for_function("window.__statsCalls >= 3")
        await expect(page.locator("#quality-summary")).to_have_text("On hold")
        await expect(page.locator("#quality-warning")).to_have_text(
            "On hold: no audio flows, so there is nothing to measure."
        )
        await expect(page.locator("#quality-alert")).to_be_hidden()

        await page.locator("#hold").click()
        await expect(page.locator("#status")).to_have_attribute("data-hold", "")
        await expect(page.locator("#quality-warning")).to_contain_text("Poor connection: uneven delivery")
        await expect(page.locator("#quality-summary")).not_to_have_text("On hold")
