"""Call transfer with real peers: the page's blind and attended transfers (REFER to baresip phones), and REFERs
from the SIP side (a sipp PBX peered as a trunk, and a stranger)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.passwords import hash_password

from .audio import has_tone, read_wav, tone, write_wav
from .gatewayprocess import GatewayProcess
from .peers.baresip import Baresip
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
    await asyncio.to_thread(b.wait_event, "CALL_ESTABLISHED", 10)
    await asyncio.sleep(2.5)
    a.hangup()
    await asyncio.to_thread(b.wait_event, "CALL_CLOSED", 10)
    heard_by_a, rate = read_wav(a.recording())
    heard_by_b, _ = read_wav(b.recording())
    assert has_tone(heard_by_a[-rate * 2 :], rate, B_HZ), "A does not hear B"
    assert has_tone(heard_by_b[-rate * 2 :], rate, A_HZ), "B does not hear A"
