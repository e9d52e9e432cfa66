"""Direct calls: two web users of one gateway talk browser to browser, Opus end to end, no SIP.

Call control relays the pages' SDP (gateway/directcalls.py); the two real
Chromium pages each play their own pulsed tone as microphone, and each must
hear the other's. ``[calls] direct = false`` sends the same call through the
gateway's SIP side instead.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from playwright.async_api import WebSocket, expect

from gateway import directtransfer, engineapi
from gateway.config import load
from gateway.control import CallControl
from gateway.passwords import hash_password
from gateway.requesterror import RequestError

from .audio import has_tone, tone, write_wav
from .browser import DESKTOP, MIC_RATE, PHONE, BrowserPhone, open_phone
from .fakes import FakeLink, FakePage
from .gatewayprocess import GatewayProcess
from .peers import sipp
from .peers.net import wait_for_async
from .scrape import scrape, value

pytestmark = pytest.mark.timeout(150)

ALICE_HZ = 700
"""What alice's microphone plays."""
BOB_HZ = 1300
"""What bob's microphone plays."""
_RTPMAP = re.compile(r"^a=rtpmap:\d+ ([^/\s]+)", re.MULTILINE)


class Page:
    """A signed-in page and every WebSocket message it sent and received."""

    def __init__(self, phone: BrowserPhone) -> None:
        self.phone = phone
        self.sent: list[dict] = []
        self.received: list[dict] = []

    def got(self, kind: str) -> list[dict]:
        return [message for message in self.received if message["type"] == kind]

    def said(self, kind: str) -> list[dict]:
        return [message for message in self.sent if message["type"] == kind]

    async def wait_got(self, kind: str, timeout: float = 10) -> dict:
        await wait_for_async(lambda: bool(self.got(kind)), timeout)
        return self.got(kind)[-1]


@pytest.fixture
async def pages(tmp_path: Path) -> AsyncIterator[Callable[[GatewayProcess], Awaitable[tuple[Page, Page]]]]:
    """alice's and bob's pages on a gateway, signed in, each with its own microphone tone."""
    async with AsyncExitStack() as stack:

        async def open_both(gateway: GatewayProcess) -> tuple[Page, Page]:
            both = []
            for user, freq in (("alice", ALICE_HZ), ("bob", BOB_HZ)):
                wav = tmp_path / f"{user}.wav"
                write_wav(wav, tone(freq, 2.0, MIC_RATE, amplitude=0.5, pulsed=True), MIC_RATE)
                page = Page(await stack.enter_async_context(open_phone(gateway.url, wav, f"direct-{user}")))
                page.phone.page.on("websocket", lambda ws, page=page: _watch(ws, page))
                await page.phone.page.reload()
                await page.phone.sign_in(user)
                both.append(page)
            return both[0], both[1]

        yield open_both


def _watch(ws: WebSocket, page: Page) -> None:
    ws.on("framesent", lambda payload: page.sent.append(json.loads(payload)))
    ws.on("framereceived", lambda payload: page.received.append(json.loads(payload)))


async def call_and_answer(alice: Page, bob: Page) -> None:
    await alice.phone.dial("bob")
    await bob.phone.wait_state("incoming")
    await alice.phone.wait_state("ringing")
    await bob.phone.answer()
    await alice.phone.wait_state("answered")
    await bob.phone.wait_state("answered")


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "through-sip"])
async def test_two_pages_hear_each_other_browser_to_browser_in_opus(
    start_gateway: Callable[..., GatewayProcess], pages, direct: bool
) -> None:
    gateway = start_gateway("" if direct else "[calls]\ndirect = false\n")
    alice, bob = await pages(gateway)
    await call_and_answer(alice, bob)
    await alice.phone.wait_tone(BOB_HZ)
    await bob.phone.wait_tone(ALICE_HZ)
    health = gateway.health()
    assert health["calls"] == 2  # one per page, as the REST API lists them
    engine_calls = sum(engine["calls"] for engine in health["engines"])
    incoming, answer = bob.got("incoming")[-1], alice.got("sdp")[-1]["sdp"]
    if not direct:
        assert engine_calls > 0 and "direct" not in incoming and "direct" not in alice.got("calling")[-1]
        await alice.phone.hang_up()
        await bob.phone.wait_state("ended")
        return
    assert engine_calls == 0
    assert alice.got("calling")[-1]["direct"] is True and incoming["direct"] is True
    # Each page got the other's own SDP, untouched: the offer in `incoming`, the answer as `sdp`.
    assert incoming["sdp"] == alice.said("call")[-1]["sdp"]
    assert answer == bob.said("answer")[-1]["sdp"]
    assert set(_RTPMAP.findall(answer)) == {"opus"}, answer
    assert _RTPMAP.findall(incoming["sdp"])[0] == "opus"
    for page in (alice, bob):
        await expect(page.phone.page.locator("#q-codec")).to_have_text(re.compile(r"^opus/48000"), timeout=10_000)
        await expect(page.phone.page.locator("#q-sip")).to_have_text("Direct to the other browser: no phone network leg.")
    for viewport in (DESKTOP, PHONE):
        await alice.phone.screenshot("direct-call-answered", viewport)
    await alice.phone.page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})

    # Hold: both pages learn it, and neither hears the other any more; resume brings the audio back.
    await bob.phone.page.click("#hold")
    assert (await alice.wait_got("hold"))["remote"] is True
    await expect(alice.phone.page.locator("#status")).to_have_attribute("data-state", "answered")
    await _wait_silent(alice.phone, BOB_HZ)
    await _wait_silent(bob.phone, ALICE_HZ)
    await bob.phone.page.click("#hold")
    await bob.phone.wait_tone(ALICE_HZ)
    await alice.phone.wait_tone(BOB_HZ)

    await alice.phone.hang_up()
    await bob.phone.wait_state("ended")
    ended = bob.got("ended")[-1]
    assert (ended["cause"], ended["code"]) == ("normal", 200)
    metrics = scrape(gateway.url + "metrics")
    assert value(metrics, "gateway_calls_total", direction="outbound-dial", cause="normal") == 1
    assert value(metrics, "gateway_calls_total", direction="inbound", cause="normal") == 1
    assert value(metrics, "gateway_call_setup_seconds_count") == 2
    assert value(metrics, "gateway_call_jitter_seconds_count", leg="direct") >= 1


async def _wait_silent(phone: BrowserPhone, freq: float) -> None:
    """Until a one-second window of what the page plays has no `freq` in it."""
    for _ in range(10):
        samples, rate = await phone.heard_samples(1.0)
        if not has_tone(samples, rate, freq):
            return
    raise AssertionError(f"the page still hears {freq} Hz on hold")


async def test_decline_cancel_and_a_vanished_page_end_the_other_side(gateway: GatewayProcess, pages) -> None:
    alice, bob = await pages(gateway)

    await alice.phone.dial("bob")
    await bob.phone.wait_state("incoming")
    await bob.phone.decline()
    await alice.phone.wait_state("ended")
    ended = await alice.wait_got("ended")
    assert (ended["cause"], ended["code"]) == ("declined", 603)

    await alice.phone.dial("bob")
    await bob.phone.wait_state("incoming")
    await alice.phone.hang_up()
    await expect(bob.phone.page.locator("#status")).to_have_text("Missed call from alice")
    assert (bob.got("ended")[-1]["cause"], bob.got("ended")[-1]["code"]) == ("cancelled", 487)

    await call_and_answer(alice, bob)
    await bob.phone.page.close()
    await alice.phone.wait_state("ended")
    assert alice.got("ended")[-1]["cause"] == "normal"
    await wait_for_async(lambda: gateway.health()["calls"] == 0, 10)


async def test_the_other_page_carries_out_a_blind_transfer_of_a_direct_call(
    gateway: GatewayProcess, pages, tmp_path: Path
) -> None:
    """alice transfers bob: to what she may not call (refused, nothing asked of bob); to a SIP phone that only
    rings, beside which bob's page calls until he hangs that call up (both pages learn it failed, and talk on);
    then to 601, whose tone bob's page then plays while alice's call ends as transferred."""
    alice, bob = await pages(gateway)
    await call_and_answer(alice, bob)

    async def transfer(to: str) -> None:
        await alice.phone.page.click("#transfer-open")
        await alice.phone.page.fill("#transfer-to", to)
        await alice.phone.page.keyboard.press("Enter")

    await transfer("+12125550123")
    await expect(alice.phone.page.locator("#error-text")).to_contain_text("no trunk is configured")
    assert not bob.got("transfer_request")

    with sipp.trying_uas(tmp_path / "sipp") as carol:
        await transfer(carol.uri("carol"))
        note = bob.phone.page.locator("#transfer-note")
        await expect(note).to_have_text(re.compile(r"^alice is transferring you to carol@127\.0\.0\.1:\d+…$"))
        await expect(bob.phone.page.locator("#lines li")).to_have_count(2)
        for viewport in (DESKTOP, PHONE):
            await bob.phone.screenshot("direct-transfer-asked", viewport)
        await bob.phone.page.locator("#lines .line-hangup").nth(1).click()
        failed = await alice.wait_got("transfer_failed")
    assert failed["reason"].endswith("failed: Call cancelled") and bob.got("transfer_failed")[-1]["reason"] == failed["reason"]
    assert bob.said("call")[-1]["transfer_of"] == bob.got("incoming")[-1]["call"]
    await expect(note).to_be_hidden()
    await expect(alice.phone.page.locator("#error-text")).to_contain_text("The transfer to sip:carol@")
    await alice.phone.wait_tone(BOB_HZ)

    await transfer("601")
    await bob.phone.wait_tone(440)
    await expect(bob.phone.page.locator("#peer")).to_have_text("601")
    await expect(alice.phone.page.locator("#status")).to_have_text("Call transferred")
    assert (alice.got("ended")[-1]["cause"], bob.got("ended")[-1]["cause"]) == ("transferred", "transferred")
    for viewport in (DESKTOP, PHONE):
        await bob.phone.screenshot("direct-transfer-done", viewport)
    await bob.phone.hang_up()
    await wait_for_async(lambda: gateway.health()["calls"] == 0, 10)


# -- call control alone: the direct link's messages, the webhooks' events ------------------


async def _settle() -> None:
    """Let the direct link carry out what was sent to it (one loop iteration per hop)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_call_control_relays_sdp_hold_and_dtmf_and_reports_every_event() -> None:
    control = CallControl(load(None))
    engine = FakeLink()
    control.attach(engine)
    control.on_event(engine, engineapi.EngineReady("127.0.0.1:5071", 4))
    reported: list[tuple[str, str, str]] = []
    control.on_call = lambda event, call: reported.append((event, call.direction, call.state.value))
    alice, bob = FakePage(), FakePage()
    await control.sign_in(alice, "alice", None)
    await control.sign_in(bob, "bob", None)

    call = control.place_call(alice, "bob", "v=0 offer")
    assert control.call(call).direct
    await _settle()
    incoming = bob.messages[-1]
    assert incoming | {"call": ""} == {
        "type": "incoming", "call": "", "from": "sip:alice@127.0.0.1:5071", "from_name": "alice", "to": "bob",
        "direct": True, "sdp": "v=0 offer",
    }
    assert alice.messages[-1] == {"type": "ringing", "call": call}
    control.answer(bob, incoming["call"], "v=0 answer")
    await _settle()
    assert alice.messages[-2:] == [{"type": "sdp", "call": call, "sdp": "v=0 answer"}, {"type": "answered", "call": call}]
    assert bob.messages[-1] == {"type": "answered", "call": incoming["call"]}

    control.hold(alice, call, True)
    control.send_dtmf(alice, call, "1#")
    control.request_stats(bob, incoming["call"], "q1")
    await _settle()
    assert alice.messages[-1] == {"type": "hold", "call": call, "local": True, "remote": False}
    assert bob.messages[-4:] == [
        {"type": "stats", "call": incoming["call"], "direct": True, "id": "q1"},
        {"type": "hold", "call": incoming["call"], "local": False, "remote": True},
        {"type": "dtmf", "call": incoming["call"], "digit": "1"},
        {"type": "dtmf", "call": incoming["call"], "digit": "#"},
    ]

    control.sign_out(bob)  # the callee's page vanishes
    await _settle()
    ended = [message for message in alice.messages if message["type"] == "ended"]
    assert ended == [{"type": "ended", "call": call, "cause": "normal", "code": 200, "reason": "Call ended"}]
    assert control.call_count == 0 and engine.sent == [], "no engine heard of the call"
    assert sorted(reported) == sorted([
        ("ringing", "outbound-dial", "ringing"), ("ringing", "inbound", "incoming"),
        ("answered", "outbound-dial", "answered"), ("answered", "inbound", "answered"),
        ("ended", "outbound-dial", "ended"), ("ended", "inbound", "ended"),
    ])


async def test_without_direct_or_without_a_page_here_the_call_goes_to_an_engine() -> None:
    config = load(None)
    for direct, callee in ((False, "bob"), (True, "carol")):
        config.calls.direct = direct
        control = CallControl(config)
        engine = FakeLink()
        control.attach(engine)
        control.on_event(engine, engineapi.EngineReady("127.0.0.1:5071", 4))
        alice, bob = FakePage(), FakePage()
        await control.sign_in(alice, "alice", None)
        await control.sign_in(bob, "bob", None)
        call = control.place_call(alice, callee, "v=0 offer")
        assert not control.call(call).direct
        assert engine.sent[-1].targets == (("", f"sip:{callee}@127.0.0.1:5071"),)


async def test_a_direct_calls_blind_transfer_is_placed_by_the_other_page(tmp_path: Path, monkeypatch) -> None:
    """alice may call sip: addresses, bob may not; 601 is a built-in on the (fake) engine."""
    users = "".join(
        f'[users.{name}]\npassword = "{hash_password("pw")}"\nallow = {allow}\n'
        for name, allow in (("alice", '["national", "sip_uri"]'), ("bob", "[]"))
    )
    (tmp_path / "gateway.toml").write_text(f'[dialplan]\ncountry = "GB"\n\n{users}')
    control = CallControl(load(tmp_path / "gateway.toml"))
    engine = FakeLink()
    control.attach(engine)
    control.on_event(engine, engineapi.EngineReady("127.0.0.1:5071", 4))
    alice, bob = FakePage(), FakePage()
    await control.sign_in(alice, "alice", "pw")
    await control.sign_in(bob, "bob", "pw")
    a = control.place_call(alice, "bob", "v=0 offer")
    await _settle()
    b = bob.messages[-1]["call"]
    control.answer(bob, b, "v=0 answer")
    await _settle()
    transfers = control.transfers

    def failed(page: FakePage) -> dict:
        return [message for message in page.messages if message["type"] == "transfer_failed"][-1]

    async def place(to: str) -> str:
        transfers.transfer(alice, a, to)
        assert bob.messages[-1] == {"type": "transfer_request", "call": b, "to": to}
        with pytest.raises(RequestError, match="being transferred already"):
            transfers.transfer(alice, a, to)  # one at a time
        return transfers.place_call(bob, b, to, "v=0 offer 2")

    # What alice may not call is refused at once, and bob hears nothing of it.
    with pytest.raises(RequestError) as refused:
        transfers.transfer(alice, a, "+12125550123")
    assert refused.value.code == "rejected" and bob.messages[-1]["type"] == "answered"
    # What bob may not call: his `call` is refused, and both pages learn that the transfer failed.
    with pytest.raises(RequestError, match="not allowed to call sip: addresses"):
        await place("sip:carol@example.com")
    assert failed(alice) | {"call": b} == failed(bob) == {
        "type": "transfer_failed", "call": b, "code": 403,
        "reason": "The transfer to sip:carol@example.com failed: bob cannot call it: You are not allowed to call sip: addresses",
    }
    # The new call is busy: the direct call goes on.
    n = await place("601")
    with pytest.raises(RequestError, match="placed already"):
        transfers.place_call(bob, b, "601", "v=0 offer 2")
    assert engine.sent[-1].call_id == n
    control.on_event(engine, engineapi.Ended(n, "busy", 486, "Busy Here"))
    assert failed(alice)["reason"] == "The transfer to 601 failed: Busy Here" and failed(alice)["code"] == 486
    # bob's page never places the call.
    monkeypatch.setattr(directtransfer, "PLACE_SECONDS", 0.05)
    transfers.transfer(alice, a, "601")
    await wait_for_async(lambda: "did not call it" in failed(alice)["reason"], 5)
    assert failed(bob)["reason"] == "The transfer to 601 failed: bob's page did not call it"
    with pytest.raises(RequestError, match="No transfer of that call"):
        transfers.place_call(bob, b, "601", "v=0 offer 2")
    # Attended: a direct call cannot be joined to another call.
    consult = control.place_call(alice, "601", "v=0 offer 3")
    control.on_event(engine, engineapi.Answered(consult))
    with pytest.raises(RequestError, match="transfer it blind instead") as attended:
        transfers.transfer_to_call(alice, a, consult)
    assert attended.value.code == "not_possible"
    control.hangup(alice, consult)
    control.on_event(engine, engineapi.Ended(consult, "normal", 200, "Call ended"))
    assert control.call(a).state.value == "answered" and control.call(b).state.value == "answered"

    # The new call is answered: both halves end as transferred, bob's new call goes on.
    n = await place("601")
    control.on_event(engine, engineapi.Answered(n))
    await _settle()
    assert [m for m in alice.messages if m["type"] == "ended"][-1] == {
        "type": "ended", "call": a, "cause": "transferred", "code": 200, "reason": "Transferred",
    }
    assert [(m["call"], m["cause"]) for m in bob.messages if m["type"] == "ended"][-1] == (b, "transferred")
    assert [call.call_id for call in control.calls()] == [n]
