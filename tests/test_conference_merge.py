"""Merge in a real Chromium: the two calls of call waiting become one three-way call, the page mixing
the audio (web/js/merge.js), and when one party hangs up the other two talk on as a plain call.

carol (an aiortc browser stand-in, a direct call: browser to browser) calls first and plays B_HZ;
anna (baresip, a SIP phone behind the gateway's media engine) calls second and plays A_HZ, so the
two calls take different media paths; the page's microphone plays MIC_HZ. Each side's audio is
checked by FFT for every tone it should hear and for those it must not (its own above all). anna is
the one never held, because baresip stops recording what it hears after a hold (its decode dump
ends at the re-INVITE); carol is heard live. The page mixes, so which engine carries each call (one
in the gateway here, or workers) makes no difference to the gateway.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import expect

from .audio import read_wav
from .browser import DESKTOP, MIC_HZ, PHONE, BrowserPhone, OpenPhone
from .gatewayprocess import GatewayProcess
from .pagelook import SMALL_TARGETS
from .peers.net import wait_for_async
from .test_call_waiting import holds, sip_phone, watch_and_sign_in
from .webclient import RATE, WebClient

pytestmark = pytest.mark.timeout(120)

A_HZ = 650
"""What anna's SIP phone plays."""
B_HZ = 1450
"""What carol's browser stand-in plays."""
BAND_HZ = 25
"""A pulsed tone's energy lies within this of its frequency."""
PRESENT, ABSENT = 0.01, 0.001
"""A tone is heard when its band holds this share of a window's energy (-20 dB; Chromium's processing
turns the page's microphone down to about -14 dB beside a far end), and not heard below -30 dB."""

# Whether the call shown sends a microphone track, not one of merge.js's mixes (a WebAudio node's).
SENDS_MICROPHONE = """() => window.phone.pc.getSenders().some((s) => s.track?.kind === "audio" && s.track.label !== "MediaStreamAudioDestinationNode")"""


def shares(samples: np.ndarray, rate: int, freqs: tuple[float, ...]) -> list[float]:
    """For each of `freqs`, the share of the window's energy (above 20 Hz) within BAND_HZ of it."""
    signal = np.asarray(samples, dtype=np.float64)
    power = np.abs(np.fft.rfft((signal - signal.mean()) * np.hanning(len(signal)))) ** 2
    bins = np.fft.rfftfreq(len(signal), 1.0 / rate)
    power[bins < 20] = 0.0
    total = power.sum() or 1.0
    return [float(power[np.abs(bins - freq) <= BAND_HZ].sum() / total) for freq in freqs]


def hears(samples: np.ndarray, rate: int, present: tuple[float, ...], absent: tuple[float, ...] = ()) -> bool:
    """Each of `present` clearly in the window, none of `absent`."""
    return all(share >= PRESENT for share in shares(samples, rate, present)) and all(
        share < ABSENT for share in shares(samples, rate, absent)
    )


def windows(recording: Path) -> tuple[list[np.ndarray], int]:
    """A SIP phone's finished recording in one-second windows, oldest first."""
    samples, rate = read_wav(recording)
    return [samples[i : i + rate] for i in range(0, len(samples) - rate + 1, rate)], rate


async def page_hears(phone: BrowserPhone, present: tuple[float, ...], absent: tuple[float, ...] = (), times: int = 1) -> None:
    """Until the page has played `present` and none of `absent` in `times` one-second windows in a row."""
    heard: list[list[float]] = []
    run = 0
    for _ in range(12 + times):
        samples, rate = await phone.heard_samples(1.0)
        run = run + 1 if hears(samples, rate, present, absent) else 0
        if run == times:
            return
        heard.append([round(share, 3) for share in shares(samples, rate, (*present, *absent))])
    raise AssertionError(f"the page did not hear {present} without {absent}; shares per window: {heard}")


async def carol_hears(carol: WebClient, present: tuple[float, ...], absent: tuple[float, ...] = ()) -> None:
    """Until the last whole second carol heard has `present` and none of `absent`."""
    deadline = time.monotonic() + 10
    while not hears(heard := carol.last_heard(1.0), RATE, present, absent) or len(heard) < RATE:
        shares_now = [round(share, 3) for share in shares(heard, RATE, (*present, *absent))]
        assert time.monotonic() < deadline, f"carol did not hear {present} without {absent}; shares: {shares_now}"
        await asyncio.sleep(0.25)


async def answer(phone: BrowserPhone, button: str, freq: float) -> None:
    """Answer the call ringing in with `button`; the page then hears `freq`."""
    await expect(phone.page.locator("#incoming")).to_be_visible()
    await expect(phone.page.locator("#answer")).to_have_text(button)
    await phone.answer()
    await phone.page.wait_for_function("document.getElementById('remote-audio').srcObject")
    await page_hears(phone, (freq,))


async def test_merge_two_calls_then_one_hangs_up(
    gateway: GatewayProcess, browser: OpenPhone, web_client: Callable[..., Awaitable[WebClient]], tmp_path: Path
) -> None:
    """Merge (keyboard), all three hear each other, Split and Merge again, Mute mutes the page in both, anna leaves,
    carol and the page talk on."""
    async with sip_phone(tmp_path, "anna", A_HZ) as anna, browser(gateway) as phone:
        page = phone.page
        frames = await watch_and_sign_in(phone)
        carol = await web_client("carol")
        await carol.call("alice", tone_hz=B_HZ)
        await answer(phone, "Answer", B_HZ)
        await carol.next("answered")
        anna.dial(gateway.uri("alice"))
        await answer(phone, "Answer and hold", A_HZ)
        await asyncio.to_thread(anna.wait_event, "CALL_ESTABLISHED")
        carol_call, anna_call = (frame["call"] for frame in frames if frame["type"] == "incoming")
        assert (await carol.next("hold"))["remote"] is True
        rows = page.locator("#lines .line")
        anna_row, carol_row = rows.filter(has_text="anna"), rows.filter(has_text="carol")
        await expect(carol_row.locator(".line-state")).to_have_text("On hold")
        await page_hears(phone, (A_HZ,), (B_HZ,))

        # Merge from the keyboard: carol is resumed, both rows say so, everyone hears the two others.
        merge = page.locator("#merge")
        await expect(merge).to_be_enabled()
        await expect(merge).to_have_attribute("aria-pressed", "false")
        await merge.focus()
        await page.keyboard.press("Enter")
        await expect(merge).to_have_attribute("aria-pressed", "true")
        await expect(carol_row.locator(".line-state")).to_have_text("Merged", timeout=10_000)
        await expect(anna_row.locator(".line-state")).to_have_text("Merged")
        await expect(page.locator("#status")).to_have_text(re.compile(r"^anna@[\d.]+: Merged, carol: Merged$"))
        await expect(page.locator("#swap")).to_be_disabled()
        # Merged, the big button ends the three-way call (a row's button one party); no attended transfer.
        await expect(page.locator("#hangup")).to_have_accessible_name(re.compile(r"^Hang up all \(carol and anna@[\d.]+\)$"))
        await expect(page.locator("#transfer-complete")).to_be_hidden()
        assert (await carol.next("hold"))["remote"] is False
        await wait_for_async(lambda: holds(frames, carol_call) == [True, False], 10)
        assert holds(frames, anna_call) == [], "merging touched the call that was talking"
        await page_hears(phone, (A_HZ, B_HZ), times=2)
        await carol_hears(carol, (A_HZ, MIC_HZ), (B_HZ,))
        assert not await page.evaluate(SENDS_MICROPHONE), "the call shown still sends the bare microphone"
        for viewport in (DESKTOP, PHONE):
            await page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
            await page.evaluate("window.scrollTo(0, 0)")
            await phone.screenshot("merged", viewport)
            assert await page.evaluate(SMALL_TARGETS) == []
            assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        await page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})

        # Merge again splits: anna (shown) talks on, carol is held again; then merged once more.
        await merge.press("Space")
        await expect(merge).to_have_attribute("aria-pressed", "false")
        await expect(carol_row.locator(".line-state")).to_have_text("On hold", timeout=10_000)
        await expect(anna_row.locator(".line-state")).to_have_text("Active")
        await expect(page.locator("#hangup")).to_have_accessible_name(re.compile(r"^Hang up anna@[\d.]+$"))
        await expect(page.locator("#transfer-complete")).to_be_visible()
        assert (await carol.next("hold"))["remote"] is True
        await page_hears(phone, (A_HZ,), (B_HZ,))
        await wait_for_async(lambda: page.evaluate(SENDS_MICROPHONE), 10)
        await merge.press("Enter")
        assert (await carol.next("hold"))["remote"] is False
        await expect(carol_row.locator(".line-state")).to_have_text("Merged", timeout=10_000)
        await page_hears(phone, (A_HZ, B_HZ))

        # Mute: neither far end hears the page, each still hears the other.
        await page.locator("#mute").click()
        await expect(page.locator("#mute")).to_have_attribute("aria-pressed", "true")
        await carol_hears(carol, (A_HZ,), (MIC_HZ, B_HZ))
        await page_hears(phone, (A_HZ, B_HZ))

        # anna hangs up: carol's call goes on alone, unmerged, its sender back to the microphone.
        anna.hangup()
        await asyncio.to_thread(anna.wait_event, "CALL_CLOSED")
        await expect(page.locator("#lines")).to_be_hidden()
        await expect(merge).to_be_hidden()
        await expect(page.locator("#status")).to_have_text("Connected")
        await expect(page.locator("#peer")).to_have_text("carol")
        await page.locator("#mute").click()
        await expect(page.locator("#mute")).to_have_attribute("aria-pressed", "false")
        await wait_for_async(lambda: page.evaluate(SENDS_MICROPHONE), 10)
        await page_hears(phone, (B_HZ,), (A_HZ,))
        await carol_hears(carol, (MIC_HZ,), (A_HZ, B_HZ))
        assert holds(frames, carol_call) == [True, False, True, False], "carol was held again"

        await phone.hang_up()
        assert (await carol.next("ended"))["cause"] == "normal"
        await phone.wait_state("ended")
        problems = [m for m in phone.console if m.startswith(("error", "pageerror"))]
        assert not problems, problems

    heard, rate = windows(anna.recording())
    assert any(hears(w, rate, (B_HZ, MIC_HZ), (A_HZ,)) for w in heard), "anna never heard carol and the page together"
    assert hears(heard[-1], rate, (B_HZ,), (MIC_HZ, A_HZ)), "anna heard the page while it was muted"


async def test_hang_up_all_ends_both_merged_calls(
    start_gateway: Callable[..., GatewayProcess], browser: OpenPhone, connect_client: Callable[..., Awaitable[WebClient]]
) -> None:
    """Merged, the big button (and Escape) is Hang up all, as a desk phone's End Call in a conference: both far ends
    get the hang-up, not only the call shown."""
    gateway = start_gateway()
    async with browser(gateway) as phone:
        page = phone.page
        await phone.sign_in("alice")
        carol, dave = await connect_client(gateway, "carol"), await connect_client(gateway, "dave")
        await carol.call("alice", tone_hz=B_HZ)
        await answer(phone, "Answer", B_HZ)
        await dave.call("alice", tone_hz=A_HZ)
        await answer(phone, "Answer and hold", A_HZ)
        await page.locator("#merge").click()
        await expect(page.locator("#lines .line-state")).to_have_text(["Merged", "Merged"], timeout=10_000)
        await expect(page.locator("#hangup")).to_have_accessible_name("Hang up all (carol and dave)")
        await page.keyboard.press("Escape")
        assert (await carol.next("ended"))["cause"] == "normal"
        assert (await dave.next("ended"))["cause"] == "normal"
        await phone.wait_state("ended")
        await expect(page.locator("#lines")).to_be_hidden()
        problems = [m for m in phone.console if m.startswith(("error", "pageerror"))]
        assert not problems, problems
