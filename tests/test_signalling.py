"""Bad input on the WebSocket: clear errors, and nothing else changes."""

from __future__ import annotations

import pytest

from gateway.passwords import hash_password

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
