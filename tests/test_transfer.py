"""Call transfer with real peers: the page's blind and attended transfers (REFERs to baresip phones, which
then talk to each other, checked by FFT of what each recorded), REFERs from the SIP side (a sipp PBX peered
as a trunk: the page hears the new party; a stranger's, and targets the user may not call: 403), refused
requests, and both flows on the real page in Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from gateway.passwords import hash_password

from .audio import has_tone, read_wav, tone, write_wav
from .browser import DESKTOP, PHONE, OpenPhone
from .gatewayprocess import GatewayProcess
from .peers import sipp
from .peers.baresip import Baresip
from .peers.net import free_udp_port, wait_for_async
from .webclient import RATE, WebClient

A_HZ, B_HZ, PAGE_HZ = 1000, 1500, 700
PASSWORD = "pw"


def baresip_phone(tmp_path: Path, user: str, hz: int) -> Baresip:
    wav = tmp_path / f"{user}-tone.wav"
    write_wav(wav, tone(hz, 60, 8000), 8000)
    return Baresip(tmp_path, wav, user=user)


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[tuple[Baresip, Baresip]]:
    """Two auto-answering baresip phones: A plays A_HZ, B plays B_HZ."""
    with baresip_phone(tmp_path, "a", A_HZ) as a, baresip_phone(tmp_path, "b", B_HZ) as b:
        yield a, b


async def talking(page: WebClient, to: str) -> str:
    """The page calls ``to`` and hears its tone; the call's id."""
    call = await page.call(to, tone_hz=PAGE_HZ)
    await page.next("answered")
    return call


async def talk_to_each_other(a: Baresip, b: Baresip, a_hz: int, b_hz: int) -> None:
    """A and B are in a call: after 2.5 s A hangs up, and each recording ends with the other's tone."""
    await asyncio.to_thread(b.wait_event, "CALL_ESTABLISHED", 10)
    await asyncio.sleep(2.5)
    a.hangup()
    await asyncio.to_thread(b.wait_event, "CALL_CLOSED", 10)
    heard_by_a, rate = read_wav(a.recording())
    heard_by_b, _ = read_wav(b.recording())
    assert has_tone(heard_by_a[-rate * 2 :], rate, b_hz), "A does not hear B"
    assert has_tone(heard_by_b[-rate * 2 :], rate, a_hz), "B does not hear A"


async def hears(page: WebClient, hz: int, timeout: float = 8) -> None:
    """The page hears ``hz`` within ``timeout`` seconds (polled, a second of audio at a time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not has_tone(page.last_heard(1.0), RATE, hz):
        if loop.time() > deadline:
            raise AssertionError(f"the page never heard {hz} Hz")
        await asyncio.sleep(0.25)


async def test_blind_transfer_from_the_page_connects_the_two_phones(
    start_gateway: Callable[..., GatewayProcess], connect_client, phones: tuple[Baresip, Baresip]
) -> None:
    a, b = phones
    gateway = start_gateway()
    alice = await connect_client(gateway)
    call = await talking(alice, a.uri)
    await hears(alice, A_HZ)
    await alice.send({"type": "transfer", "call": call, "to": b.uri})
    ended = await alice.next("ended", timeout=15)
    assert (ended["call"], ended["cause"]) == (call, "transferred")
    await talk_to_each_other(a, b, A_HZ, B_HZ)


def users_and_pbx(pbx_port: int, extra: str = "") -> str:
    """alice (who may call national numbers and sip: addresses, not international numbers), and a PBX
    peered by address as trunk ``pbx``, which takes every phone number."""
    return f"""
[dialplan]
country = "GB"

[users.alice]
password = "{hash_password(PASSWORD)}"
allow = ["national", "sip_uri"]

[[trunks]]
name = "pbx"
host = "127.0.0.1:{pbx_port}"

[[routes]]
prefix = "+"
trunks = ["pbx"]
{extra}
"""


def refer_answer(transferor: sipp.Sipp) -> str:
    """What the gateway answered the transferor's REFER ("" while none came), from sipp's short log."""
    log = transferor.log_path("_shortmessages.log")
    text = log.read_text() if log.exists() else ""
    for code in ("202", "403"):
        if f"SIP/2.0 {code}" in text:
            return code
    return ""


SHAPES = {"native": "", "python": '[engines]\nmedia = "python"\n', "workers": "[engines]\nworkers = 2\n"}


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_a_trunks_refer_gives_the_page_the_new_party(
    start_gateway: Callable[..., GatewayProcess], connect_client, tmp_path: Path, shape: str
) -> None:
    """The PBX transfers alice's call to the built-in 601: the page hears its 440 Hz and is told the new peer;
    with the media carried natively or in Python, and behind the front with workers."""
    pbx_port = free_udp_port()
    gateway = start_gateway(users_and_pbx(pbx_port, SHAPES[shape]))
    alice = await connect_client(gateway, password=PASSWORD)
    with sipp.refer_attempt(tmp_path / "sipp", gateway.uri("alice"), gateway.uri("601"), port=pbx_port) as pbx:
        incoming = await alice.next("incoming")
        await alice.answer(incoming["call"], tone_hz=PAGE_HZ)
        await alice.next("answered")
        transferring = await alice.next("transferring")
        assert transferring["to"] == gateway.uri("601")
        transferred = await alice.next("transferred")
        assert transferred["call"] == incoming["call"]
        assert transferred["peer"].startswith("sip:601@")
        await hears(alice, 440)
        assert (await asyncio.to_thread(pbx.result, 15)).returncode == 0, "the old call was not ended with BYE"
        assert refer_answer(pbx) == "202"
        await alice.send({"type": "hangup", "call": incoming["call"]})
        assert (await alice.next("ended"))["cause"] == "normal"


async def refused_refer_leaves_the_call(alice: WebClient, transferor: sipp.Sipp, call: str, words: str) -> None:
    """The REFER got 403, the page was told why (``words``), and the call goes on: the echo still returns its tone."""
    failed = await alice.next("transfer_failed")
    assert (failed["call"], failed["code"]) == (call, 403)
    assert words in failed["reason"]
    await wait_for_async(lambda: refer_answer(transferor) == "403", 5)
    alice.received.clear()
    await hears(alice, PAGE_HZ)
    await alice.send({"type": "hangup", "call": call})
    assert (await alice.next("ended"))["cause"] == "normal"
    assert (await asyncio.to_thread(transferor.result, 15)).returncode == 0


@pytest.mark.parametrize(
    ("target", "words"),
    [("sip:+12125550123@127.0.0.1:{pbx}", "may not call +12125550123"), ("sip:nobody@{gateway}", "no user called nobody")],
    ids=["forbidden", "unknown"],
)
async def test_a_trunks_refer_to_what_the_user_may_not_call_gets_403(
    start_gateway: Callable[..., GatewayProcess], connect_client, tmp_path: Path, target: str, words: str
) -> None:
    pbx_port = free_udp_port()
    gateway = start_gateway(users_and_pbx(pbx_port))
    alice = await connect_client(gateway, password=PASSWORD)
    refer_to = target.format(pbx=pbx_port, gateway=gateway.uri("x").split("@")[1])
    with sipp.refer_attempt(tmp_path / "sipp", gateway.uri("alice"), refer_to, port=pbx_port) as pbx:
        incoming = await alice.next("incoming")
        await alice.answer(incoming["call"], tone_hz=PAGE_HZ)
        await refused_refer_leaves_the_call(alice, pbx, incoming["call"], words)


async def test_a_strangers_refer_of_a_page_call_gets_403(
    start_gateway: Callable[..., GatewayProcess], connect_client, tmp_path: Path
) -> None:
    """Open sign-in lets anyone ring alice, but not transfer her call anywhere."""
    gateway = start_gateway()
    alice = await connect_client(gateway)
    with sipp.refer_attempt(tmp_path / "sipp", gateway.uri("alice"), gateway.uri("601")) as stranger:
        incoming = await alice.next("incoming")
        await alice.answer(incoming["call"], tone_hz=PAGE_HZ)
        await refused_refer_leaves_the_call(alice, stranger, incoming["call"], "only from trunks")


async def test_the_page_cannot_transfer_to_a_number_it_may_not_call(
    start_gateway: Callable[..., GatewayProcess], connect_client
) -> None:
    gateway = start_gateway(users_and_pbx(free_udp_port()))
    alice = await connect_client(gateway, password=PASSWORD)
    call = await talking(alice, "601")
    await alice.send({"type": "transfer", "call": call, "to": "+12125550123", "id": "t1"})
    error = await alice.next("error")
    assert (error["code"], error["call"], error["id"]) == ("rejected", call, "t1")
    assert "international" in error["message"]
    await alice.send({"type": "transfer", "call": "no-such-call", "to": "601", "id": "t2"})
    assert (await alice.next("error"))["code"] == "no_such_call"
    await alice.send({"type": "transfer", "call": call, "to": "601", "to_call": call, "id": "t3"})
    assert (await alice.next("error"))["code"] == "bad_message"
    await hears(alice, 440)
    await alice.send({"type": "hangup", "call": call})
    assert (await alice.next("ended"))["cause"] == "normal"


async def test_a_call_not_yet_answered_cannot_be_transferred(
    start_gateway: Callable[..., GatewayProcess], connect_client, tmp_path: Path
) -> None:
    gateway = start_gateway()
    alice = await connect_client(gateway)
    with sipp.trying_uas(tmp_path / "sipp") as callee:
        call = await alice.call(callee.uri("bob"), tone_hz=PAGE_HZ)
        await alice.send({"type": "transfer", "call": call, "to": "601", "id": "t1"})
        error = await alice.next("error")
        assert (error["code"], error["call"]) == ("wrong_state", call)
        assert error["message"] == "Only an answered call can be transferred"
        await alice.send({"type": "hangup", "call": call})
        assert (await alice.next("ended"))["cause"] == "cancelled"


async def test_attended_transfer_from_the_page_joins_its_two_calls(
    start_gateway: Callable[..., GatewayProcess], connect_client, phones: tuple[Baresip, Baresip]
) -> None:
    """alice holds her call with A, asks B (a consultation call), then joins A and B and leaves."""
    a, b = phones
    gateway = start_gateway()
    alice = await connect_client(gateway)
    first = await talking(alice, a.uri)
    await alice.send({"type": "hold", "call": first})
    assert (await alice.next("hold"))["local"] is True
    second = await alice.call(b.uri, tone_hz=PAGE_HZ)
    await alice.next("answered")
    await alice.send({"type": "transfer", "call": first, "to_call": second})
    ended = {message["call"]: message["cause"] for message in [await alice.next("ended", 15), await alice.next("ended", 15)]}
    assert ended == {first: "transferred", second: "transferred"}
    await talk_to_each_other(a, b, A_HZ, B_HZ)


@pytest.mark.timeout(150)
async def test_attended_transfer_on_the_page_in_chromium(
    start_gateway: Callable[..., GatewayProcess], browser: OpenPhone, tmp_path: Path
) -> None:
    """Transfer…, Ask first (the call with A is held, B is called), Complete transfer: A and B talk, the page is idle."""
    gateway = start_gateway()
    a_hz, b_hz = 650, 1450  # the page's microphone plays MIC_HZ
    with baresip_phone(tmp_path, "a", a_hz) as a, baresip_phone(tmp_path, "b", b_hz) as b:
        async with browser(gateway) as phone:
            page = phone.page
            await phone.sign_in("alice")
            await phone.dial(a.uri)
            await phone.wait_state("answered")
            await phone.wait_tone(a_hz)
            await page.click("#transfer-open")
            await page.fill("#transfer-to", b.uri)
            for size in (DESKTOP, PHONE):
                await phone.screenshot("transfer-form", size)
            await page.click("#transfer-consult")
            await expect(page.locator("#transfer-complete")).to_be_visible(timeout=10_000)
            await phone.wait_tone(b_hz)
            for size in (DESKTOP, PHONE):
                await phone.screenshot("transfer-consulting", size)
            await page.click("#transfer-complete")
            await phone.wait_state("ended", timeout=15)
            await expect(page.locator("#status")).to_have_text("Call transferred")
            for size in (DESKTOP, PHONE):
                await phone.screenshot("transfer-done", size)
        await talk_to_each_other(a, b, a_hz, b_hz)


@pytest.mark.timeout(120)
async def test_a_pbx_transfer_shows_the_new_party_in_chromium(
    start_gateway: Callable[..., GatewayProcess], browser: OpenPhone, tmp_path: Path
) -> None:
    """The page answers the PBX's call; the PBX transfers it to 601: the page plays 440 Hz and names 601."""
    pbx_port = free_udp_port()
    gateway = start_gateway(f'[dialplan]\ncountry = "GB"\n\n[[trunks]]\nname = "pbx"\nhost = "127.0.0.1:{pbx_port}"\n')
    async with browser(gateway) as phone:
        await phone.sign_in("alice")
        with sipp.refer_attempt(tmp_path / "sipp", gateway.uri("alice"), gateway.uri("601"), port=pbx_port) as pbx:
            await phone.wait_state("incoming")
            await phone.answer()
            await phone.wait_state("answered")
            await expect(phone.page.locator("#peer")).to_have_text("601", timeout=10_000)
            await phone.wait_tone(440)
            for size in (DESKTOP, PHONE):
                await phone.screenshot("transferred-by-pbx", size)
            assert (await asyncio.to_thread(pbx.result, 15)).returncode == 0
            await phone.hang_up()
            await phone.wait_state("ended")
