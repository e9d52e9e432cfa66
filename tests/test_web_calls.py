"""Calls between web users (direct by default, through the gateway's own SIP leg with
``[calls] direct = false``), and the limits of one engine."""

from __future__ import annotations

import asyncio

import pytest

from .peers.net import wait_for_async


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "through-sip"])
async def test_call_between_two_pages_carries_audio_both_ways(start_gateway, connect_client, direct: bool) -> None:
    gateway = start_gateway("" if direct else "[calls]\ndirect = false\n")
    alice, bob = await connect_client(gateway, "alice"), await connect_client(gateway, "bob")
    call = await alice.call("bob", tone_hz=700)
    incoming = await bob.next("incoming")
    assert incoming["from"].startswith("sip:alice@")
    assert incoming.get("direct", False) is direct
    await alice.next("ringing")
    await bob.answer(incoming["call"], tone_hz=1100)
    await alice.next("answered")
    await bob.wait_tone(700)
    await alice.wait_tone(1100)
    await bob.send({"type": "hangup", "call": incoming["call"]})
    ended = await alice.next("ended")
    assert (ended["call"], ended["cause"], ended["code"]) == (call, "normal", 200)


async def test_first_tab_to_answer_wins(web_client) -> None:
    alice, bob1, bob2 = await web_client("alice"), await web_client("bob"), await web_client("bob")
    await alice.call("bob")
    ring1, ring2 = await bob1.next("incoming"), await bob2.next("incoming")
    assert ring1["call"] == ring2["call"]
    await bob2.answer(ring2["call"])
    gone = await bob1.next("ended")
    assert gone["cause"] == "answered_elsewhere"
    await alice.next("answered")


async def test_decline_reaches_the_caller_as_603(web_client) -> None:
    alice, bob = await web_client("alice"), await web_client("bob")
    await alice.call("bob")
    incoming = await bob.next("incoming")
    await bob.send({"type": "decline", "call": incoming["call"]})
    ended = await alice.next("ended")
    assert (ended["cause"], ended["code"]) == ("declined", 603)


async def test_user_not_signed_in_gives_480(web_client) -> None:
    alice = await web_client("alice")
    await alice.call("carol")
    ended = await alice.next("ended")
    assert (ended["cause"], ended["code"]) == ("unavailable", 480)


async def test_no_answer_within_ring_time_gives_480(start_gateway) -> None:
    from .webclient import WebClient

    gateway = start_gateway("[calls]\nring_timeout = 2.0\n[voicemail]\nenabled = false\n")
    alice, bob = WebClient(gateway.url), WebClient(gateway.url)
    try:
        for client, name in ((alice, "alice"), (bob, "bob")):
            await client.connect()
            await client.sign_in(name)
        await alice.call("bob")
        await bob.next("incoming")
        ended = await alice.next("ended", timeout=8)
        assert (ended["cause"], ended["code"]) == ("no_answer", 480)
        assert (await bob.next("ended"))["cause"] == "no_answer"
    finally:
        await alice.close()
        await bob.close()


async def test_a_call_beyond_the_engines_four_lines_is_refused_cleanly(web_client) -> None:
    alice = await web_client("alice")
    others = [await web_client(f"user{i}") for i in range(2)]
    for other in others:
        await other.call("601")
        await other.next("answered")
    await alice.send({"type": "call", "to": "600", "sdp": await alice.offer(0), "id": "c1"})
    refused = await alice.next("error")
    assert (refused["code"], refused["id"]) == ("busy", "c1")
    assert "busy" in refused["message"]
    await others[0].wait_tone(440, seconds=0.5)


async def test_twenty_calls_in_a_row_leak_nothing(gateway, web_client) -> None:
    alice = await web_client("alice")

    async def one_call() -> None:
        call = await alice.call("601")
        await alice.next("answered")
        await asyncio.sleep(0.3)
        await alice.send({"type": "hangup", "call": call})
        await alice.next("ended")
        await alice.hang_up_media()

    def no_calls() -> bool:
        return gateway.health()["calls"] == 0

    await one_call()
    await wait_for_async(no_calls, 10)
    fds, threads = gateway.open_fds(), gateway.threads()
    for _ in range(20):
        await one_call()
    await wait_for_async(no_calls, 10)
    try:  # a call's sockets close once its engine has let go of it, a moment after the page hears "ended"
        await wait_for_async(lambda: gateway.open_fds() <= fds, 10)
    except TimeoutError:
        raise AssertionError(f"file descriptors grew from {fds} to {gateway.open_fds()}") from None
    # asyncio's default executor (aiortc encodes there) starts threads lazily up
    # to a fixed bound, so one or two may appear; a leak would add one per call
    assert gateway.threads() <= threads + 2
