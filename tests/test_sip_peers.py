"""Calls between browser stand-ins and real SIP peers (baresip, sipp), audio checked by FFT."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from .audio import has_tone, read_wav
from .peers import sipp
from .peers.baresip import Baresip
from .peers.kamailio import SilentSipPort
from .peers.net import wait_for_async
from .conftest import PHONE_HZ
from .webclient import RATE, WebClient

PAGE_HZ = 700


def assert_phone_heard(phone: Baresip, freq: float) -> None:
    samples, rate = read_wav(phone.recording())
    assert has_tone(samples[rate:], rate, freq), "the SIP phone did not hear the page's tone"


async def test_page_calls_a_sip_phone_and_both_hear_each_other(web_client, phone: Baresip) -> None:
    alice = await web_client()
    call = await alice.call(phone.uri, tone_hz=PAGE_HZ)
    await alice.next("answered")
    await alice.wait_tone(PHONE_HZ, seconds=2.0)  # two seconds both ways: the phone records the page too
    await alice.send({"type": "hangup", "call": call})
    assert (await alice.next("ended"))["cause"] == "normal"
    await asyncio.to_thread(phone.wait_event, "CALL_CLOSED")
    assert_phone_heard(phone, PAGE_HZ)


async def test_sip_phone_calls_a_page_and_hangs_up(gateway, web_client, phone: Baresip) -> None:
    alice = await web_client()
    phone.dial(gateway.uri("alice"))
    incoming = await alice.next("incoming")
    assert incoming["from"].startswith("sip:bob@")
    await alice.answer(incoming["call"], tone_hz=PAGE_HZ)
    await alice.next("answered")
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
    await alice.wait_tone(PHONE_HZ, seconds=2.0)  # two seconds both ways: the phone records the page too
    phone.hangup()
    ended = await alice.next("ended")
    assert (ended["cause"], ended["code"]) == ("normal", 200)
    assert_phone_heard(phone, PAGE_HZ)


@pytest.mark.parametrize(
    ("config", "signed_in", "callee", "expected"),
    [
        ("", False, "alice", 480),
        ('[dialplan]\ntrusted_sources = ["127.0.0.1"]\n[users.alice]\npassword = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="\n', False, "nobody", 404),
        ("[calls]\nring_timeout = 2.0\n[voicemail]\nenabled = false\n", True, "alice", 480),
    ],
    ids=["nobody-signed-in", "unknown-user", "no-answer"],
)
async def test_sip_callers_get_clean_final_responses(
    start_gateway, tmp_path: Path, config: str, signed_in: bool, callee: str, expected: int
) -> None:
    gateway = start_gateway(config)
    page = WebClient(gateway.url)
    try:
        await page.connect()
        if signed_in:
            await page.sign_in(callee)
        result = await asyncio.to_thread(sipp.uac(tmp_path / "sipp", gateway.uri(callee)).run, 20)
        assert result.final_status == expected
    finally:
        await page.close()


async def test_declining_in_the_page_gives_603(gateway, web_client, tmp_path: Path) -> None:
    alice = await web_client()
    caller = sipp.uac(tmp_path / "sipp", gateway.uri("alice")).start()
    try:
        incoming = await alice.next("incoming")
        await alice.send({"type": "decline", "call": incoming["call"]})
        assert (await alice.next("ended"))["cause"] == "declined"
        result = await asyncio.to_thread(caller.result, 10)
        assert result.final_status == 603
    finally:
        caller.stop()


async def test_busy_sip_phone_shows_as_busy_in_the_page(web_client, tmp_path: Path) -> None:
    alice = await web_client()
    with sipp.reject_uas(tmp_path / "sipp", 486, "Busy Here") as busy:
        await alice.call(busy.uri("bob"))
        ended = await alice.next("ended")
    assert (ended["cause"], ended["code"]) == ("busy", 486)


@pytest.mark.parametrize("workers", ["", "[engines]\nworkers = 1\n"], ids=["embedded", "behind-the-front"])
async def test_a_sip_address_that_never_answers_ends_quickly_as_not_responding(start_gateway, workers: str) -> None:
    """Nothing comes back for the INVITE, not even 100 Trying: the page hears "not responding" after
    sip.no_response_timeout, long before SIP's own 32 s timeout would say "no answer".  Behind the
    front, which answers the worker's INVITE with 100 Trying itself, the front says so."""
    gateway = start_gateway(f"[sip]\nno_response_timeout = 2.0\n{workers}")
    alice = WebClient(gateway.url)
    try:
        await alice.connect()
        await alice.sign_in("alice")
        with SilentSipPort() as silent:
            await alice.call(f"sip:bob@{silent.ip}:{silent.port}")
            ended = await alice.next("ended", timeout=10)
            assert silent.received(), "the INVITE never reached the silent port"
        assert (ended["cause"], ended["code"], ended["reason"]) == ("not_responding", 408, "Not responding")
    finally:
        await alice.close()


async def test_a_sip_address_that_says_trying_is_not_taken_for_one_not_responding(start_gateway, tmp_path: Path) -> None:
    """100 Trying and nothing more (a PBX still looking for the phone) keeps the call up past
    sip.no_response_timeout; the caller's hang-up then cancels it."""
    gateway = start_gateway("[sip]\nno_response_timeout = 1.0\n")
    alice = WebClient(gateway.url)
    try:
        await alice.connect()
        await alice.sign_in("alice")
        with sipp.trying_uas(tmp_path / "sipp") as phone:
            call = await alice.call(phone.uri("bob"))
            with pytest.raises(asyncio.TimeoutError):
                await alice.next("ended", timeout=3)
            await alice.send({"type": "hangup", "call": call})
            assert (await alice.next("ended"))["cause"] == "cancelled"
            assert (await asyncio.to_thread(phone.result, 10)).returncode == 0, "the phone did not get a CANCEL"
    finally:
        await alice.close()


async def test_page_that_vanishes_mid_call_sends_bye(web_client, phone: Baresip) -> None:
    alice = await web_client()
    await alice.call(phone.uri, tone_hz=PAGE_HZ)
    await alice.next("answered")
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
    await alice.close()
    closed = await asyncio.to_thread(phone.wait_event, "CALL_CLOSED", 10)
    assert closed["type"] == "CALL_CLOSED"


@pytest.mark.parametrize("media", ["native", "python"])
async def test_sip_phone_that_vanishes_ends_the_call_by_rtp_timeout(start_gateway, phone: Baresip, media: str) -> None:
    """The native path reads the relay's counters, the Python path pjsua2's RTCP statistics."""
    gateway = start_gateway(f'[engines]\nmedia = "{media}"\n[sip]\nmedia_timeout = 2.0\n')
    alice = WebClient(gateway.url)
    try:
        await alice.connect()
        await alice.sign_in("alice")
        await alice.call(phone.uri, tone_hz=PAGE_HZ)
        await alice.next("answered")
        await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
        phone.kill()
        ended = await alice.next("ended", timeout=10)
        assert (ended["cause"], ended["code"]) == ("network_error", 408)
    finally:
        await alice.close()


async def test_malformed_sip_leaves_calls_and_new_calls_working(
    either_gateway, connect_client, phone: Baresip, tmp_path: Path
) -> None:
    gateway = either_gateway
    alice = await connect_client(gateway)
    await alice.call(phone.uri, tone_hz=PAGE_HZ)
    await alice.next("answered")
    sipp.send_udp(gateway.uri("alice"), sipp.GARBAGE)
    sipp.send_udp(gateway.uri("alice"), sipp.sip_request("INVITE", gateway.uri("alice"), ("127.0.0.1", 9), omit={"Call-ID"}))
    result = await asyncio.to_thread(sipp.malformed_request(tmp_path / "sipp", gateway.uri("alice")).run, 10)
    assert result.final_status in (None, 400)
    await alice.wait_tone(PHONE_HZ)
    bob = await connect_client(gateway, "bob")
    await bob.call("601")
    await bob.next("answered")


async def test_sigterm_hangs_up_calls_with_bye_and_exits_cleanly(either_gateway, connect_client, phone: Baresip) -> None:
    gateway = either_gateway
    alice = await connect_client(gateway)
    await alice.call(phone.uri)
    await alice.next("answered")
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
    gateway.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(phone.wait_event, "CALL_CLOSED", 10)
    assert await asyncio.to_thread(gateway.process.wait, 15) == 0


async def test_invite_flood_is_slowed_down_not_fatal(gateway, web_client, phone: Baresip, tmp_path: Path) -> None:
    alice = await web_client()
    await alice.call(phone.uri, tone_hz=PAGE_HZ)
    await alice.next("answered")
    flood = sipp.Sipp(
        tmp_path / "flood", "flood", ["-sf", str(sipp.SCENARIOS / "uac_final.xml")],
        remote=f"127.0.0.1:{gateway.sip_port}", variables={"ruri": gateway.uri("nobody")},
        options=["-r", "200", "-m", "1000", "-timeout", "30s"],
    )
    with flood:
        await asyncio.to_thread(flood.result, 40)
    assert gateway.process.poll() is None, "the gateway died under an INVITE flood"
    assert has_tone(alice.last_heard(1.0), RATE, PHONE_HZ)
    bob = await web_client("bob")
    await bob.call("601")
    await bob.next("answered")


async def test_early_media_reaches_the_page_before_the_answer(web_client, tmp_path: Path) -> None:
    alice = await web_client()
    with sipp.early_media_uas(tmp_path / "sipp") as phone:
        call = await alice.call(phone.uri("bob"), tone_hz=PAGE_HZ)
        await alice.next("early_media")
        await alice.wait_tone(PAGE_HZ)  # the early-media phone echoes the page before it answers
        await alice.next("answered", timeout=5)
        await alice.send({"type": "hangup", "call": call})
        assert (await alice.next("ended"))["cause"] == "normal"


async def test_dtmf_from_the_page_reaches_the_sip_phone(web_client, phone: Baresip) -> None:
    alice = await web_client()
    call = await alice.call(phone.uri)
    await alice.next("answered")
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
    await alice.send({"type": "dtmf", "call": call, "digits": "4#"})
    digits = [(await asyncio.to_thread(phone.wait_event, "CALL_DTMF_START"))["param"] for _ in range(2)]
    assert digits == ["4", "#"]


async def test_hold_and_resume_from_both_sides(either_gateway, connect_client, phone: Baresip) -> None:
    alice = await connect_client(either_gateway)
    call = await alice.call(phone.uri, tone_hz=PAGE_HZ)
    await alice.next("answered")
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
    await alice.send({"type": "hold", "call": call})
    assert await alice.next("hold") == {"type": "hold", "call": call, "local": True, "remote": False}
    await alice.send({"type": "resume", "call": call})
    assert (await alice.next("hold"))["local"] is False
    phone.command("hold")
    while not (await alice.next("hold"))["remote"]:
        pass
    phone.command("resume")
    while (await alice.next("hold"))["remote"]:
        pass
    resumed = time.monotonic()
    await wait_for_async(lambda: len(alice.heard_since(resumed)) >= RATE, 10)
    await alice.wait_tone(PHONE_HZ)


async def test_dtmf_goes_as_sip_info_when_the_phone_has_no_telephone_event(
    either_gateway, connect_client, tmp_path: Path
) -> None:
    alice = await connect_client(either_gateway)
    phone = sipp.Sipp(tmp_path / "sipp", "dtmf_info", ["-sf", str(sipp.SCENARIOS / "uas_dtmf_info.xml"), "-m", "1"], rtp_echo=True)
    with phone:
        call = await alice.call(phone.uri("bob"))
        await alice.next("answered")
        await alice.send({"type": "dtmf", "call": call, "digits": "5"})
        messages = phone.log_path("_messages.log")
        await wait_for_async(lambda: messages.exists() and "INFO sip:" in messages.read_text(errors="replace"), 10)
        await alice.send({"type": "hangup", "call": call})
        await alice.next("ended")
        assert (await asyncio.to_thread(phone.result, 10)).returncode == 0, "the phone did not get the INFO"


async def test_the_page_can_read_the_sip_legs_quality(web_client, phone: Baresip) -> None:
    alice = await web_client()
    call = await alice.call(phone.uri)
    await alice.next("answered")

    async def sip_stats() -> dict:
        """The SIP leg's figures once its media runs and the loss is measured (a figure not yet known is left out)."""
        await alice.send({"type": "stats", "call": call, "id": "q1"})
        stats = await alice.next("stats")
        assert stats["id"] == "q1"
        return stats if stats["sip"]["codec"] and "loss_pct" in stats["sip"] else {}

    stats = await wait_for_async(sip_stats, 10, interval=0.2)
    assert stats["sip"]["codec"] in ("PCMU/8000", "PCMA/8000")
    assert 0 <= stats["sip"]["loss_pct"] <= 100


async def test_dtmf_from_the_sip_side_reaches_the_page(either_gateway, connect_client, tmp_path: Path) -> None:
    gateway = either_gateway
    alice = await connect_client(gateway)
    caller = sipp.Sipp(
        tmp_path / "sipp", "dtmf_caller", ["-sf", str(sipp.SCENARIOS / "uac_dtmf_info.xml"), "-m", "1"],
        remote=f"127.0.0.1:{gateway.sip_port}", variables={"ruri": gateway.uri("alice")}, rtp_echo=True,
    )
    with caller:
        incoming = await alice.next("incoming")
        await alice.answer(incoming["call"])
        dtmf = await alice.next("dtmf")
        assert (dtmf["call"], dtmf["digit"]) == (incoming["call"], "7")
        await alice.next("ended")
