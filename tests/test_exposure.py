"""The page faces the internet: password guessing, foreign origins, socket floods, deep JSON, /health."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import aiohttp
import pytest

from gateway.hostaddr import own_addresses
from gateway.passwords import hash_password

from .gatewayprocess import GatewayProcess
from .webclient import WebClient


def _ws_url(gateway: GatewayProcess) -> str:
    return gateway.url.replace("http", "ws", 1) + "ws"


def _rss_kib(gateway: GatewayProcess) -> int:
    with open(f"/proc/{gateway.process.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _sign_in(client: WebClient, password: str) -> dict[str, Any]:
    await client.send({"type": "sign_in", "user": "alice", "password": password, "id": "s"})
    return await client.next()


async def test_wrong_passwords_lock_the_name_out_then_the_window_ends(start_gateway) -> None:
    gateway = start_gateway(
        f'[http]\nsign_in_delay = 0.2\nsign_in_lockout_after = 3\nsign_in_lockout = 1.5\n'
        f'[users.alice]\npassword = "{hash_password("right")}"\n'
    )
    client = WebClient(gateway.url)
    try:
        await client.connect()
        failed = locked = 0
        while failed < 3:
            reply = await _sign_in(client, "wrong")
            if reply["code"] == "auth_failed":
                failed += 1
            else:
                assert reply["code"] == "auth_locked" and reply["retry_after"] >= 1, reply
                locked += 1
                await asyncio.sleep(0.05)
        assert locked, "a second wrong password right after the first waits its turn"
        reply = await _sign_in(client, "right")
        assert (reply["type"], reply["code"], reply["retry_after"]) == ("error", "auth_locked", 2), "even the right one"
        assert "try again" in reply["message"]

        async def signed_in() -> bool:
            return (await _sign_in(client, "right"))["type"] == "signed_in"

        await _until(signed_in)
    finally:
        await client.close()


async def _handshake(gateway: GatewayProcess, origin: str | None, url: str = "") -> int:
    """The HTTP status of a WebSocket upgrade (101 when it opened)."""
    headers = {"Origin": origin} if origin is not None else {}
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url or _ws_url(gateway), headers=headers) as ws:
                assert json.loads((await ws.receive()).data)["type"] == "hello"
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_only_the_pages_own_and_listed_origins_open_a_websocket(start_gateway) -> None:
    gateway = start_gateway('[http]\nallowed_origins = ["https://phone.example.org"]\n')
    own = gateway.url.rstrip("/")
    assert await _handshake(gateway, "https://evil.example") == 403
    assert await _handshake(gateway, "null") == 403
    assert await _handshake(gateway, own.replace("http:", "https:")) == 403, "another scheme is another origin"
    assert await _handshake(gateway, own) == 101
    assert await _handshake(gateway, "https://phone.example.org") == 101
    assert await _handshake(gateway, None) == 101, "clients that are not browsers send no Origin"


async def _burst(session: aiohttp.ClientSession, gateway: GatewayProcess) -> None:
    """1000 sockets opened and held, 20 more refused by the per-source limit, then all closed."""
    opened = await asyncio.gather(*(session.ws_connect(_ws_url(gateway)) for _ in range(1000)))
    await asyncio.gather(*(ws.receive() for ws in opened))
    extra = await asyncio.gather(*(session.ws_connect(_ws_url(gateway)) for _ in range(20)), return_exceptions=True)
    assert [getattr(exc, "status", exc) for exc in extra] == [429] * 20
    await asyncio.gather(*(ws.close() for ws in opened))


async def test_bursts_of_a_thousand_sockets_leave_no_memory_behind(start_gateway) -> None:
    gateway = start_gateway("[http]\nmax_sockets = 2000\nmax_sockets_per_source = 1000\n")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # The first burst leaves Python's allocator with arenas it keeps (about 20 MB); later ones must add nothing.
        await _burst(session, gateway)
        before = _rss_kib(gateway)
        await _burst(session, gateway)

        async def back_to_before() -> bool:
            return _rss_kib(gateway) <= before * 1.1

        try:
            await _until(back_to_before)
        except AssertionError:
            pytest.fail(f"RSS {before} kB before, {_rss_kib(gateway)} kB after 1000 sockets closed")
        assert await _handshake(gateway, None) == 101
    log = gateway.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


async def test_deep_json_is_a_bad_message_and_the_socket_stays_usable(gateway, connect_client) -> None:
    client = await connect_client(gateway)
    for raw in ["[" * 60000, '{"type": "ping", "x": ' + "[" * 50 + "]" * 50 + "}"]:
        await client.send(raw)
        error = await client.next()
        assert (error["type"], error["code"]) == ("error", "bad_message"), error
        assert "nests deeper" in error["message"]
    await client.send({"type": "ping", "id": "p"})
    assert await client.next() == {"type": "pong", "id": "p"}
    assert "Traceback" not in gateway.log()


async def test_a_socket_that_does_not_sign_in_is_closed(start_gateway, connect_client) -> None:
    gateway = start_gateway("[http]\nsign_in_timeout = 0.5\n")
    signed_in = await connect_client(gateway)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(_ws_url(gateway)) as idle:
            assert json.loads((await idle.receive()).data)["type"] == "hello"
            closed = await idle.receive(timeout=10)
            assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.POLICY_VIOLATION)
    await signed_in.send({"type": "ping", "id": "p"})
    assert await signed_in.next() == {"type": "pong", "id": "p"}


def _health(url: str, token: str = "") -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as reply:
        return json.load(reply)


def test_health_details_need_a_token_from_other_addresses(start_gateway) -> None:
    addresses = own_addresses(loopback=False)
    assert addresses, "this test needs a non-loopback interface address"
    gateway = start_gateway('[http]\nstatus_token = "s3cret"\n', http_host="0.0.0.0")
    url = f"http://{addresses[0]}:{gateway.http_port}/health"
    assert _health(url) == {"status": "ok"}
    assert _health(url, "wrong") == {"status": "ok"}
    assert "engines" in _health(url, "s3cret")
    assert "engines" in gateway.health(), "loopback sees the details without a token"
