"""Call waiting in a real Chromium: a second call rings softly during the first, "Answer and hold"
holds the first (a re-INVITE with a=sendonly towards its SIP side), Swap changes which one talks,
each call is heard on its own, and a third caller gets busy.

The page talks to anna (baresip, a SIP phone playing A_HZ) and carol (an aiortc browser stand-in
playing B_HZ, calling through the gateway); the page's microphone plays MIC_HZ. Audio is checked
by FFT on every side that can hear it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import expect

from .audio import has_tone, read_wav, tone, write_wav
from .browser import DESKTOP, MIC_HZ, PHONE, BrowserPhone, OpenPhone
from .gatewayprocess import GatewayProcess
from .pagelook import SMALL_TARGETS, box, contrasts
from .peers import sipp
from .peers.baresip import Baresip
from .peers.net import wait_for_async
from .peers.rtptap import RtpTap
from .webclient import RATE, WebClient

pytestmark = pytest.mark.timeout(150)

A_HZ = 650
"""What anna's SIP phone plays."""
B_HZ = 1450
"""What carol's browser stand-in plays."""
ANNA = r"anna@[\d.]+"
"""How the page names anna: a SIP caller without a display name is shown by address."""

# Records what the page's own tones play: each oscillator's frequency and each burst's loudness.
TONE_RECORDER = """(() => {
  window.__tones = [];
  const create = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () {
    const osc = create.call(this);
    const start = osc.start.bind(osc);
    osc.start = (at) => { window.__tones.push({ hz: osc.frequency.value }); start(at); };
    return osc;
  };
  const ramp = AudioParam.prototype.linearRampToValueAtTime;
  AudioParam.prototype.linearRampToValueAtTime = function (value, at) {
    if (value > 0) window.__tones.push({ gain: value });
    return ramp.call(this, value, at);
  };
})();"""


@asynccontextmanager
async def sip_phone(tmp_path: Path, user: str, freq: float) -> AsyncIterator[Baresip]:
    """A baresip phone called `user` that plays pulsed `freq` into its calls."""
    wav = tmp_path / f"{user}.wav"
    write_wav(wav, tone(freq, 60, 8000, pulsed=True), 8000)
    with Baresip(tmp_path, wav, user=user) as phone:
        yield phone


async def watch_and_sign_in(phone: BrowserPhone) -> list[dict]:
    """Record the page's tones and every message the gateway sends it, then sign in as alice."""
    frames: list[dict] = []
    page = phone.page
    await page.add_init_script(TONE_RECORDER)
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(json.loads(payload))))
    await page.reload()
    await phone.sign_in("alice")
    return frames


async def answer_anna(phone: BrowserPhone, anna: Baresip, gateway: GatewayProcess) -> None:
    """anna calls the page, the page answers: both hear each other."""
    anna.dial(gateway.uri("alice"))
    await phone.wait_state("incoming")
    await phone.answer()
    await phone.wait_state("answered")
    await asyncio.to_thread(anna.wait_event, "CALL_ESTABLISHED")
    await phone.wait_tone(A_HZ)


async def wait_not_heard(client: WebClient, freq: float, timeout: float = 10) -> None:
    """Until a whole second has passed in which the stand-in heard no `freq` (or nothing at all)."""
    start = deadline = time.monotonic()
    deadline += timeout
    while True:
        now = time.monotonic()
        if now - start >= 1.0 and not has_tone(client.heard_since(now - 1.0), RATE, freq):
            return
        assert now < deadline, f"carol still hears {freq} Hz"
        await asyncio.sleep(0.25)


def heard_at_the_end(phone: Baresip, freq: float, seconds: float = 2.0) -> bool:
    """Whether one of the last seconds of the SIP phone's finished call has `freq`."""
    samples, rate = read_wav(phone.recording())
    tail = samples[-int(seconds * rate):]
    return any(has_tone(window, rate, freq) for window in np.array_split(tail, int(seconds)))


async def screenshots(phone: BrowserPhone, name: str, pad: dict[tuple[int, int], dict[str, float]]) -> None:
    """Desktop and phone screenshots of a state (the phone in dark mode too), each checked for a pad
    where it was in `pad` and no control under 44 x 44; back to the desktop size after."""
    page = phone.page
    for viewport in (DESKTOP, PHONE):
        await phone.screenshot(name, viewport)
        assert await box(page, "#keypad") == pad[viewport], f"{name} moved the pad at {viewport}"
        assert await page.evaluate(SMALL_TARGETS) == []
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    await page.emulate_media(color_scheme="dark")
    await phone.screenshot(f"{name}-dark")
    await page.emulate_media(color_scheme="light")
    await page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})


def holds(frames: list[dict], call: str) -> list[bool]:
    """The `local` flag of each `hold` message the gateway sent the page for `call`."""
    return [frame["local"] for frame in frames if frame.get("type") == "hold" and frame["call"] == call]


async def test_answer_and_hold_swap_and_hang_up_each(
    gateway: GatewayProcess, browser: OpenPhone, web_client: Callable[..., Awaitable[WebClient]], tmp_path: Path
) -> None:
    """Answer and hold, a busy third caller, Swap, and the held call staying held when the other ends."""
    async with sip_phone(tmp_path, "anna", A_HZ) as anna, browser(gateway) as phone:
        page = phone.page
        frames = await watch_and_sign_in(phone)
        await answer_anna(phone, anna, gateway)
        anna_call = next(frame["call"] for frame in frames if frame["type"] == "incoming")
        pad = {}
        for viewport in (PHONE, DESKTOP):
            await page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
            pad[viewport] = await box(page, "#keypad")

        # carol calls while the page talks to anna: a banner of its own, a soft tone, anna still in view.
        await page.evaluate("window.__tones = []")
        carol = await web_client("carol")
        await carol.call("alice", tone_hz=B_HZ)
        banner = page.locator("#incoming")
        await expect(banner).to_be_visible()
        await expect(banner).to_have_attribute("data-waiting", "hold")
        await expect(page.locator("#incoming-title")).to_have_text("Call waiting")
        await expect(page.locator("#incoming-name")).to_have_text("carol")
        await expect(page.locator("#answer")).to_have_text("Answer and hold")
        await expect(page.locator("#incoming-note")).to_have_text(re.compile(rf"^Answering puts {ANNA} on hold\.$"))
        await expect(page.locator("#status")).to_have_text("Connected")
        await expect(page.locator("#peer")).to_have_text(re.compile(rf"^{ANNA}$"))
        await expect(page).to_have_title("Call waiting: carol · Web Phone")
        await page.wait_for_function("window.__tones.some((t) => t.hz)")
        played = await page.evaluate("window.__tones")
        assert {t["hz"] for t in played if "hz" in t} == {440}, f"not the call-waiting tone: {played}"
        assert max(t["gain"] for t in played if "gain" in t) <= 0.05, f"the waiting tone is not soft: {played}"
        await phone.wait_tone(A_HZ)  # the waiting call does not interrupt anna
        await screenshots(phone, "call-waiting", pad)
        figures = await contrasts(page, "waiting", ["#incoming-title", "#incoming-note", "#answer", "#decline"])

        # Enter in the number field answers and holds: anna gets a=sendonly, carol is heard both ways.
        await expect(page.locator("#number")).to_be_focused()
        await page.keyboard.press("Enter")
        rows = page.locator("#lines .line")
        await expect(rows).to_have_count(2)
        anna_row, carol_row = rows.filter(has_text="anna"), rows.filter(has_text="carol")
        await expect(anna_row.locator(".line-state")).to_have_text("On hold")
        await expect(carol_row.locator(".line-state")).to_have_text("Active", timeout=10_000)
        await expect(carol_row).to_have_attribute("data-shown", "true")
        await expect(banner).to_be_hidden()
        await carol.next("answered")
        await wait_for_async(lambda: any("a=sendonly" in invite for invite in anna.received("INVITE")), 10)
        await wait_for_async(lambda: holds(frames, anna_call) == [True], 10)
        await phone.wait_tone(B_HZ)
        await carol.wait_tone(MIC_HZ)
        await expect(page.locator("#swap")).to_be_enabled()
        await expect(page.locator("#hold")).to_be_hidden()

        # A third caller while two calls exist: busy, and the page shows nothing of it.
        third = await asyncio.to_thread(sipp.uac(tmp_path / "third", gateway.uri("alice")).run, 30)
        assert third.final_status == 486
        await expect(banner).to_be_hidden()
        assert len([frame for frame in frames if frame["type"] == "incoming"]) == 2, "the third call rang the page"

        await screenshots(phone, "two-calls", pad)
        figures |= await contrasts(
            page, "two calls",
            [".line[data-held='false'] .line-state", ".line[data-held='true'] .line-state", ".line-who", ".line-time", "#swap"],
        )

        # Swap: anna talks again, carol is held (her side gets the hold) and hears nothing of the page.
        await page.locator("#swap").click()
        await expect(anna_row.locator(".line-state")).to_have_text("Active", timeout=10_000)
        await expect(carol_row.locator(".line-state")).to_have_text("On hold")
        assert (await carol.next("hold"))["remote"] is True
        await wait_for_async(lambda: holds(frames, anna_call) == [True, False], 10)
        await phone.wait_tone(A_HZ)
        await wait_not_heard(carol, MIC_HZ)
        # What anna hears now is read off the wire: baresip records nothing after the hold's re-INVITE.
        swapped = time.monotonic()
        with RtpTap(anna.audio_port()) as to_anna:
            await wait_for_async(lambda: len(to_anna.pcm(swapped)) >= 8000, 10)
            assert has_tone(to_anna.pcm(swapped), 8000, MIC_HZ), "anna does not hear the page after Swap"

        # anna's call ends from its row: carol stays on hold until the user resumes her.
        await page.get_by_role("button", name=re.compile(rf"^Hang up {ANNA} \(active\)$")).click()
        await asyncio.to_thread(anna.wait_event, "CALL_CLOSED")
        await expect(page.locator("#lines")).to_be_hidden()
        await expect(page.locator("#status")).to_have_text("On hold")
        await expect(page.locator("#peer")).to_have_text("carol")
        await expect(page.locator("#line-note")).to_have_text(re.compile(rf"^Call with {ANNA} ended; carol is on hold\.$"))
        await expect(page.locator("#hold")).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#hold")).to_be_focused()
        await wait_not_heard(carol, MIC_HZ)
        await screenshots(phone, "held-after-other-ended", pad)
        figures |= await contrasts(page, "held alone", ["#status", "#line-note", "#peer"])

        await page.keyboard.press("Enter")  # on the focused Hold toggle: resume
        await expect(page.locator("#status")).to_have_text("Connected")
        await expect(page.locator("#line-note")).to_be_hidden()
        assert (await carol.next("hold"))["remote"] is False
        await phone.wait_tone(B_HZ)
        await carol.wait_tone(MIC_HZ)
        await phone.hang_up()
        assert (await carol.next("ended"))["cause"] == "normal"
        await phone.wait_state("ended")
        problems = [m for m in phone.console if m.startswith(("error", "pageerror"))]
        assert not problems, problems

    print("\n".join(f"{value:5.2f}  {key}" for key, value in sorted(figures.items())))
    low = {key: value for key, value in figures.items() if value < 4.5}
    assert not low, f"below 4.5:1: {low}"


async def test_declining_a_waiting_call_leaves_the_first_untouched(
    gateway: GatewayProcess, browser: OpenPhone, tmp_path: Path
) -> None:
    """Escape declines the waiting call (603 to its caller); anna's call goes on, not held, audio both ways."""
    async with sip_phone(tmp_path, "anna", A_HZ) as anna, browser(gateway) as phone:
        page = phone.page
        frames = await watch_and_sign_in(phone)
        await answer_anna(phone, anna, gateway)
        with sipp.uac(tmp_path / "waiting", gateway.uri("alice"), answer_timeout_s=20) as caller:
            await expect(page.locator("#incoming")).to_have_attribute("data-waiting", "hold")
            await page.keyboard.press("Escape")
            result = await asyncio.to_thread(caller.result, 30)
        assert result.final_status == 603
        await expect(page.locator("#incoming")).to_be_hidden()
        await expect(page.locator("#status")).to_have_text("Connected")
        await expect(page.locator("#peer")).to_have_text(re.compile(rf"^{ANNA}$"))
        await expect(page.locator("#lines")).to_be_hidden()
        await phone.wait_tone(A_HZ)
        assert not [frame for frame in frames if frame["type"] == "hold"]
        await page.locator("#hangup").click()
        await asyncio.to_thread(anna.wait_event, "CALL_CLOSED")
        assert anna.received("INVITE") == [], "anna's call was renegotiated"
        assert heard_at_the_end(anna, MIC_HZ), "anna stopped hearing the page"
        await phone.wait_state("ended")
