"""Real Chromium driving the web phone page, for end-to-end tests.

The aiortc stand-ins in webclient.py speak the protocol but cannot catch what
only a browser does: the page's own JavaScript, getUserMedia, Chromium's
WebRTC stack and audio processing, mDNS-free host candidates, TLS pages. Here
Chromium plays a known WAV file as its microphone and the helpers measure
what the page actually plays through ``#remote-audio``, so tests assert audio
by content (FFT), both ways.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import Page, async_playwright, expect

from .audio import FULL_SCALE, dominant_frequency, has_tone
from .gatewayprocess import GatewayProcess

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
DESKTOP = (1280, 800)
PHONE = (390, 844)

_FLAGS = [
    "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",  # #remote-audio plays without a click
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # plain host candidates, no .local names
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# Records `seconds` of what #remote-audio plays, sample by sample, with an
# AudioWorklet (loaded from a blob URL, so the page needs no extra file).
_CAPTURE_JS = """
async (seconds) => {
  const stream = document.getElementById("remote-audio").srcObject;
  if (!stream) throw new Error("#remote-audio has no stream");
  const ctx = new AudioContext();
  try {
    const code = `registerProcessor("capture", class extends AudioWorkletProcessor {
      process(inputs) {
        const channel = inputs[0][0];
        if (channel) this.port.postMessage(channel.slice());
        return true;
      }
    });`;
    const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
    await ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    const node = new AudioWorkletNode(ctx, "capture");
    const wanted = Math.round(seconds * ctx.sampleRate);
    const samples = [];
    const full = new Promise((resolve) => {
      node.port.onmessage = (ev) => {
        for (const x of ev.data) samples.push(x);
        if (samples.length >= wanted) resolve();
      };
    });
    // The node is pulled only while connected to the destination; a zero gain keeps it silent.
    const mute = ctx.createGain();
    mute.gain.value = 0;
    ctx.createMediaStreamSource(stream).connect(node).connect(mute).connect(ctx.destination);
    await ctx.resume();
    await full;
    return { rate: ctx.sampleRate, samples: samples.slice(0, wanted) };
  } finally {
    await ctx.close();
  }
}
"""


def require_chromium() -> str:
    """The Chromium binary; its absence fails the test, since a skip would hide untested UI."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"Chromium not found at {CHROMIUM!r}: install Debian's chromium package "
            "(apt-get install chromium) or set CHROMIUM to the browser's path",
            pytrace=False,
        )
    return CHROMIUM


class BrowserPhone:
    """The web phone page in one Chromium, driven the way a user would."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))

    async def sign_in(self, user: str) -> None:
        """Sign in with the form (open sign-in); returns once the dial pad shows."""
        await expect(self.page.locator("#sign-in")).to_be_enabled(timeout=10_000)
        await self.page.fill("#user", user)
        await self.page.click("#sign-in")
        await expect(self.page.locator("body")).to_have_attribute("data-signed-in", "true")

    async def dial(self, number: str) -> None:
        """Type a number and press the call button."""
        await self.page.fill("#number", number)
        await self.page.click("#call")

    async def wait_state(self, state: str, timeout: float = 10) -> None:
        """Wait until #status shows `state` (idle, calling, ringing, answered, incoming, ended...)."""
        await expect(self.page.locator("#status")).to_have_attribute("data-state", state, timeout=timeout * 1000)

    async def hang_up(self) -> None:
        await self.page.click("#hangup")

    async def answer(self) -> None:
        await self.page.click("#answer")

    async def decline(self) -> None:
        await self.page.click("#decline")

    async def heard_samples(self, seconds: float = 1.0) -> tuple[np.ndarray, int]:
        """The next `seconds` of what the page plays from the far end, as (int16 samples, rate)."""
        captured = await self.page.evaluate(_CAPTURE_JS, seconds)
        samples = np.round(np.clip(captured["samples"], -1.0, 1.0) * (FULL_SCALE - 1)).astype(np.int16)
        return samples, int(captured["rate"])

    async def wait_tone(self, freq: float, timeout: float = 10, seconds: float = 1.0) -> None:
        """Listen in `seconds` windows until `freq` clearly dominates; fail with what was heard.

        Media starts some time after `answered` (ICE, the first packets, the
        jitter buffer), so a single early window would make the test flaky.
        """
        deadline = time.monotonic() + timeout
        heard: list[float] = []
        while time.monotonic() < deadline:
            samples, rate = await self.heard_samples(seconds)
            if has_tone(samples, rate, freq):
                return
            heard.append(round(dominant_frequency(samples, rate)))
        raise AssertionError(f"the page never heard {freq} Hz within {timeout} s; dominant frequencies: {heard}")

    async def screenshot(self, name: str, viewport: tuple[int, int] | None = None) -> Path:
        """Save the page (resized to `viewport` if given) as test-artifacts/screenshots/<name>-<w>x<h>.png."""
        if viewport is not None:
            await self.page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
        size = self.page.viewport_size or {"width": 0, "height": 0}
        width, height = size["width"], size["height"]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}-{width}x{height}.png"
        # Finished animations: a banner caught halfway through sliding in shows nothing useful.
        await self.page.screenshot(path=str(path), animations="disabled")
        return path


@asynccontextmanager
async def open_phone(
    url: str, mic_wav: Path, label: str, executable: Path | None = None
) -> AsyncIterator[BrowserPhone]:
    """Chromium with `mic_wav` (16-bit PCM, looped) as microphone, showing the page at `url`; `executable`
    runs Chromium some other way (in a network namespace, say), with the same arguments.

    On failure a screenshot named `failure-<label>` is saved and the page's
    console is printed (pytest shows it with the failure). The browser and its
    throw-away profile are always removed.
    """
    chromium = require_chromium()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                user_data_dir=profile,
                executable_path=executable or chromium,
                headless=True,
                args=[*_FLAGS, f"--use-file-for-fake-audio-capture={mic_wav}"],
                ignore_https_errors=True,
                viewport={"width": DESKTOP[0], "height": DESKTOP[1]},
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                phone = BrowserPhone(page)
                await page.goto(url)
                try:
                    yield phone
                except BaseException:
                    await _record_failure(phone, label)
                    raise
            finally:
                await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def _record_failure(phone: BrowserPhone, label: str) -> None:
    """Leave CI what the page looked like and said when the test failed."""
    print(f"--- browser console ({label}) ---", *phone.console, sep="\n")
    try:
        await phone.screenshot(f"failure-{label}")
    except Exception as err:  # the page may be gone already; the original error matters more
        print(f"no failure screenshot: {err}")


MIC_HZ = 1000
"""What the page's fake microphone plays, pulsed so Chromium's processing does not fade it."""
MIC_RATE = 48000

OpenPhone = Callable[[GatewayProcess], AbstractAsyncContextManager[BrowserPhone]]
"""Opens the page of a given gateway in Chromium (the ``browser`` fixture)."""
