"""Where users trip on the web phone, in a real Chromium: the keyboard while a
call rings, quality on hold, plain words for how calls end, what the number
field accepts, touch target sizes, colour contrast and a layout that stays put.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import expect

from .browser import DESKTOP, PHONE, OpenPhone
from .gatewayprocess import GatewayProcess
from .pagelook import SMALL_TARGETS, box, contrasts, overlap
from .webclient import WebClient

pytestmark = pytest.mark.timeout(90)

# The README's password hash, of "change-me".
CHANGE_ME = (
    "scrypt$16384$8$1$uc5RzIcGt87BhXjVATplJg==$INxjtXeYqojZBRKJYN3lp9W3EPl8qqioVaQeOHQXVqyEm"
    "tGIsuGes9W2bLOuYw95uTV2oWOq+ofC9FT9jFwQdQ=="
)


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


async def status_colour(page) -> tuple[str, str]:  # noqa: ANN001 - a Playwright page
    """#status's text colour and the muted text colour (of the signed-in address)."""
    return await page.evaluate(
        "[getComputedStyle(document.getElementById('status')).color,"
        " getComputedStyle(document.getElementById('my-uri')).color]"
    )


async def test_how_calls_end_reads_in_plain_words(
    gateway: GatewayProcess, browser: OpenPhone, web_client: Callable[..., Awaitable[WebClient]]
) -> None:
    """A normal end is neutral and has no code; a user not signed in and a missed call say so, the code only in a tooltip."""
    async with browser(gateway) as phone:
        page = phone.page
        status = page.locator("#status")
        await phone.sign_in("alice")
        await phone.dial("601")
        await phone.wait_state("answered")
        await phone.hang_up()
        await expect(status).to_have_text("Call ended")
        colour, muted = await status_colour(page)
        assert colour == muted, "a normal end is not styled as an error"

        await phone.dial("bob")
        await phone.wait_state("ended")
        await expect(status).to_have_text("bob is not signed in")
        await expect(status).to_have_attribute("title", "SIP 480 (unavailable)")

        carol = await web_client("carol")
        call = await carol.call("alice")
        await phone.wait_state("incoming")
        await carol.send({"type": "hangup", "call": call})
        await expect(status).to_have_text("Missed call from carol")
        assert await page.title() == "Missed call from carol · Web Phone"
        await page.keyboard.press("Shift")  # the user is back
        await expect(page).to_have_title("Web Phone")
        await expect(status).to_have_text("Missed call from carol")


async def test_a_name_that_does_not_exist_reads_differently_from_one_not_signed_in(
    start_gateway: Callable[..., GatewayProcess], browser: OpenPhone
) -> None:
    """With [users], calling an unknown name shows the dialplan's sentence, without the protocol's error code."""
    gateway = start_gateway(f'[users.alice]\npassword = "{CHANGE_ME}"\n')
    async with browser(gateway) as phone:
        page = phone.page
        await expect(page.locator("#password")).to_be_visible(timeout=10_000)
        await page.fill("#user", "alice")
        await page.fill("#password", "change-me")
        await page.click("#sign-in")
        await expect(page.locator("body")).to_have_attribute("data-signed-in", "true")
        await phone.dial("zed")
        await expect(page.locator("#error-text")).to_have_text("There is no user called zed")
        await expect(page.locator("#error")).to_have_attribute("title", "rejected")


async def test_typos_are_refused_on_the_page_and_pasted_numbers_cleaned(gateway: GatewayProcess, browser: OpenPhone) -> None:
    """A typo never becomes a call (nor a history entry); a pasted number with spaces and a label is cleaned to digits."""
    async with browser(gateway) as phone:
        page = phone.page
        await phone.sign_in("alice")
        await page.fill("#number", "12$%ab")
        await page.keyboard.press("Enter")
        await expect(page.locator("#error-text")).to_have_text('"12$%ab" is not a number, a user name or a sip: address.')
        await expect(page.locator("#status")).to_have_attribute("data-state", "idle")
        await expect(page.locator("#history li")).to_have_count(0)

        # The page cleans it; the gateway's dialplan (no trunks here) refuses the number itself.
        await page.fill("#number", "+44 20 7946 0000 (office)")
        await page.keyboard.press("Enter")
        await expect(page.locator("#error-text")).to_contain_text("No route for +442079460000")
        await expect(page.locator("#number")).to_have_value("+442079460000")
        await expect(page.locator("#status")).to_have_attribute("data-state", "idle")
        await expect(page.locator("#history li")).to_have_count(0)


async def test_touch_targets_phone_keypad_and_toggle_states(gateway: GatewayProcess, browser: OpenPhone) -> None:
    """On a phone-sized page every control is at least 44 x 44; the number field asks for the phone keypad
    (letters one tap away); Mute and Hold show their state by an icon as well as aria-pressed."""
    async with browser(gateway) as phone:
        page = phone.page
        await page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
        await phone.sign_in("alice")
        number = page.locator("#number")
        await expect(number).to_have_attribute("inputmode", "tel")
        await expect(number).to_have_attribute("autocomplete", "off")
        await page.evaluate("document.getElementById('number-letters').click()")
        await expect(number).to_have_attribute("inputmode", "text")
        await expect(page.locator("#number-letters")).to_have_attribute("aria-pressed", "true")
        await page.evaluate("document.getElementById('number-letters').click()")
        await expect(number).to_have_attribute("inputmode", "tel")

        await phone.dial("601")
        await phone.wait_state("answered")
        assert await page.evaluate(SMALL_TARGETS) == []
        for toggle in ("#mute", "#hold"):
            button = page.locator(toggle)
            await expect(button.locator(".toggle-check")).to_be_hidden()
            await button.click()
            await expect(button).to_have_attribute("aria-pressed", "true")
            await expect(button.locator(".toggle-check")).to_be_visible()
        await phone.hang_up()
        await phone.wait_state("ended")
        await page.fill("#number", "12$%ab")
        await page.keyboard.press("Enter")
        await expect(page.locator("#error")).to_be_visible()
        await expect(page.locator(".history-call")).to_have_count(1)
        assert await page.evaluate(SMALL_TARGETS) == []


async def test_text_contrast_is_at_least_wcag_aa_in_light_and_dark_mode(
    gateway: GatewayProcess, browser: OpenPhone, web_client: Callable[..., Awaitable[WebClient]]
) -> None:
    """4.5:1 for the text of each state's pills, banners and buttons, computed from the page's styles."""
    figures: dict[str, float] = {}
    async with browser(gateway) as phone:
        page = phone.page
        await expect(page.locator("#sign-in")).to_be_enabled(timeout=10_000)
        figures |= await contrasts(page, "sign-in", ["#sign-in", "#conn-text"])
        await phone.sign_in("alice")
        figures |= await contrasts(page, "idle", ["#status", "#conn-text", ".hints"])

        bob = await web_client("bob")
        await phone.dial("bob")
        await phone.wait_state("ringing")
        figures |= await contrasts(page, "ringing", ["#status"])
        await phone.hang_up()
        await bob.next("incoming")

        await phone.dial("601")
        await phone.wait_state("answered")
        await expect(page.locator("#quality-summary")).to_have_text("Good", timeout=10_000)
        figures |= await contrasts(page, "answered", ["#status", "#quality-summary", "#timer"])
        carol = await web_client("carol")
        call = await carol.call("alice")
        await expect(page.locator("#incoming")).to_be_visible()
        figures |= await contrasts(page, "waiting", ["#answer", "#decline", "#incoming-title", "#incoming-from", "#incoming-note"])
        await carol.send({"type": "hangup", "call": call})
        await expect(page.locator("#incoming")).to_be_hidden()
        await carol.next("ended")
        await carol.hang_up_media()
        await page.locator("#hold").click()
        await expect(page.locator("#status")).to_have_attribute("data-hold", "local")
        figures |= await contrasts(page, "held", ["#status", "#quality-warning"])
        await phone.hang_up()
        await expect(page.locator("#status")).to_have_text("Call ended")
        figures |= await contrasts(page, "ended", ["#status"])

        await phone.dial(gateway.uri("No-One"))  # not a user name: 404
        await expect(page.locator("#status")).to_have_attribute("data-tone", "error")
        figures |= await contrasts(page, "failed", ["#status", ".history-item:first-child .history-who"])
        call = await carol.call("alice")
        await phone.wait_state("incoming")
        await carol.send({"type": "hangup", "call": call})
        await expect(page.locator("#status")).to_have_attribute("data-tone", "missed")
        figures |= await contrasts(page, "missed", ["#status", ".history-item:first-child .history-meta"])
        await page.fill("#number", "12$%ab")
        await page.keyboard.press("Enter")
        figures |= await contrasts(page, "error", ["#error-text"])

    print("\n".join(f"{value:5.2f}  {key}" for key, value in sorted(figures.items())))
    low = {key: value for key, value in figures.items() if value < 4.5}
    assert not low, f"below 4.5:1: {low}"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
async def test_the_layout_stays_put_and_a_call_waiting_leaves_the_call_in_view(
    gateway: GatewayProcess,
    browser: OpenPhone,
    web_client: Callable[..., Awaitable[WebClient]],
    viewport: tuple[int, int],
) -> None:
    """The pad does not move when a call starts or an error appears; a second call ringing in covers
    neither the call in progress nor its controls, and once answered (the first held) the two calls'
    list leaves the pad in place."""
    async with browser(gateway) as phone:
        page = phone.page
        await page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
        await phone.sign_in("alice")
        idle = await box(page, "#keypad")

        await page.fill("#number", "12$%ab")
        await page.keyboard.press("Enter")
        await expect(page.locator("#error")).to_be_visible()
        assert await box(page, "#keypad") == idle, "an error moved the pad"
        await page.click("#error-dismiss")

        await phone.dial("601")
        await phone.wait_state("answered")
        await expect(page.locator("#timer")).to_be_visible()
        assert await box(page, "#keypad") == idle, "the call moved the pad"

        carol = await web_client("carol")
        await carol.call("alice")
        await expect(page.locator("#incoming")).to_be_visible()
        banner = await box(page, "#incoming")
        for part in ("#status", "#peer", "#timer", "#hangup", "#mute", "#hold"):
            assert not overlap(banner, await box(page, part)), f"the incoming call covers {part}"
        assert await box(page, "#keypad") == idle, "the incoming call moved the pad"

        await page.click("#answer")  # answer and hold: both calls listed where the one call's details were
        await expect(page.locator("#lines .line")).to_have_count(2)
        await expect(page.locator("#swap")).to_be_enabled(timeout=10_000)
        await page.evaluate("scrollTo(0, 0)")  # where the click had scrolled the page to
        assert await box(page, "#keypad") == idle, "two calls moved the pad"
        assert await page.evaluate(SMALL_TARGETS) == []
