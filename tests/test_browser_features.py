"""The web phone's in-call features in a real Chromium: mute, hold, the quality
panel, audio settings, call history with redial, and incoming-call notifications.

Like test_browser.py, each test drives web/ against a gateway process with a
pulsed 1000 Hz tone as the microphone and checks what the page shows and hears.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import expect

from gateway.callquality import estimate_mos

from .audio import dominant_frequency, has_tone, rms_dbfs
from .browser import DESKTOP, MIC_HZ, PHONE, BrowserPhone, OpenPhone
from .gatewayprocess import GatewayProcess
from .scrape import scrape, value
from .webclient import WebClient

pytestmark = pytest.mark.timeout(90)

SILENCE_DBFS = (
    -45.0
)  # well below the echoed tone (about -12 dBFS) and Opus comfort noise







async def wait_silence(phone: BrowserPhone, timeout: float = 10) -> None:
    """Listen in 1 s windows until the page hears (near) silence and no microphone tone."""
    deadline = time.monotonic() + timeout
    heard: list[tuple[float, float]] = []
    while time.monotonic() < deadline:
        samples, rate = await phone.heard_samples(1.0)
        level = rms_dbfs(samples)
        if level < SILENCE_DBFS and not has_tone(samples, rate, MIC_HZ):
            return
        heard.append((round(level, 1), round(dominant_frequency(samples, rate))))
    raise AssertionError(
        f"the page never heard silence within {timeout} s; (dBFS, Hz) heard: {heard}"
    )


async def test_mute_silences_the_microphone_without_renegotiating(
    gateway: GatewayProcess, browser: OpenPhone
) -> None:
    """600 echoes the mic: muted, the page hears silence (same SDP, track disabled); unmuted, the tone again."""
    async with browser(gateway) as phone:
        page = phone.page
        await phone.sign_in("alice")
        await phone.dial("600")
        await phone.wait_state("answered")
        await phone.wait_tone(MIC_HZ)
        mute = page.locator("#mute")
        await expect(mute).to_have_attribute("aria-pressed", "false")
        sdp_before = await page.evaluate("window.phone.pc.localDescription.sdp")

        await mute.click()
        await expect(mute).to_have_attribute("aria-pressed", "true")
        assert (
            await page.evaluate("window.phone.pc.getSenders()[0].track.enabled")
            is False
        )
        await wait_silence(phone)
        assert await page.evaluate("window.phone.pc.localDescription.sdp") == sdp_before
        assert await page.evaluate("window.phone.pc.signalingState") == "stable"

        # Unmute from the keyboard: the toggle is a real button.
        await mute.focus()
        await page.keyboard.press("Space")
        await expect(mute).to_have_attribute("aria-pressed", "false")
        await phone.wait_tone(MIC_HZ)
        assert await page.evaluate("window.phone.pc.localDescription.sdp") == sdp_before
        await phone.hang_up()
        await phone.wait_state("ended")
        await expect(page.locator("#mute")).to_be_hidden()


async def test_hold_and_resume_follow_the_gateways_hold_event(
    gateway: GatewayProcess, browser: OpenPhone
) -> None:
    """Hold sends `hold`; the gateway's `hold` event (local=true) shows "On hold"; resume brings the tone back."""
    async with browser(gateway) as phone:
        page = phone.page
        frames: list[str] = []
        # Watch what the gateway sends the page: listen, then open the socket again by reloading.
        page.on(
            "websocket",
            lambda ws: ws.on(
                "framereceived", lambda payload: frames.append(str(payload))
            ),
        )
        await page.reload()
        await phone.sign_in("alice")
        await phone.dial("601")
        await phone.wait_state("answered")
        await phone.wait_tone(440)
        hold = page.locator("#hold")
        await expect(hold).to_be_enabled()
        await expect(hold).to_have_attribute("aria-pressed", "false")

        await hold.click()
        # The page changes only on the gateway's `hold` event: this is local=true arriving.
        await expect(page.locator("#status")).to_have_text("On hold")
        await expect(page.locator("#status")).to_have_attribute("data-hold", "local")
        await expect(hold).to_have_attribute("aria-pressed", "true")
        holds = [m for m in map(json.loads, frames) if m.get("type") == "hold"]
        assert holds and holds[0]["local"] is True and holds[0]["remote"] is False
        await phone.screenshot("on-hold", PHONE)
        await page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})

        await hold.focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#status")).to_have_text("Connected")
        await expect(hold).to_have_attribute("aria-pressed", "false")
        await phone.wait_tone(440)
        await expect(page.locator("#error")).to_be_hidden()
        holds = [m for m in map(json.loads, frames) if m.get("type") == "hold"]
        assert holds[-1]["local"] is False
        await phone.hang_up()
        await phone.wait_state("ended")


async def test_quality_panel_shows_codec_and_mos(
    gateway: GatewayProcess, browser: OpenPhone
) -> None:
    """During a 601 call the panel shows the Opus codec, a MOS in 1..5, a graph, and no error from `stats`."""
    async with browser(gateway) as phone:
        page = phone.page
        await phone.sign_in("alice")
        await expect(page.locator("#quality")).to_be_hidden()
        await phone.dial("601")
        await phone.wait_state("answered")
        quality = page.locator("#quality")
        await expect(quality).to_be_visible()
        await expect(page.locator("#q-codec")).to_have_text(
            re.compile("opus", re.IGNORECASE), timeout=10_000
        )
        await expect(page.locator("#q-mos")).to_have_text(
            re.compile(r"^\d\.\d\d$"), timeout=10_000
        )
        mos = float(await page.locator("#q-mos").inner_text())
        assert 1.0 <= mos <= 5.0
        await expect(page.locator("#q-rtt")).to_have_text(
            re.compile(r"^\d+\s+ms$"), timeout=10_000
        )
        await expect(page.locator("#q-loss")).to_have_text(re.compile(r"^\d+\.\d\s+%$"))
        await expect(page.locator("#quality-warning")).to_have_attribute(
            "role", "status"
        )
        # The graph grows by a point a second.
        await expect(page.locator("#quality-line-mos")).to_have_attribute(
            "points", re.compile(r"\S+ \S+"), timeout=5_000
        )
        # A gateway that answers `stats` shows the SIP leg; one that refuses it must not bother the user.
        await page.wait_for_timeout(2500)
        await expect(page.locator("#error")).to_be_hidden()
        sip = page.locator("#q-sip")
        if await sip.is_visible():
            await expect(sip).to_contain_text("Phone network leg")
        await expect(
            page.locator("#quality-warning")
        ).to_be_hidden()  # a loopback call is good

        # A bad network, as getStats() would report it: 600 ms round trip, 50 ms jitter, 10 % loss.
        await page.evaluate(
            """() => {
              const real = RTCPeerConnection.prototype.getStats;
              window.__realGetStats = real;
              let lost = 0, received = 0;
              RTCPeerConnection.prototype.getStats = async function () {
                lost += 5; received += 45;
                return new Map([
                  ["T", { id: "T", type: "transport", selectedCandidatePairId: "P" }],
                  ["P", { id: "P", type: "candidate-pair", currentRoundTripTime: 0.6 }],
                  ["I", { id: "I", type: "inbound-rtp", kind: "audio", jitter: 0.05, packetsLost: lost,
                          packetsReceived: received, codecId: "C" }],
                  ["C", { id: "C", type: "codec", mimeType: "audio/opus", clockRate: 48000, channels: 2 }],
                ]);
              };
            }"""
        )
        warning = page.locator("#quality-warning")
        await expect(warning).to_be_visible(timeout=5_000)
        await expect(warning).to_contain_text("Poor connection")
        await expect(warning).to_contain_text("600\u00a0ms round trip")
        await expect(page.locator("#q-loss")).to_have_text(re.compile(r"^10\.0\s+%$"))
        await expect(page.locator("#quality-summary")).to_have_text("Poor")
        await expect(
            page.locator("#quality-alert")
        ).to_be_visible()  # also next to the timer, above the fold
        await phone.screenshot("in-call-poor-quality", PHONE)
        await page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})
        await page.evaluate(
            "() => { RTCPeerConnection.prototype.getStats = window.__realGetStats; }"
        )
        await expect(warning).to_be_hidden(timeout=5_000)
        await expect(page.locator("#quality-alert")).to_be_hidden()

        problems = [m for m in phone.console if m.startswith(("error", "pageerror"))]
        assert not problems, problems
        await phone.screenshot("in-call-features", DESKTOP)
        await phone.screenshot("in-call-features", PHONE)
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        await page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})
        await phone.hang_up()
        await phone.wait_state("ended")
        await expect(quality).to_be_hidden()
    samples = scrape(gateway.url + "metrics")
    assert value(samples, "gateway_call_mos_count", leg="browser") == 1, "the page sent its leg's figures with `stats`"


async def test_mos_estimate_matches_the_simplified_e_model(
    gateway: GatewayProcess, browser: OpenPhone
) -> None:
    """The page's estimateMos is the gateway's (the simplified E-model, Twilio's) at known points."""
    async with browser(gateway) as phone:
        cases = [(20, 2, 0), (150, 10, 0), (300, 40, 1), (500, 60, 10), (1000, 200, 50)]
        got = await phone.page.evaluate(
            """async (cases) => {
              const { estimateMos } = await import("./js/quality.js");
              return cases.map(([r, j, l]) => estimateMos(r, j, l));
            }""",
            cases,
        )
        for case, mos in zip(cases, got, strict=True):
            assert mos == pytest.approx(estimate_mos(*case), abs=1e-9), case
        assert got[0] > 4.3 and got[3] < 3.5 and got[4] == 1.0


async def test_volume_and_device_pickers_are_remembered(
    gateway: GatewayProcess, browser: OpenPhone
) -> None:
    """The volume slider sets #remote-audio.volume; volume and microphone choice survive a reload."""
    async with browser(gateway) as phone:
        page = phone.page
        await phone.sign_in("alice")
        volume = page.locator("#volume")
        await volume.fill("30")
        assert await page.evaluate(
            "document.getElementById('remote-audio').volume"
        ) == pytest.approx(0.3)
        await expect(page.locator("#volume-value")).to_have_text("30%")
        # Keyboard: arrows move the slider.
        await volume.focus()
        await page.keyboard.press("ArrowRight")
        assert await page.evaluate(
            "document.getElementById('remote-audio').volume"
        ) == pytest.approx(0.31)

        # Device names appear after the first call allowed the microphone.
        await phone.dial("601")
        await phone.wait_state("answered")
        mics = page.locator("#mic-select option")
        await expect(mics.nth(1)).to_be_attached(timeout=5_000)
        chosen = await mics.nth(1).get_attribute("value")
        await page.select_option("#mic-select", chosen)
        # Switching the microphone mid-call keeps the call and its SDP.
        await phone.wait_tone(440)
        await phone.hang_up()
        await phone.wait_state("ended")
        await expect(page.locator("#speaker-select option").first).to_have_text(
            "Default"
        )

        await page.reload()
        await phone.sign_in("alice")
        assert await page.evaluate(
            "document.getElementById('remote-audio').volume"
        ) == pytest.approx(0.31)
        await expect(page.locator("#volume")).to_have_value("31")
        await expect(page.locator("#mic-select")).to_have_value(chosen, timeout=5_000)


async def test_history_call_back_and_redial(
    gateway: GatewayProcess, browser: OpenPhone
) -> None:
    """Ended calls are listed (kept by the gateway, so over a reload); Redial and an entry's button call again."""
    async with browser(gateway) as phone:
        page = phone.page
        await phone.sign_in("alice")
        await expect(page.locator("#redial")).to_be_disabled()
        await expect(page.locator("#history-empty")).to_be_visible()

        await phone.dial("601")
        await phone.wait_state("answered")
        await expect(page.locator("#redial")).to_be_disabled()  # not during a call
        await page.wait_for_timeout(1200)
        await phone.hang_up()
        await phone.wait_state("ended")
        entries = page.locator("#history li")
        await expect(entries).to_have_count(1)
        await expect(entries.first).to_contain_text("601")
        await expect(entries.first).to_contain_text("Outgoing")
        await expect(entries.first).to_contain_text(re.compile(r"00:0[1-9]"))
        assert await page.evaluate("localStorage.getItem('webphone.history')") is None

        await page.locator("#redial").click()
        await phone.wait_state("answered")
        await expect(page.locator("#peer")).to_have_text("601")
        await phone.hang_up()
        await phone.wait_state("ended")
        await expect(entries).to_have_count(2)

        await page.reload()
        await phone.sign_in("alice")
        await expect(entries).to_have_count(2)
        await page.fill("#number", "")
        button = page.get_by_role("button", name="Call 601 back").first
        await button.focus()
        await page.keyboard.press("Enter")
        await phone.wait_state("answered")
        await expect(page.locator("#number")).to_have_value("601")
        await phone.hang_up()
        await phone.wait_state("ended")
        await expect(entries).to_have_count(3)


async def test_notification_only_after_opt_in_and_only_when_hidden(
    gateway: GatewayProcess,
    browser: OpenPhone,
    web_client: Callable[..., Awaitable[WebClient]],
) -> None:
    """No prompt unasked; after "Enable notifications" an incoming call in a hidden tab shows one."""
    async with browser(gateway) as phone:
        page = phone.page
        # Stand-in for the browser's Notification API, recording prompts and notifications.
        await page.evaluate(
            """() => {
              window.__notes = []; window.__prompts = 0;
              let permission = "default";
              class FakeNotification {
                static get permission() { return permission; }
                static async requestPermission() { window.__prompts++; permission = "granted"; return permission; }
                constructor(title, options) { this.tag = options.tag; window.__notes.push({ title, ...options }); }
                close() { this.closed = true; }
              }
              window.Notification = FakeNotification;
              window.__hidden = false;
              Object.defineProperty(document, "visibilityState", { get: () => (window.__hidden ? "hidden" : "visible") });
            }"""
        )
        await phone.sign_in("alice")
        carol = await web_client("carol")

        # Before opting in: no prompt and no notification, even while hidden.
        await page.evaluate("window.__hidden = true")
        await carol.call("alice")
        await phone.wait_state("incoming")
        await page.wait_for_timeout(300)
        assert await page.evaluate("[window.__prompts, window.__notes.length]") == [
            0,
            0,
        ]
        await phone.decline()
        await carol.next("ended")
        await carol.hang_up_media()

        await page.evaluate("window.__hidden = false")
        enable = page.locator("#enable-notifications")
        await expect(enable).to_be_visible()  # offered, never asked by itself
        await enable.click()
        assert await page.evaluate("window.__prompts") == 1
        await expect(page.locator("#notifications-state")).to_contain_text(
            "Notifications are on"
        )
        await expect(enable).to_be_hidden()

        # Visible tab: the banner is enough.
        await carol.call("alice")
        await phone.wait_state("incoming")
        await page.wait_for_timeout(300)
        assert await page.evaluate("window.__notes.length") == 0
        await phone.decline()
        await carol.next("ended")
        await carol.hang_up_media()

        await page.evaluate("window.__hidden = true")
        await carol.call("alice")
        await phone.wait_state("incoming")
        notes = await page.evaluate("window.__notes")
        assert len(notes) == 1 and notes[0]["title"] == "Incoming call"
        assert "carol" in notes[0]["body"]
        await phone.decline()
        await carol.next("ended")
