"""Bad input on the WebSocket: clear errors, and nothing else changes."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.passwords import hash_password
from gateway.protocol import _SCHEMA

from .webclient import WebClient

GARBAGE = [
    "not json",
    "[]",
    '{"type": "launch"}',
    '{"type": "call", "to": "600"}',
    '{"type": "hangup", "call": "no-such-call"}',
    '{"type": "answer", "call": "no-such-call", "sdp": "v=0\\r\\n"}',
    '{"type": "dtmf", "call": "x", "digits": "1; DROP TABLE"}',
    "\x00\xff" * 10,
]


async def test_garbage_gets_errors_and_the_call_keeps_its_audio(web_client) -> None:
    caller = await web_client()
    await caller.call("601")
    await caller.next("answered")
    bystander = await web_client("bob")
    for raw in GARBAGE:
        await bystander.send(raw)
        error = await bystander.next()
        assert error["type"] == "error", (raw, error)
        assert error["message"]
    await bystander.send({"type": "ping", "id": "p1"})
    assert (await bystander.next()) == {"type": "pong", "id": "p1"}
    await caller.wait_tone(440)


async def test_requests_before_sign_in_are_refused(web_client) -> None:
    client = await web_client(user=None)
    await client.send({"type": "call", "to": "600", "sdp": "v=0\r\n", "id": "r1"})
    error = await client.next()
    assert (error["type"], error["code"], error["id"]) == ("error", "not_signed_in", "r1")


async def test_dialplan_refusal_is_explained_before_any_invite(web_client) -> None:
    client = await web_client()
    await client.send({"type": "call", "to": "1234@evil.example", "sdp": "v=0\r\n", "id": "r2"})
    error = await client.next()
    assert (error["type"], error["code"]) == ("error", "rejected")
    assert "not a number" in error["message"]


@pytest.mark.parametrize(("password", "accepted"), [("right", True), ("wrong", False), (None, False)])
async def test_sign_in_with_passwords(start_gateway, password: str | None, accepted: bool) -> None:
    gateway = start_gateway(f'[users.alice]\npassword = "{hash_password("right")}"\n')
    client = WebClient(gateway.url)
    try:
        hello = await client.connect()
        assert hello["auth"] == "password"
        request = {"type": "sign_in", "user": "alice", "id": "s"}
        if password is not None:
            request["password"] = password
        await client.send(request)
        reply = await client.next()
        assert reply["type"] == ("signed_in" if accepted else "error")
        if not accepted:
            assert reply["code"] == "auth_failed"
    finally:
        await client.close()


def _hostile_messages(victim_call: str) -> list[dict[str, Any]]:
    """Every request type of the protocol, from a page that is not the call's: once with each field well
    formed but aimed at another user's call (or at nothing sensible), and once with each field of a wrong
    type.  Sign-in and sign-out are left out: they would change who the sender is."""
    aimed = {
        "call": victim_call, "to_call": victim_call, "transfer_of": victim_call, "sdp": "v=0\r\nnonsense\r\n",
        "to": "601", "digits": "1", "entry": "..%2F..%2Fetc", "contact": "nobody", "name": "x" * 256,
        "number": "\u0000\u202e", "favourite": True, "on": True, "browser": {"jitter_ms": 1.0},
    }
    wrong = [None, 7, -1.5, "", "x" * 5000, ["x"], {"x": 1}, True]
    messages: list[dict[str, Any]] = []
    for kind, fields in _SCHEMA.items():
        if kind in ("sign_in", "sign_out"):
            continue
        messages.append({"type": kind, **{name: aimed[name] for name in fields}})
        messages.append({"type": kind, **{name: aimed[name] for name, (_, required, _) in fields.items() if required}})
        for name in fields:
            messages += [{"type": kind, **{n: aimed[n] for n in fields}, name: value} for value in wrong]
    return messages


async def test_every_request_aimed_at_another_users_call_or_malformed_leaves_it_alone(gateway, web_client) -> None:
    """No request type, well or badly formed, lets one page touch another user's call or crash anything."""
    caller = await web_client()
    call = await caller.call("601")
    await caller.next("answered")
    bystander = await web_client("bob")
    messages = _hostile_messages(call)
    for message in messages:
        await bystander.send(message)
    await bystander.send({"type": "ping", "id": "last"})
    while (await bystander.next(timeout=30)).get("id") != "last":
        pass
    await caller.wait_tone(440)
    await caller.send({"type": "stats", "call": call, "id": "still"})  # answered only while the call is up
    reply = await caller.reply()
    assert (reply["type"], reply.get("id")) == ("stats", "still"), reply
    assert "Traceback" not in gateway.log(), gateway.log()[-3000:]
