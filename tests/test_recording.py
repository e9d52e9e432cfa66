"""Call recording: started and stopped from the page, both legs in a stereo file per call.

A real gateway carries a call from alice (a browser stand-in playing 700 Hz, quietly) to bob
(another page, playing 1100 Hz) over its own SIP leg; alice records part of it. The file must
hold alice's tone left and bob's right (FFT), bob (the far end) must have heard the 1400 Hz beep,
the metadata must say who and when, and only alice may list and fetch it. Both media paths.
"""

from __future__ import annotations

import asyncio
import errno
import json
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway import engineapi as api
from gateway.config import RecordingConfig
from gateway.recorder import BEEP_HZ, RATE as RECORDING_RATE, CallRecording, Recorders, beep_pcm

from .audio import has_tone
from .relayharness import BROWSER_HZ, FRAME_8K, PHONE_HZ, receive_all, relay_call
from .webclient import RATE, ToneTrack, WebClient

ALICE_HZ, BOB_HZ = 700, 1100
MEDIA = {"native": "", "python": '[engines]\nmedia = "python"\n', "worker": "[engines]\nworkers = 1\n"}
"""The native path, the Python path, and the native path in a worker process (commands and events as JSON)."""


def _config(media: str, directory: Path, formats: str = '["wav", "mp3"]') -> str:
    # alice and bob are both web users: without direct = false their call would not cross the gateway's media.
    return f'{MEDIA[media]}[calls]\ndirect = false\n[recording]\nenabled = true\ndir = "{directory}"\nformats = {formats}\n'


async def _wait(condition: Any, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.05)


async def _call(connect_client: Any, gateway: Any) -> tuple[WebClient, WebClient, str, str]:
    """alice calls bob; both hear each other's tone. Returns both clients and both call ids."""
    alice, bob = await connect_client(gateway, "alice"), await connect_client(gateway, "bob")
    call = await alice.call("bob", ToneTrack(ALICE_HZ, amplitude=0.1))
    incoming = await bob.next("incoming")
    await bob.answer(incoming["call"], tone_hz=BOB_HZ)
    await alice.next("answered")
    await _wait(lambda: has_tone(bob.last_heard(0.5), RATE, ALICE_HZ), what="bob hearing alice")
    await _wait(lambda: has_tone(alice.last_heard(0.5), RATE, BOB_HZ), what="alice hearing bob")
    return alice, bob, call, incoming["call"]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _stereo(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
        return samples[:, 0], samples[:, 1], wav.getframerate()


def _heard_beep(client: WebClient, since: float) -> bool:
    """Whether any 100 ms of what ``client`` heard after ``since`` is dominated by the beep."""
    heard = client.heard_since(since)
    window = RATE // 10
    return any(has_tone(heard[i : i + window], RATE, BEEP_HZ, tolerance_hz=30, min_snr_db=3) for i in range(0, len(heard) - window, window // 2))


@pytest.mark.parametrize("media", list(MEDIA))
async def test_a_recording_holds_both_legs_and_the_far_end_hears_the_beep(
    media: str, tmp_path: Path, start_gateway: Any, connect_client: Any
) -> None:
    directory = tmp_path / "recordings"
    gateway = start_gateway(_config(media, directory))
    assert gateway.health()["engines"][0]["media"] == ("python" if media == "python" else "native")
    alice, bob, call, _ = await _call(connect_client, gateway)
    assert not _heard_beep(bob, 0)

    started = time.monotonic()
    await alice.send({"type": "record", "call": call, "on": True})
    assert await alice.next("recording") == {"type": "recording", "call": call, "on": True}
    await _wait(lambda: _heard_beep(bob, started), what="bob hearing the beep")
    await asyncio.sleep(2.5)
    await alice.send({"type": "record", "call": call, "on": False})
    assert await alice.next("recording") == {"type": "recording", "call": call, "on": False}
    saved = await alice.next("recording_saved")
    assert saved["call"] == call and 2.0 < saved["duration"] < 6, saved

    stopped = time.monotonic()
    await _wait(lambda: has_tone(bob.last_heard(0.5), RATE, ALICE_HZ) and bob.received[-1][0] > stopped + 0.5,
                what="the call going on after the recording")

    folder = directory / "alice"
    meta = json.loads((folder / f"{saved['recording']}.json").read_text())
    assert {key: meta[key] for key in ("call", "user", "started_by", "caller", "callee", "direction")} == {
        "call": call, "user": "alice", "started_by": "alice", "caller": "alice", "callee": "bob", "direction": "outbound-dial",
    }
    assert meta["files"] == {"wav": f"{saved['recording']}.wav", "mp3": f"{saved['recording']}.mp3"}
    assert meta["channels"] == ["browser", "sip"] and meta["rate"] == RECORDING_RATE
    assert meta["duration"] == saved["duration"] and meta["start"].endswith("Z")
    left, right, rate = _stereo(folder / meta["files"]["wav"])
    assert rate == RECORDING_RATE and abs(len(left) / rate - meta["duration"]) < 0.05
    assert has_tone(left[rate // 10 : rate * 3 // 10], rate, BEEP_HZ, tolerance_hz=30, min_snr_db=3), "the beep, as sent to bob"
    assert has_tone(left[-rate:], rate, ALICE_HZ)
    assert has_tone(right[-2 * rate :], rate, BOB_HZ)
    assert (folder / meta["files"]["mp3"]).read_bytes()[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xe3")
    assert [path.name for path in folder.glob("*.part")] == [f"{saved['recording']}.part"], "kept for a next segment"

    await _listing_is_alice_s_alone(gateway.url, alice, bob, meta)

    await alice.send({"type": "record", "call": call, "on": True})
    assert (await alice.next("recording"))["on"] is True
    await asyncio.sleep(1.5)
    await alice.send({"type": "hangup", "call": call})
    await alice.next("ended")
    final = await alice.next("recording_saved")
    assert final["recording"] == saved["recording"] and final["duration"] > saved["duration"] + 1
    meta = json.loads((folder / f"{saved['recording']}.json").read_text())
    assert len(meta["segments"]) == 2 and meta["duration"] == final["duration"]
    left, right, rate = _stereo(folder / meta["files"]["wav"])
    assert has_tone(right[-rate // 2 :], rate, BOB_HZ), "the second segment, up to the hang-up"
    await _wait(lambda: not list(folder.glob("*.part")), what="the part file to go once the call is over")


async def _listing_is_alice_s_alone(url: str, alice: WebClient, bob: WebClient, meta: dict[str, Any]) -> None:
    await alice.send({"type": "recordings", "id": "r1"})
    mine = await alice.next("recordings")
    assert mine["id"] == "r1" and mine["recordings"] == [meta] and mine["expires_in"] > 0
    status, body = _get(f"{url}recordings", mine["token"])
    assert status == 200 and json.loads(body)["recordings"] == [meta]
    wav = meta["files"]["wav"]
    status, body = _get(f"{url}recordings/{wav}?token={mine['token']}")
    assert status == 200 and body[:4] == b"RIFF"

    await bob.send({"type": "recordings"})
    theirs = await bob.next("recordings")
    assert theirs["recordings"] == []
    assert _get(f"{url}recordings/{wav}", theirs["token"])[0] == 404
    assert _get(f"{url}recordings/{wav}")[0] == 401
    assert _get(f"{url}recordings", "not-a-token")[0] == 401
    assert _get(f"{url}recordings/..%2Fbob%2F{wav}", mine["token"])[0] == 404


async def test_an_unwritable_folder_is_said_clearly_and_the_call_goes_on(
    tmp_path: Path, start_gateway: Any, connect_client: Any
) -> None:
    occupied = tmp_path / "occupied"
    occupied.write_text("a file where the recordings folder should be")
    gateway = start_gateway(_config("native", occupied, '["wav"]'))
    alice, bob, call, _ = await _call(connect_client, gateway)
    await alice.send({"type": "record", "call": call, "on": True})
    refused = await alice.next("recording")
    assert refused == {"type": "recording", "call": call, "on": False,
                       "reason": "Cannot record: the recordings folder is not writable"}
    tried = time.monotonic()
    await _wait(lambda: bob.received[-1][0] > tried + 1 and has_tone(bob.last_heard(0.5), RATE, ALICE_HZ), what="audio to bob")
    await _wait(lambda: has_tone(alice.last_heard(0.5), RATE, BOB_HZ) and alice.received[-1][0] > tried + 1, what="audio to alice")


async def test_recording_off_refuses_and_a_call_must_be_answered(start_gateway: Any, connect_client: Any) -> None:
    gateway = start_gateway()
    alice = await connect_client(gateway, "alice")
    await alice.send({"type": "recordings", "id": "r"})
    assert (await alice.next("error"))["code"] == "not_enabled"
    call = await alice.call("601")
    await alice.next("answered")
    await alice.send({"type": "record", "call": call, "on": True, "id": "x"})
    assert (await alice.next("error"))["code"] == "not_enabled"
    await alice.send({"type": "record", "call": call, "on": "yes", "id": "y"})
    assert (await alice.next("error"))["code"] == "bad_message"


# -- the engine's part, without a gateway ---------------------------------------------------------


class _Tap:
    """A tap that has recorded a steady tone pair since it was started."""

    def __init__(self) -> None:
        self.beeps = 0
        self.on = False

    def start(self) -> None:
        self.on = True

    def take(self) -> bytes:
        return np.zeros(2 * RECORDING_RATE, "<i2").tobytes()

    def stop(self) -> bytes:
        self.on = False
        return b""

    def beep(self) -> None:
        self.beeps += 1


async def test_a_full_disk_stops_the_recording_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[api.Event] = []
    recorders = Recorders(RecordingConfig(enabled=True), events.append)
    tap = _Tap()
    recorders.record(api.Record("c1", True, str(tmp_path / "alice" / "20260101-000000-0000abcd")), lambda: tap)
    assert events == [api.RecordingChanged("c1", True)] and tap.beeps == 1

    def full(self: CallRecording, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CallRecording, "_write", full)
    recorders.tick()
    assert events[1] == api.RecordingChanged("c1", False, "Recording stopped: the recordings storage is full")
    assert not tap.on
    recorders.ended("c1")
    await recorders.close()


async def test_segments_are_assembled_into_one_file_and_max_minutes_stops_it(tmp_path: Path) -> None:
    events: list[api.Event] = []
    recorders = Recorders(RecordingConfig(enabled=True, max_minutes=3 / 60, beep=False), events.append)
    path = tmp_path / "alice" / "20260101-000000-0000abcd"
    tap = _Tap()
    for _ in range(2):
        recorders.record(api.Record("c1", True, str(path), (("user", "alice"),)), lambda: tap)
        recorders.tick()
        recorders.record(api.Record("c1", False), lambda: tap)
    recorders.record(api.Record("c1", True, str(path)), lambda: tap)
    recorders.tick()
    assert events[-1] == api.RecordingChanged("c1", False, "Recording stopped at its limit of 0.05 minutes")
    recorders.ended("c1")
    await recorders.close()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["user"] == "alice" and [segment["duration"] for segment in meta["segments"]] == [1.0, 1.0, 1.0]
    assert meta["duration"] == 3.0 and tap.beeps == 0
    left, _, rate = _stereo(path.with_suffix(".wav"))
    assert len(left) == 3 * rate + 2 * rate * 300 // 1000  # three seconds and two gaps between them
    assert not list(path.parent.glob("*.part"))
    assert [type(event).__name__ for event in events].count("RecordingSaved") == 3


# -- the native relay's part ----------------------------------------------------------------------


def test_the_relay_paces_both_legs_into_stereo_and_mixes_the_beep_towards_sip() -> None:
    """Real-time packets both ways: the relay's recording has the browser's tone left, the phone's right."""
    with relay_call() as call:
        call.relay.record(call.handle, True)
        call.relay.play(call.handle, beep_pcm(RECORDING_RATE))
        heard_by_phone = _talk_in_real_time(call, 2.0)
        recorded = call.relay.recorded(call.handle) + call.relay.record(call.handle, False)
        assert call.relay.stats(call.handle)["recording_dropped"] == 0
        assert call.relay.recorded(call.handle) == b""
    stereo = np.frombuffer(recorded, "<i2").reshape(-1, 2)
    assert 1.8 < len(stereo) / RECORDING_RATE < 2.2
    assert has_tone(stereo[-RECORDING_RATE:, 0], RECORDING_RATE, BROWSER_HZ)
    assert has_tone(stereo[-RECORDING_RATE:, 1], RECORDING_RATE, PHONE_HZ)
    phone = call.phone_audio(heard_by_phone)
    beep = slice(int(0.1 * RECORDING_RATE), int(0.3 * RECORDING_RATE))
    assert has_tone(phone[beep], RECORDING_RATE, BEEP_HZ, tolerance_hz=30, min_snr_db=-6)
    assert not has_tone(phone[-RECORDING_RATE:], RECORDING_RATE, BEEP_HZ, tolerance_hz=30, min_snr_db=-20)


def _talk_in_real_time(call: Any, seconds: float) -> list[bytes]:
    """Both ends send 20 ms packets every 20 ms (the recording is paced by the clock); what the phone heard."""
    from .audio import tone

    browser = list(call.opus_packets(tone(BROWSER_HZ, seconds, 48000, amplitude=0.1)))
    phone = tone(PHONE_HZ, seconds, RECORDING_RATE)
    heard: list[bytes] = []
    start = time.monotonic()
    for i, packet in enumerate(browser):
        call.send_from_browser(call.browser_packet(packet))
        call.send_from_phone(call.phone_packet(phone[i * FRAME_8K : (i + 1) * FRAME_8K]))
        time.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
        heard += receive_all(call.phone)
        call.hear_browser()
    return heard


# -- the page ---------------------------------------------------------------------------------------


async def test_the_page_shows_the_indicator_and_lists_the_recording(
    tmp_path: Path, start_gateway: Any, browser: Any
) -> None:
    from playwright.async_api import expect

    from .browser import MIC_HZ

    directory = tmp_path / "recordings"
    gateway = start_gateway(_config("native", directory, '["wav"]'))
    async with browser(gateway) as phone:
        await phone.sign_in("alice")
        page = phone.page
        await expect(page.locator("#recordings-panel")).to_be_visible()
        await expect(page.locator("#recordings-empty")).to_be_visible()
        await phone.dial("601")
        await phone.wait_state("answered")
        await phone.wait_tone(440)
        await page.click("#record")
        await expect(page.locator("#rec-indicator")).to_be_visible()
        await expect(page.locator("#record")).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#rec-time")).to_have_text("00:02", timeout=5000)
        await phone.screenshot("recording-on", (1280, 800))
        await phone.screenshot("recording-on", (390, 844))
        await page.click("#record")
        await expect(page.locator("#rec-indicator")).to_be_hidden()
        item = page.locator("#recordings .recording-item")
        await expect(item).to_have_count(1, timeout=10_000)
        await expect(item.locator(".recording-who")).to_have_text("601")
        for viewport in ((390, 844), (1280, 800)):
            await page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
            await page.locator("#recordings-panel").scroll_into_view_if_needed()
            await phone.screenshot("recording-list")
        src = await item.locator("audio").get_attribute("src")
        fetched = await page.evaluate("async (src) => { const r = await fetch(src); return [r.status, r.headers.get('content-type'), (await r.arrayBuffer()).byteLength]; }", src)
        assert fetched[0] == 200 and fetched[1] == "audio/wav" and fetched[2] > 2 * RECORDING_RATE * 4
        await phone.hang_up()
    wav = next((directory / "alice").glob("*.wav"))
    left, right, rate = _stereo(wav)
    assert has_tone(right[-rate:], rate, 440)
    assert has_tone(left[-rate:], rate, MIC_HZ)
