"""Voicemail and missed calls: a call nobody answers goes to a greeting, a beep and a recording.

The integration tests call a web user from baresip, which plays PHONE_HZ and
records what it hears: the caller must hear the greeting and the beep
(BEEP_HZ, by FFT), the message file must hold the caller's tone, and only
the user's own pages see the message and may play it.
"""

from __future__ import annotations

import asyncio
import io
import json
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from playwright.async_api import expect

from gateway import endcause, engineapi as api, g711
from gateway.callview import describe
from gateway.config import ConfigError, load
from gateway.control import CallControl
from gateway.mailbox import MAX_ENTRIES, URL_SECONDS, Entry, Mailboxes
from gateway.voicemail import BEEP_HZ, Recording, load_greeting

from .audio import has_tone, read_wav, rms_dbfs, tone
from .browser import DESKTOP, PHONE, OpenPhone
from .conftest import PHONE_HZ
from .gatewayprocess import GatewayProcess
from .peers import sipp
from .peers.baresip import Baresip
from .peers.net import wait_for, wait_for_async
from .webclient import WebClient

from .fakes import FakeLink, FakePage
MAX_SECONDS = 3
QUICK = f"[voicemail]\nafter_seconds = 1.5\nmax_seconds = {MAX_SECONDS}\n"
"""Voicemail after 1.5 s of ringing; the gateway ends the call once the message is 3 s long."""
CHANGE_ME = (
    "scrypt$16384$8$1$uc5RzIcGt87BhXjVATplJg==$INxjtXeYqojZBRKJYN3lp9W3EPl8qqioVaQeOHQXVqyEm"
    "tGIsuGes9W2bLOuYw95uTV2oWOq+ofC9FT9jFwQdQ=="
)
"""The README's password hash, of "change-me"."""


# -- the recording, the mailbox and call control, without processes ------------------


def _prompt(recording: Recording) -> None:
    while not recording.prompted:
        recording.take()


@pytest.mark.parametrize("rate", [8000, 48000], ids=["native", "python"])
def test_a_recording_plays_greeting_and_beep_then_keeps_the_message_as_8_khz(tmp_path: Path, rate: int) -> None:
    recording = Recording(load_greeting(""), rate, max_seconds=2)
    recording.receive(tone(700, 1.0, rate).tobytes())  # said during the greeting: not kept
    frames = []
    while not recording.prompted:
        frames.append(recording.take())
    prompt = np.frombuffer(b"".join(frames), dtype="<i2")
    assert len(frames) == round(recording.prompt_seconds * 50)
    assert rms_dbfs(prompt[: rate * 3]) > -35, "no greeting"
    assert has_tone(prompt[-rate // 4 :], rate, BEEP_HZ), "no beep at the end of the prompt"
    assert recording.take() == bytes(len(frames[0])), "silence after the beep"
    recording.receive(tone(PHONE_HZ, 3.0, rate).tobytes())
    assert recording.save(tmp_path / "message.wav") == 2.0, "kept up to max_seconds"
    samples, saved_rate = read_wav(tmp_path / "message.wav")
    assert saved_rate == 8000 and len(samples) == 16000
    assert has_tone(samples, saved_rate, PHONE_HZ)


@pytest.mark.parametrize("said", [np.zeros(8000 * 3, dtype=np.int16), tone(PHONE_HZ, 0.5, 8000)], ids=["silence", "short"])
def test_silence_or_a_very_short_message_is_dropped(tmp_path: Path, said: np.ndarray) -> None:
    recording = Recording(load_greeting(""), 8000, max_seconds=10)
    _prompt(recording)
    recording.receive(said.tobytes())
    assert recording.save(tmp_path / "message.wav") == 0.0
    assert not (tmp_path / "message.wav").exists()


def test_an_unreadable_greeting_falls_back_to_the_default(tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF nonsense")
    assert len(load_greeting(str(tmp_path / "broken.wav"))) == len(load_greeting(""))


@pytest.mark.parametrize("payload_type", [g711.PCMU, g711.PCMA])
def test_g711_tables_round_trip_a_tone(payload_type: int) -> None:
    pcm = tone(PHONE_HZ, 0.2, 8000).tobytes()
    encoded = g711.encode(pcm, payload_type)
    assert len(encoded) == len(pcm) // 2
    assert has_tone(np.frombuffer(g711.decode(encoded, payload_type), dtype="<i2"), 8000, PHONE_HZ)


def test_mailboxes_keep_entries_across_a_restart_and_sign_urls_per_user(tmp_path: Path) -> None:
    boxes = Mailboxes(tmp_path, ["alice", "bob"], max_seconds=120)
    assert boxes.known("alice") and not boxes.known("carol") and not boxes.known("../x")
    boxes.add("alice", Entry("0123456789abcdef", 1000.0, "sip:bob@192.0.2.1", "Bob", 4.2))
    (tmp_path / "alice" / "0123456789abcdef.wav").write_bytes(b"RIFF")
    boxes.add("alice", Entry("fedcba9876543210", 1001.0, "sip:carol@192.0.2.1"))
    again = Mailboxes(tmp_path, ["alice", "bob"], max_seconds=120)
    assert [entry.id for entry in again.entries("alice")] == ["fedcba9876543210", "0123456789abcdef"]
    assert again.entries("bob") == []
    assert again.mark_heard("alice", "0123456789abcdef") and not again.mark_heard("bob", "0123456789abcdef")
    assert [entry.new for entry in Mailboxes(tmp_path, None, 120).entries("alice")] == [True, False]

    url = again.url("alice", "0123456789abcdef", now=5000)
    path, query = url.split("?")
    expires, sig = (part.split("=")[1] for part in query.split("&"))
    assert path == "/voicemail/alice/0123456789abcdef.wav"
    assert again.message_file("alice", "0123456789abcdef", expires, sig, now=5000) == tmp_path / "alice" / "0123456789abcdef.wav"
    assert again.message_file("bob", "0123456789abcdef", expires, sig, now=5000) is None, "signed for alice only"
    assert again.message_file("alice", "0123456789abcdef", expires, sig, now=5001 + URL_SECONDS) is None, "expired"
    assert again.message_file("alice", "0123456789abcdef", expires, "0" * 64, now=5000) is None
    assert boxes.message_file("alice", "0123456789abcdef", expires, sig, now=5000) is None, "another process's key"

    assert again.delete("alice", "0123456789abcdef") and not (tmp_path / "alice" / "0123456789abcdef.wav").exists()
    for index in range(MAX_ENTRIES + 1):
        again.add("alice", Entry(f"{index:016x}", 2000.0 + index, "sip:x@192.0.2.1"))
    assert len(again.entries("alice")) == MAX_ENTRIES


def test_open_sign_in_gives_mailboxes_only_to_names_that_signed_in(tmp_path: Path) -> None:
    boxes = Mailboxes(tmp_path, None, max_seconds=120)
    assert not boxes.known("alice")
    boxes.signed_in("alice")
    assert boxes.known("alice")
    assert not (tmp_path / "alice").exists(), "nothing is written before there is something to keep"


def test_a_users_own_greeting_comes_before_the_configured_one(tmp_path: Path) -> None:
    boxes = Mailboxes(tmp_path, ["alice", "bob"], max_seconds=120, greeting="/etc/gateway/greeting.wav")
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "greeting.wav").write_bytes(b"RIFF")
    assert boxes.record_to("alice", "0123456789abcdef") == (tmp_path / "alice" / "0123456789abcdef.wav", str(tmp_path / "alice" / "greeting.wav"))
    assert boxes.record_to("bob", "0123456789abcdef") == (tmp_path / "bob" / "0123456789abcdef.wav", "/etc/gateway/greeting.wav")


def test_a_mailbox_that_cannot_be_written_takes_no_message(tmp_path: Path) -> None:
    (tmp_path / "voicemail").write_text("in the way")
    assert Mailboxes(tmp_path / "voicemail", ["alice"], max_seconds=120).record_to("alice", "0123456789abcdef") is None


@pytest.mark.parametrize(
    ("section", "problem"),
    [("max_seconds = 0", "max_seconds"), ("after_seconds = -1", "after_seconds"), ('greeting = "nowhere.wav"', "no such file")],
)
def test_bad_voicemail_settings_stop_the_start(tmp_path: Path, section: str, problem: str) -> None:
    (tmp_path / "gateway.toml").write_text(f"[voicemail]\n{section}\n")
    with pytest.raises(ConfigError, match=problem):
        load(tmp_path / "gateway.toml")


class _Page(FakePage):
    """A page signed in from another machine."""

    source = "192.0.2.50"


async def _control(tmp_path: Path, voicemail: str = "") -> tuple[CallControl, FakeLink]:
    (tmp_path / "gateway.toml").write_text(f'state_dir = "state"\n[voicemail]\nafter_seconds = 0.05\n{voicemail}')
    control = CallControl(load(tmp_path / "gateway.toml"))
    link = FakeLink()
    control.attach(link)
    control.on_event(link, api.EngineReady("127.0.0.1:5071", 4))
    return control, link


def _incoming(control: CallControl, link: FakeLink, call_id: str, to: str = "alice") -> object:
    control.on_event(link, api.Incoming(call_id, to, "sip:bob@192.0.2.1", "Bob", ""))
    return link.sent[-1]


async def test_an_unanswered_call_goes_to_voicemail_and_the_message_reaches_every_page(tmp_path: Path) -> None:
    control, link = await _control(tmp_path)
    reported: list[tuple[str, str | None]] = []
    control.on_call = lambda event, call: reported.append((event, describe(call)["answered_by"]))
    pages = [_Page(), _Page()]
    for page in pages:
        await control.sign_in(page, "alice", None)
    assert _incoming(control, link, "7a3-1") == api.Ring("7a3-1")
    await wait_for_async(lambda: isinstance(link.sent[-1], api.Serve), 5)  # after after_seconds
    serve = link.sent[-1]
    assert isinstance(serve, api.Serve) and (serve.call_id, serve.app, serve.greeting) == ("7a3-1", "voicemail", "")
    record = Path(serve.record)
    assert record.parent == tmp_path / "state" / "voicemail" / "alice" and record.suffix == ".wav"
    entry_id = record.stem
    assert all(page.messages[-1]["type"] == "ended" and page.messages[-1]["cause"] == "no_answer" for page in pages)
    control.on_event(link, api.Answered("7a3-1"))
    control.on_event(link, api.VoicemailSaved("7a3-1", 4.5))
    control.on_event(link, api.Ended("7a3-1", "normal", 200, "Call ended"))
    assert reported == [("ringing", None), ("answered", "voicemail"), ("ended", "voicemail")], "what webhooks tell operators"
    for page in pages:
        assert page.messages[-1]["type"] == "mailbox"
        assert page.messages[-1]["added"] == page.messages[-1]["entries"][0]
        assert page.messages[-1]["added"] | {"time": 0} == {
            "id": entry_id, "time": 0, "from": "sip:bob@192.0.2.1", "from_name": "Bob", "voicemail": 4.5, "new": True,
        }
    reply = control.play_message(pages[0], entry_id)
    assert reply["url"].startswith(f"/voicemail/alice/{entry_id}.wav?")
    control.mark_heard(pages[0], entry_id)
    assert pages[1].messages[-1]["entries"][0]["new"] is False
    control.delete_entry(pages[1], entry_id)
    assert pages[0].messages[-1] == {"type": "mailbox", "entries": []}


@pytest.mark.parametrize(
    ("voicemail", "busy", "expected"),
    [
        ("", False, api.Reject("c", 480, endcause.UNAVAILABLE.reason)),
        ("when_signed_out = true\n", False, "voicemail"),
        ("", True, api.Reject("c", 486, endcause.BUSY_HERE.reason)),
        ("when_busy = true\n", True, "voicemail"),
        ("enabled = false\nwhen_busy = true\n", True, api.Reject("c", 486, endcause.BUSY_HERE.reason)),
    ],
    ids=["signed-out", "signed-out-voicemail", "busy", "busy-voicemail", "voicemail-off"],
)
async def test_a_user_signed_out_or_busy_gets_voicemail_only_when_configured(
    tmp_path: Path, voicemail: str, busy: bool, expected: object
) -> None:
    control, link = await _control(tmp_path, voicemail)
    page = _Page()
    await control.sign_in(page, "alice", None)
    if busy:
        _incoming(control, link, "a")
        _incoming(control, link, "b")
    else:
        control.sign_out(page)
    sent = _incoming(control, link, "c")
    if expected == "voicemail":
        assert isinstance(sent, api.Serve) and sent.app == "voicemail"
    else:
        assert sent == expected


async def test_a_declined_call_is_not_missed_but_a_cancelled_one_is(tmp_path: Path) -> None:
    control, link = await _control(tmp_path, "enabled = false\n")
    page = _Page()
    await control.sign_in(page, "alice", None)
    _incoming(control, link, "declined")
    control.decline(page, "declined")
    control.on_event(link, api.Ended("declined", "declined", 603, "Declined"))
    _incoming(control, link, "cancelled")
    control.on_event(link, api.Ended("cancelled", "cancelled", 487, "Call cancelled"))
    await asyncio.sleep(0.1)
    [missed] = control.mailboxes.entries("alice")
    assert (missed.seconds, page.messages[-1]["added"]["id"]) == (0, missed.id)


# -- a real gateway, baresip calling ----------------------------------------------------


def _beep_heard(samples: np.ndarray, rate: int) -> bool:
    window = rate // 4
    return any(has_tone(samples[i : i + window], rate, BEEP_HZ) for i in range(0, len(samples) - window, window // 2))


async def _request(client: WebClient, message: dict) -> dict:
    await client.send({**message, "id": "r1"})
    while True:
        reply = await client.next()
        if reply.get("id") == "r1":
            return reply


async def _fetch(gateway: GatewayProcess, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.url.rstrip("/") + path, ssl=False) as response:
            return response.status, await response.read()


def _wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


async def _message_left(phone: Baresip) -> None:
    """The caller is answered by voicemail, hears greeting and beep, and talks until the gateway hangs up."""
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED", 15)
    await asyncio.to_thread(phone.wait_event, "CALL_CLOSED", 20)
    heard, rate = read_wav(phone.recording())
    assert rms_dbfs(heard[rate // 2 : 3 * rate]) > -40, "the caller heard no greeting"
    assert _beep_heard(heard, rate), f"the caller heard no {BEEP_HZ} Hz beep"


@pytest.mark.parametrize(
    "shape", ["", '[engines]\nmedia = "python"\n', "[engines]\nworkers = 1\n"], ids=["native", "python", "workers"]
)
async def test_an_unanswered_caller_leaves_a_message_that_only_its_user_can_play(
    start_gateway: Callable[..., GatewayProcess], connect_client: Callable[..., Awaitable[WebClient]], phone: Baresip, shape: str
) -> None:
    gateway = start_gateway(QUICK + shape)
    alice, bob = await connect_client(gateway, "alice"), await connect_client(gateway, "bob")
    phone.dial(gateway.uri("alice"))
    incoming = await alice.next("incoming")
    ended = await alice.next("ended")
    assert (ended["call"], ended["cause"]) == (incoming["call"], "no_answer")
    await _message_left(phone)

    added = (await alice.next("mailbox", timeout=10))["added"]
    assert added["from"].startswith("sip:bob@") and added["new"]
    assert abs(added["voicemail"] - MAX_SECONDS) < 0.5
    samples, rate = read_wav(gateway.workdir / "state" / "voicemail" / "alice" / f"{added['id']}.wav")
    assert rate == 8000 and has_tone(samples, rate, PHONE_HZ), "the message does not hold the caller's tone"

    url = (await _request(alice, {"type": "mailbox_play", "entry": added["id"]}))["url"]
    status, body = await _fetch(gateway, url)
    assert status == 200 and has_tone(*_wav_samples(body), PHONE_HZ)
    refused = await _request(bob, {"type": "mailbox_play", "entry": added["id"]})
    assert (refused["type"], refused["code"]) == ("error", "no_such_entry")
    for forged in (url.replace("/alice/", "/bob/"), url.split("&sig=")[0], url.replace("expires=", "expires=1")):
        assert (await _fetch(gateway, forged))[0] == 404, forged


async def test_a_user_signed_in_nowhere_gets_voicemail_when_configured(
    start_gateway: Callable[..., GatewayProcess], connect_client: Callable[..., Awaitable[WebClient]], phone: Baresip
) -> None:
    gateway = start_gateway(
        f'[dialplan]\ntrusted_sources = ["127.0.0.1"]\n[users.alice]\npassword = "{CHANGE_ME}"\n'
        f"{QUICK}when_signed_out = true\n"
    )
    phone.dial(gateway.uri("alice"))
    await _message_left(phone)
    index = gateway.workdir / "state" / "voicemail" / "alice" / "index.json"
    await asyncio.to_thread(wait_for, lambda: index.exists() and json.loads(index.read_text())["entries"], 10)
    signed_in = await (await connect_client(gateway, None)).sign_in("alice", "change-me")
    [entry] = signed_in["mailbox"]
    assert entry["voicemail"] > 2 and entry["new"] and entry["from"].startswith("sip:bob@")


async def test_a_caller_who_hangs_up_while_ringing_is_a_missed_call_without_message(
    start_gateway: Callable[..., GatewayProcess], connect_client: Callable[..., Awaitable[WebClient]], phone: Baresip
) -> None:
    gateway = start_gateway()
    alice = await connect_client(gateway, "alice")
    phone.dial(gateway.uri("alice"))
    incoming = await alice.next("incoming")
    phone.hangup()
    assert (await alice.next("ended"))["cause"] == "cancelled"
    added = (await alice.next("mailbox"))["added"]
    assert added["voicemail"] == 0 and added["from"] == incoming["from"]
    later = await (await connect_client(gateway, None)).sign_in("alice")  # another page: the list is the server's
    assert later["mailbox"] == [added]


async def test_a_mailbox_that_cannot_be_written_declines_the_call_as_before(
    start_gateway: Callable[..., GatewayProcess], connect_client: Callable[..., Awaitable[WebClient]], tmp_path: Path
) -> None:
    gateway = start_gateway(QUICK)
    (gateway.workdir / "state").mkdir(exist_ok=True)
    (gateway.workdir / "state" / "voicemail").write_text("a file where the mailboxes should be")
    await connect_client(gateway, "alice")
    result = await asyncio.to_thread(sipp.uac(tmp_path / "sipp", gateway.uri("alice")).run, 20)
    assert result.final_status == 480
    assert "voicemail for alice cannot be stored" in gateway.log()


# -- the page --------------------------------------------------------------------------


async def test_the_page_shows_the_badge_notifies_and_plays_the_message(
    start_gateway: Callable[..., GatewayProcess], browser: OpenPhone, phone: Baresip
) -> None:
    gateway = start_gateway(QUICK)
    async with browser(gateway) as page_phone:
        page = page_phone.page
        await page.evaluate(
            """() => {
              window.__notes = [];
              class FakeNotification {
                static get permission() { return "granted"; }
                static async requestPermission() { return "granted"; }
                constructor(title, options) { this.tag = options.tag; window.__notes.push({ title, ...options }); }
                close() {}
              }
              window.Notification = FakeNotification;
              window.__hidden = false;
              Object.defineProperty(document, "visibilityState", { get: () => (window.__hidden ? "hidden" : "visible") });
            }"""
        )
        await page_phone.sign_in("alice")
        badge = page.locator("#mailbox-badge")
        await expect(badge).to_be_hidden()
        await expect(page.locator("#mailbox-empty")).to_be_visible()
        phone.dial(gateway.uri("alice"))
        await page_phone.wait_state("incoming")
        await page.evaluate("window.__hidden = true")
        await _message_left(phone)

        await expect(badge).to_have_text("1", timeout=10_000)
        item = page.locator(".mailbox-item")
        await expect(item).to_have_count(1)
        await expect(item).to_contain_text("Voicemail 00:03")
        notes = await page.evaluate("window.__notes")
        assert [note["title"] for note in notes] == ["New voicemail"] and "bob" in notes[0]["body"]
        await page.evaluate("window.__hidden = false")
        for size in (DESKTOP, PHONE):
            await page_phone.screenshot("voicemail-badge", size)
        await page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})

        await page.get_by_role("button", name="Play the message from").click()
        await page.wait_for_function("document.getElementById('mailbox-audio').currentTime > 1", timeout=10_000)
        await expect(badge).to_be_hidden()  # playing marks it heard
        await expect(page.get_by_role("button", name="Play the message from")).to_have_text("Stop")
        for size in (DESKTOP, PHONE):
            await page_phone.screenshot("voicemail-playing", size)
        await page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})
        await page.get_by_role("button", name="Delete bob@").click()
        await expect(item).to_have_count(0)
        await expect(page.locator("#mailbox-empty")).to_be_visible()
        assert not [line for line in page_phone.console if line.startswith(("error", "pageerror"))]
