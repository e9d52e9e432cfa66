"""The SIP side facing strangers: no call placed on a stranger's word, no crash, clean 4xx answers."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.passwords import hash_password

from .gatewayprocess import GatewayProcess
from .peers import sipp
from .peers.net import LOOPBACK, wait_for_async

CARRIER_NUMBER = "+441234567890"
PASSWORD = "pw"
PASSWORD_HASH = hash_password(PASSWORD)


@pytest.fixture
def carrier() -> Iterator[socket.socket]:
    """A would-be carrier: a UDP socket that records whether anything ever reaches it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def carrier_config(carrier: socket.socket) -> str:
    host, port = carrier.getsockname()
    return f"""
[dialplan]
country = "GB"
emergency_trunks = ["carrier"]

[[trunks]]
name = "carrier"
host = "{host}:{port}"
"""


def received_anything(sock: socket.socket) -> bool:
    try:
        sock.recv(65535)
    except BlockingIOError:
        return False
    return True


def refer_refused(attacker: sipp.Sipp) -> bool:
    log = attacker.log_path("_shortmessages.log")
    return log.exists() and "REFER" in log.read_text() and "SIP/2.0 403" in log.read_text()


async def test_a_strangers_refer_places_no_call_and_shutdown_hangs_up(
    start_gateway: Callable[..., GatewayProcess], carrier: socket.socket, tmp_path: Path
) -> None:
    gateway = start_gateway(carrier_config(carrier))
    host, port = carrier.getsockname()
    attacker = sipp.refer_attempt(tmp_path / "sipp", gateway.uri("601"), f"sip:{CARRIER_NUMBER}@{host}:{port}")
    with attacker:
        await wait_for_async(lambda: refer_refused(attacker), 15)
        assert gateway.health()["calls"] == 1, "the stranger's own call is the only one"
        assert not received_anything(carrier), "the gateway sent something to the carrier"
        assert await asyncio.to_thread(gateway.stop) == 0
        result = await asyncio.to_thread(attacker.result, 15)
    assert result.returncode == 0, "the stranger's call did not get its BYE at shutdown"
    assert not received_anything(carrier)
    assert f"REFER to <sip:{CARRIER_NUMBER}@" in gateway.log()


async def test_a_refer_to_the_gateway_itself_is_refused_and_calls_go_on(
    gateway: GatewayProcess, connect_client, tmp_path: Path
) -> None:
    attacker = sipp.refer_attempt(tmp_path / "sipp", gateway.uri("601"), gateway.uri("600"))
    with attacker:
        await wait_for_async(lambda: refer_refused(attacker), 15)
        alice = await connect_client(gateway)
        await alice.call("601")
        await alice.next("answered")
        assert gateway.health()["calls"] == 3, "the stranger's call and alice's two legs"
        assert await asyncio.to_thread(gateway.stop) == 0
        assert (await asyncio.to_thread(attacker.result, 15)).returncode == 0


def torture_invite(target: str, change: str) -> Callable[[tuple[str, int]], bytes]:
    """An INVITE to ``target`` made invalid the way RFC 4475 section 3.1.2 describes (``change``)."""

    def build(via: tuple[str, int]) -> bytes:
        host, port = via
        tag = secrets.token_hex(6)
        sdp = f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
        request_line = f"INVITE {target} SIP/2.0"
        headers = [
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{tag};rport",
            "Max-Forwards: 70",
            f'From: "Torture" <sip:torture@{host}:{port}>;tag={tag}',
            f"To: <{target}>",
            f"Call-ID: {tag}@{host}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:torture@{host}:{port}>",
            "Content-Type: application/sdp",
            f"Content-Length: {len(sdp)}",
        ]
        if change == "clerr":
            headers[-1] = "Content-Length: 9999"
        elif change == "lwsstart":
            request_line = f"INVITE  {target}  SIP/2.0"
        elif change == "escruri":
            request_line = f"INVITE {target}?Route=%3Csip:{host}:{port}%3E SIP/2.0"
        elif change == "baddate":
            headers.append("Date: Fri, 01 Jan 2010 16:00:00 EST")
        elif change == "trws":
            request_line += "  "
        elif change == "baddn":
            headers[2] = f"From: Torture, The <sip:torture@{host}:{port}>;tag={tag}"
        elif change == "mismatch01":
            headers[5] = "CSeq: 1 OPTIONS"
        return ("\r\n".join([request_line, *headers]) + "\r\n\r\n" + sdp).encode()

    return build


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        *[(change, 400) for change in ("clerr", "lwsstart", "escruri", "baddate", "trws", "baddn")],
        ("mismatch01", 500),  # pjsip's transaction layer refuses it itself, before any application code
    ],
)
async def test_invalid_invites_are_refused_before_call_control(gateway: GatewayProcess, change: str, expected: int) -> None:
    target = gateway.uri("601")
    status = await asyncio.to_thread(sipp.send_built, target, torture_invite(target, change), reply_timeout=5)
    assert status == expected
    assert "SIP call from" not in gateway.log(), "call control heard of an invalid INVITE"
    assert gateway.health()["calls"] == 0


async def test_an_invalid_invite_without_sdp_gets_400_and_the_gateway_lives_on(gateway: GatewayProcess) -> None:
    """pjsua 2.15 aborted the process when an offerless INVITE was refused inside its onIncomingCall."""
    bad_date = {"Date": "Fri, 01 Jan 2010 16:00:00 EST", "Contact": "<sip:probe@127.0.0.1>"}
    status = await asyncio.to_thread(sipp.send_request, gateway.uri("601"), method="INVITE", headers=bad_date, reply_timeout=5)
    assert status == 400
    assert gateway.health()["calls"] == 0
    assert await asyncio.to_thread(sipp.send_request, gateway.uri("601")) == 200, "the gateway still answers OPTIONS"


async def test_a_valid_invite_built_the_same_way_is_answered(gateway: GatewayProcess) -> None:
    """The control case: the torture builder's unchanged INVITE reaches the built-in tone."""
    target = gateway.uri("601")
    assert await asyncio.to_thread(sipp.send_built, target, torture_invite(target, ""), reply_timeout=5) == 200


USERS = '[users.alice]\npassword = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="\n'


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("", 403), ('[dialplan]\ntrusted_sources = ["127.0.0.0/8"]\n', 480), ('[dialplan]\ninbound_from = "anyone"\n', 480)],
    ids=["default", "trusted-source", "anyone"],
)
async def test_with_users_only_trusted_sources_may_ring_them(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path, policy: str, expected: int
) -> None:
    gateway = start_gateway(USERS + policy)
    result = await asyncio.to_thread(sipp.uac(tmp_path / "sipp", gateway.uri("alice")).run, 20)
    assert result.final_status == expected


@pytest.mark.parametrize("engines", ["", "[engines]\nworkers = 2\n"], ids=["embedded", "workers"])
async def test_with_users_web_users_still_reach_each_other_and_the_extensions(
    start_gateway: Callable[..., GatewayProcess], connect_client, engines: str
) -> None:
    """Calls between web users sent through SIP (not direct) cross the gateway's own SIP side, which the
    source policy must let through."""
    accounts = "".join(f'[users.{name}]\npassword = "{PASSWORD_HASH}"\n' for name in ("alice", "bob", "carol"))
    gateway = start_gateway(engines + "[calls]\ndirect = false\n" + accounts)
    alice = await connect_client(gateway, "alice", PASSWORD)
    bob = await connect_client(gateway, "bob", PASSWORD)
    await alice.call("bob")
    await bob.answer((await bob.next("incoming"))["call"])
    await alice.next("answered")
    carol = await connect_client(gateway, "carol", PASSWORD)
    await carol.call("601")
    await carol.next("answered")
