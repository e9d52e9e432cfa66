"""Two gateway hosts behind one front, each host a network namespace.

Host A runs the front (its managed Kamailio) and one worker; host B points
at A's front and runs one worker.  Bob's page is connected to host B.  An
INVITE for bob arrives at the front, which hands new calls to the workers
in turn: the call that lands on host A is answered 480 with
``X-Gateway-Users: bob`` and the front sends it on to host B, where bob's
page rings.  Both calls reach bob, and the audio makes the round trip.  The
same holds for a group whose only signed-in member is bob: host A answers 480
with every member (``X-Gateway-Users: dave,bob``) and the front finds bob's host.
A web user on host A calling bob goes through the front as well: direct calls
join only pages of one host.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.passwords import hash_password

from .audio import has_tone
from .gatewayprocess import GatewayProcess
from .peers import netns, sipp
from .peers.net import wait_for_async
from .webclient import RATE, WebClient

SIP_PORT = 5060  # fixed ports are safe inside namespaces the test has just made
RPC_PORT = 5080
HTTP_PORT = 8080
PAGE_HZ = 850
ALICE_HZ = 600
SECRET = secrets.token_urlsafe(24)
"""Host A's front takes it from its configuration, so host B can steer the front too."""
PASSWORD = "pw"
GROUP_NUMBER = "+442079460000"
GROUP = f"""
[dialplan]
country = "GB"
trusted_sources = ["10.0.0.0/8"]  # the caller stands in for a PBX on the test's bridge network
[groups]
team = ["dave", "bob"]
[users.bob]
password = "{hash_password(PASSWORD)}"
[users.dave]
password = "{hash_password(PASSWORD)}"
[[inbound]]
did = "{GROUP_NUMBER}"
group = "team"
"""


@contextlib.contextmanager
def two_hosts(tmp_path: Path, plan: str = "") -> Iterator[tuple[str, GatewayProcess, GatewayProcess]]:
    """Host A (the front and one worker) and host B (one worker, A's front), both with the dialplan
    ``plan``; yields the test's own address too."""
    with netns.hosts(2) as (outside, (a, b)):
        host_a = GatewayProcess(
            _dir(tmp_path, "a"),
            f'[engines]\nworkers = 1\ninternal_host = "{a.address}"\n[front]\nhost_id = 1\nrpc_port = {RPC_PORT}\n'
            f'rpc_secret = "{SECRET}"\n{plan}',
            host=a.address, sip_port=SIP_PORT, http_port=HTTP_PORT, netns=a.netns,
        )
        try:
            host_b = GatewayProcess(
                _dir(tmp_path, "b"),
                f'[engines]\nworkers = 1\ninternal_host = "{b.address}"\n[front]\nhost_id = 2\n'
                f'rpc_url = "http://{a.address}:{RPC_PORT}/RPC"\naddress = "{a.address}:{SIP_PORT}"\n'
                f'rpc_secret = "{SECRET}"\n{plan}',
                host=b.address, http_port=HTTP_PORT, netns=b.netns,
            )
            try:
                yield outside, host_a, host_b
            finally:
                host_b.stop()
        finally:
            host_a.stop()


@pytest.mark.parametrize(
    ("dialled", "plan", "password"), [("bob", "", None), (GROUP_NUMBER, GROUP, PASSWORD)], ids=["user", "group"]
)
async def test_an_inbound_call_at_the_front_rings_the_page_on_the_host_where_the_user_is(
    tmp_path: Path, dialled: str, plan: str, password: str | None
) -> None:
    with two_hosts(tmp_path, plan) as (outside, host_a, host_b):
        front = host_a.sip_address
        bob = WebClient(host_b.url)
        try:
            assert host_b.sip_address == front, "host B should give out the front's address"
            await bob.connect()
            await bob.sign_in("bob", password)
            await asyncio.sleep(0.5)  # the presence RPC to the front
            for attempt in range(2):
                caller = sipp.uac(tmp_path / f"caller{attempt}", f"sip:{dialled}@{front}", hold_ms=3000, ip=outside)
                with caller:
                    incoming = await bob.next("incoming", timeout=10)
                    await bob.answer(incoming["call"], tone_hz=PAGE_HZ)
                    await bob.next("answered", timeout=10)
                    await bob.wait_tone(PAGE_HZ)  # a round trip through the front
                    assert (await asyncio.to_thread(caller.result, 15)).final_status == 200
                    await bob.next("ended", timeout=10)
                await bob.hang_up_media()
            assert "ended: unavailable, 480" in host_a.log(), "no call went through host A first"
        finally:
            await bob.close()
        assert (host_b.stop(), host_a.stop()) == (0, 0), host_a.log()[-2000:] + host_b.log()[-2000:]


async def test_a_vanished_host_is_taken_out_of_rotation_and_calls_go_on(tmp_path: Path) -> None:
    with two_hosts(tmp_path) as (outside, host_a, host_b):
        front = host_a.sip_address
        alice = WebClient(host_a.url)
        try:
            await alice.connect()
            await alice.sign_in("alice")
            host_b.process.kill()  # the whole host: its workers end with their supervisor
            for attempt in range(2):  # one of them first tries B's silent worker, then A's
                caller = sipp.uac(tmp_path / f"caller{attempt}", f"sip:alice@{front}", hold_ms=500, ip=outside)
                with caller:
                    incoming = await alice.next("incoming", timeout=20)
                    await alice.send({"type": "decline", "call": incoming["call"]})
                    assert (await asyncio.to_thread(caller.result, 15)).final_status == 603
                    await alice.next("ended", timeout=10)
            states = host_a.front_states()
            host = front.split(":")[0]
            assert [flags for address, flags in states.items() if address.split(":")[0] == host] == ["A"]
            assert [flags for address, flags in states.items() if address.split(":")[0] != host] != ["A"], "B still gets calls"
        finally:
            await alice.close()


async def test_a_web_user_reaches_a_user_on_the_other_host_through_sip(tmp_path: Path) -> None:
    """Direct calls join two pages of one host; a user whose page is on another host is reached through the front."""
    with two_hosts(tmp_path) as (_, host_a, host_b):
        alice, bob = WebClient(host_a.url), WebClient(host_b.url)
        try:
            for client, name in ((alice, "alice"), (bob, "bob")):
                await client.connect()
                await client.sign_in(name)
            await asyncio.sleep(0.5)  # the presence RPC to the front
            await alice.call("bob", tone_hz=ALICE_HZ)
            incoming = await bob.next("incoming", timeout=15)
            assert "direct" not in incoming
            await bob.answer(incoming["call"], tone_hz=PAGE_HZ)
            await alice.next("answered", timeout=10)
            await wait_for_async(lambda: has_tone(alice.last_heard(1.0), RATE, PAGE_HZ), 10)
            await wait_for_async(lambda: has_tone(bob.last_heard(1.0), RATE, ALICE_HZ), 10)
        finally:
            await alice.close()
            await bob.close()


def _dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    return path
