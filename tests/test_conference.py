"""Conference rooms end to end: a page in Chromium, an aiortc page and a SIP phone in one room.

Each participant sends its own tone (the page its fake microphone's MIC_HZ,
the aiortc client WEB_HZ, baresip SIP_HZ); by FFT, each hears the other two
and never itself. A full room refuses the page with a message and a SIP
caller with 486; when one leaves, the others go on hearing each other. On
the Python media path rooms are refused plainly; behind the Kamailio front,
SIP callers reach the worker that mixes the room.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import expect

from gateway import engineapi as api
from gateway.config import load
from gateway.control import CallControl
from gateway.requesterror import RequestError

from .audio import read_wav, tone, tone_shares, write_wav
from .browser import DESKTOP, MIC_HZ, PHONE, OpenPhone
from .fakes import FakeLink, FakePage
from .gatewayprocess import GatewayProcess
from .peers import sipp
from .peers.baresip import Baresip
from .webclient import RATE, WebClient

WEB_HZ, SIP_HZ = 600.0, 1500.0
ROOM = '[[rooms]]\nname = "standup"\nnumber = "700"\nmax_participants = 3\n'
ROOM_NOTE = "A call in a conference room cannot be held, recorded or transferred."


# -- call control, with fake engines and pages ------------------------------------------


class _Router:
    def __init__(self) -> None:
        self.rooms: dict[str, str] = {}

    def room_opened(self, number: str, engine: str) -> None:
        self.rooms[number] = engine

    def room_closed(self, number: str) -> None:
        del self.rooms[number]


def _control(tmp_path: Path, media: str = "native", engines: int = 1) -> tuple[CallControl, list[FakeLink], _Router]:
    (tmp_path / "gateway.toml").write_text(f'state_dir = "state"\n{ROOM}')
    router = _Router()
    control = CallControl(load(tmp_path / "gateway.toml"), room_router=router)
    links = [FakeLink() for _ in range(engines)]
    for index, link in enumerate(links):
        control.attach(link)
        control.on_event(link, api.EngineReady(f"127.0.0.1:{5071 + index}", 4, media))
    return control, links, router


async def _page(control: CallControl, user: str) -> FakePage:
    page = FakePage()
    await control.sign_in(page, user, None)
    return page


def _rosters(page: FakePage) -> list[list[str]]:
    return [message["participants"] for message in page.messages if message["type"] == "room"]


async def test_call_control_keeps_a_room_on_one_engine_tells_the_roster_and_refuses_a_full_room(tmp_path: Path) -> None:
    control, (first, second), router = _control(tmp_path, engines=2)
    carol, dave = await _page(control, "carol"), await _page(control, "dave")
    carol_call = control.place_call(carol, "700", "offer-c")
    links = [link for link in (first, second) if link.sent]
    assert len(links) == 1 and links[0].sent == [api.Join(carol_call, "standup", "offer-c")]
    room_link, other = links[0], second if links[0] is first else first
    assert router.rooms == {"700": control.call(carol_call).engine.sip_host}
    control.on_event(room_link, api.Answered(carol_call))
    dave_call = control.place_call(dave, "7-0-0", "offer-d")  # the room's engine, though the other has more room
    assert room_link.sent[-1] == api.Join(dave_call, "standup", "offer-d") and not other.sent
    control.on_event(room_link, api.Answered(dave_call))
    for refused_request in (lambda: control.hold(dave, dave_call, True), lambda: control.transfers.transfer(dave, dave_call, "600")):
        with pytest.raises(RequestError) as refused:
            refused_request()
        assert refused.value.code == "not_possible" and "conference room" in refused.value.message
    control.on_event(room_link, api.Incoming("s-1", "700", "sip:phone@192.0.2.9", "Desk phone", ""))
    assert room_link.sent[-1] == api.Join("s-1", "standup")
    control.on_event(room_link, api.Answered("s-1"))
    assert _rosters(carol) == [["carol"], ["carol", "dave"], ["carol", "dave", "Desk phone"]]

    erin = await _page(control, "erin")
    with pytest.raises(RequestError) as full:
        control.place_call(erin, "700", "offer-e")
    assert (full.value.code, full.value.message) == ("room_full", "The room standup is full (3 people)")
    control.on_event(room_link, api.Incoming("s-2", "700", "sip:late@192.0.2.9", "", ""))
    assert room_link.sent[-1] == api.Reject("s-2", 486, "The room standup is full (3 people)")

    control.on_event(room_link, api.Ended(dave_call, "normal", 200, "Call ended"))
    assert _rosters(carol)[-1] == ["carol", "Desk phone"]
    for call_id in (carol_call, "s-1"):
        control.on_event(room_link, api.Ended(call_id, "normal", 200, "Call ended"))
    assert router.rooms == {}


async def test_call_control_refuses_rooms_on_the_python_media_path(tmp_path: Path) -> None:
    control, (link,), router = _control(tmp_path, media="python")
    alice = await _page(control, "alice")
    with pytest.raises(RequestError) as refused:
        control.place_call(alice, "700", "offer")
    assert refused.value.code == "not_possible" and "native media relay" in refused.value.message
    control.on_event(link, api.Incoming("s-1", "700", "sip:phone@192.0.2.9", "", ""))
    assert isinstance(link.sent[-1], api.Reject) and link.sent[-1].code == 488
    assert router.rooms == {} and control.call_count == 1  # the refused SIP call, until its engine ends it


# -- end to end ----------------------------------------------------------------------------


@pytest.fixture
def sip_phone(tmp_path: Path) -> Iterator[Baresip]:
    """baresip playing SIP_HZ and recording what it hears."""
    wav = tmp_path / "sip-tone.wav"
    write_wav(wav, tone(SIP_HZ, 60, 8000, amplitude=0.3), 8000)
    with Baresip(tmp_path, wav, user="sipcaller") as running:
        yield running


def _hears(samples: np.ndarray, rate: int, others: tuple[float, ...], own: float) -> bool:
    """Each of ``others`` clearly present, ``own`` not at all."""
    *theirs, mine = tone_shares(samples, rate, [*others, own])
    return all(share > 0.05 for share in theirs) and mine < 0.01


async def _until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)


async def test_a_page_an_aiortc_page_and_a_sip_phone_hear_each_other_in_a_room(
    start_gateway: Callable[..., GatewayProcess],
    browser: OpenPhone,
    connect_client: Callable[..., Awaitable[WebClient]],
    sip_phone: Baresip,
    tmp_path: Path,
) -> None:
    gateway = start_gateway(f'{ROOM}[recording]\nenabled = true\ndir = "{tmp_path / "recordings"}"\n')
    async with browser(gateway) as page_phone:
        await page_phone.sign_in("carol")
        await page_phone.dial("700")
        await page_phone.wait_state("answered")
        info = page_phone.page.locator("#room-info")
        await expect(info).to_have_text("Room standup · 1 person")
        for refused in ("#hold", "#record", "#transfer-open"):  # the gateway refuses them for a room: say why
            button = page_phone.page.locator(refused)
            await expect(button).to_be_disabled()
            await expect(button).to_have_accessible_description(ROOM_NOTE)

        dave = await connect_client(gateway, "dave")
        dave_call = await dave.call("700", WEB_HZ)
        sip_phone.dial(gateway.uri("700"))
        await asyncio.to_thread(sip_phone.wait_event, "CALL_ESTABLISHED", 10)
        await expect(info).to_have_text("Room standup · 3 people")
        assert "sipcaller" in (await info.get_attribute("title") or "")

        async def page_hears(others: tuple[float, ...], own: float) -> bool:
            return _hears(*(await page_phone.heard_samples(1.0)), others, own)

        async def dave_hears() -> bool:
            heard = dave.last_heard(1.0)
            return len(heard) == RATE and _hears(heard, RATE, (MIC_HZ, SIP_HZ), WEB_HZ)

        await _until(lambda: page_hears((WEB_HZ, SIP_HZ), MIC_HZ), "the page hears the aiortc page and the phone")
        await _until(dave_hears, "the aiortc page hears the page and the phone")
        for size in (DESKTOP, PHONE):
            await page_phone.screenshot("conference-room", size)

        erin = await connect_client(gateway, "erin")
        await erin.send({"type": "call", "to": "700", "sdp": await erin.offer(WEB_HZ), "id": "c1"})
        refused = await erin.reply()
        assert (refused["type"], refused["code"], refused["message"]) == (
            "error", "room_full", "The room standup is full (3 people)"
        )
        full = await asyncio.to_thread(sipp.uac(tmp_path / "sipp", gateway.uri("700")).run, 20)
        assert full.final_status == 486

        await dave.send({"type": "hangup", "call": dave_call})
        await dave.hang_up_media()
        await expect(info).to_have_text("Room standup · 2 people")
        await _until(lambda: page_hears((SIP_HZ,), WEB_HZ), "the page still hears the phone, and no longer the one who left")

        sip_phone.hangup()
        await asyncio.to_thread(sip_phone.wait_event, "CALL_CLOSED", 10)
        heard, rate = read_wav(sip_phone.recording())
        *theirs, own = tone_shares(heard[rate // 2 :], rate, [MIC_HZ, WEB_HZ, SIP_HZ])
        assert all(share > 0.05 for share in theirs) and own < 0.01, (theirs, own)
        await expect(info).to_have_text("Room standup · 1 person")


async def test_rooms_are_refused_plainly_when_media_is_carried_in_python(
    start_gateway: Callable[..., GatewayProcess], connect_client: Callable[..., Awaitable[WebClient]], tmp_path: Path
) -> None:
    gateway = start_gateway(ROOM + '[engines]\nmedia = "python"\n')
    alice = await connect_client(gateway, "alice")
    await alice.send({"type": "call", "to": "700", "sdp": await alice.offer(WEB_HZ), "id": "c1"})
    refused = await alice.reply()
    assert (refused["type"], refused["code"]) == ("error", "not_possible")
    assert "native media relay" in refused["message"]
    result = await asyncio.to_thread(sipp.uac(tmp_path / "sipp", gateway.uri("700")).run, 20)
    assert result.final_status == 488


async def test_behind_the_front_sip_callers_reach_the_worker_that_mixes_the_room(
    start_gateway: Callable[..., GatewayProcess], connect_client: Callable[..., Awaitable[WebClient]], tmp_path: Path
) -> None:
    gateway = start_gateway(ROOM + "[engines]\nworkers = 2\n")
    alice = await connect_client(gateway, "alice")
    await alice.call("700", WEB_HZ)
    assert (await alice.next("room"))["participants"] == ["alice"]
    for attempt in range(2):  # the front takes turns between the workers for any other INVITE
        caller = sipp.uac(tmp_path / f"sipp{attempt}", gateway.uri("700"), hold_ms=500)
        assert (await asyncio.to_thread(caller.run, 20)).final_status == 200
        assert (await alice.next("room"))["participants"] == ["alice", "sipp"]
        assert (await alice.next("room"))["participants"] == ["alice"]
    assert "carried by another media engine" not in gateway.log(), "an INVITE reached the other worker first"
