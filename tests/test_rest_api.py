"""The REST API and webhooks against a real gateway process: click-to-call to a signed-in page, audio by FFT,
calls listed and ended over HTTP, webhooks checked by a real receiver, and receivers that fail."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import expect

from gateway.apitokens import hash_token, new_token
from gateway.app import create_app
from gateway.callstate import CallState
from gateway.config import ApiConfig, load
from gateway.controlcall import ControlCall, Engine
from gateway.engineapi import LocalLink
from gateway.passwords import hash_password
from gateway.restapi import DESCRIPTION
from gateway.webhooks import Webhooks

from .audio import has_tone
from .browser import MIC_HZ, OpenPhone
from .gatewayprocess import GatewayProcess
from .scrape import scrape, value
from .webclient import RATE, WebClient

TOKEN = new_token()
SECRET = "webhook-secret-for-all-calls"
CRM_SECRET = "webhook-secret-of-the-crm"


def _config(webhook: str = "", crm_webhook: str = "", extra: str = "") -> str:
    """Operator "crm" with TOKEN (and its own webhook), and a webhook for every call."""
    api = f'webhook_url = "{webhook}"\nwebhook_secret = "{SECRET}"\n' if webhook else ""
    crm = f'webhook_url = "{crm_webhook}"\nwebhook_secret = "{CRM_SECRET}"\n' if crm_webhook else ""
    return f'[api]\n{api}{extra}\n[[api.tokens]]\nname = "crm"\nhash = "{hash_token(TOKEN)}"\n{crm}'


class Receiver:
    """An operator's webhook endpoint on a free port: checks every signature and keeps the events.

    ``hang`` makes it accept each POST and never answer (until closed); ``answers`` are the statuses of the
    first POSTs (then 204).
    """

    def __init__(self, secret: str, hang: bool = False, answers: tuple[int, ...] = ()) -> None:
        self._secret = secret
        self._hang = hang
        self._answers = list(answers)
        self._released = asyncio.Event()
        self.events: list[dict[str, Any]] = []
        """Every event taken (answered 204)."""
        self.posts = 0
        self.ids: list[str] = []
        """The event id of every POST that came signed."""
        self.bad: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hooks"
        return self.url

    async def _handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        body = await request.read()
        timestamp = request.headers.get("X-Gateway-Timestamp", "")
        expected = "v1=" + hmac.new(self._secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Gateway-Signature", ""), expected):
            self.bad.append(f"bad signature on {body[:80]!r}")
            return web.Response(status=400)
        if abs(time.time() - int(timestamp)) > 300:
            self.bad.append(f"old timestamp {timestamp}")
            return web.Response(status=400)
        event = json.loads(body)
        self.ids.append(event["id"])
        if self._hang:
            await self._released.wait()
        status = self._answers.pop(0) if self._answers else 204
        if status == 204:
            self.events.append(event)
        return web.Response(status=status)

    def of(self, call_id: str) -> list[tuple[str, str]]:
        """(type, call state) of each event of one call, in arrival order."""
        return [(event["type"], event["call"]["state"]) for event in self.events if event["call"]["id"] == call_id]

    async def close(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Any]]:
    started: list[Receiver] = []

    async def start(secret: str, hang: bool = False, answers: tuple[int, ...] = ()) -> Receiver:
        receiver = Receiver(secret, hang, answers)
        started.append(receiver)
        await receiver.start()
        return receiver

    yield start
    for receiver in started:
        await receiver.close()


class Api:
    """An operator's HTTP client for ``/api/v1``."""

    def __init__(self, gateway: GatewayProcess, session: aiohttp.ClientSession, token: str | None = TOKEN) -> None:
        self._base = gateway.url.rstrip("/") + "/api/v1"
        self._session = session
        self._headers = {"Authorization": f"Bearer {token}"} if token is not None else {}

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        async with self._session.request(method, self._base + path, headers=headers, **kwargs) as reply:
            body = await reply.json() if reply.content_type == "application/json" else await reply.text()
            return reply.status, body


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def until(condition: Callable[[], Any], what: str, timeout: float = 10) -> None:
    """Poll ``condition`` until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _hears(page: WebClient, hz: float) -> Callable[[], bool]:
    """Whether the page's last whole second of audio is the tone ``hz``."""
    return lambda: len(page.last_heard(1.0)) == RATE and has_tone(page.last_heard(1.0), RATE, hz)


async def _click_to_call(api: Api, page: WebClient, to: str, tone_hz: float = 0) -> dict[str, Any]:
    """Place a click-to-call for alice and answer it on her page; returns the call as the API first described it."""
    began = time.monotonic()
    status, call = await api.request("POST", "/calls", json={"user": "alice", "to": to})
    assert status == 201, call
    incoming = await page.next("incoming")
    assert (incoming["call"], incoming["dial"], incoming["to"]) == (call["id"], to, "alice")
    await page.answer(call["id"], tone_hz)
    await page.next("answered")
    print(f"click-to-call to {to} answered {time.monotonic() - began:.3f} s after the POST")
    return call


def test_openapi_describes_every_route_and_nothing_else() -> None:
    described = json.loads(DESCRIPTION.read_text())
    assert described["openapi"].startswith("3.")
    prefix = described["servers"][0]["url"]
    served = {
        (route.resource.canonical.removeprefix(prefix), route.method.lower())
        for route in create_app(load(None)).router.routes()
        if route.resource is not None and route.resource.canonical.startswith(prefix + "/") and route.method != "HEAD"
    }
    documented = {
        (path, method) for path, operations in described["paths"].items() for method in operations if method != "parameters"
    }
    assert served == documented
    for path, method in documented:
        assert described["paths"][path][method]["responses"], (path, method)


@pytest.mark.parametrize(("to", "sends_hz", "hears_hz"), [("601", 0, 440), ("600", 880, 880)])
async def test_click_to_call_rings_the_page_dials_and_ends_through_the_api(
    start_gateway, connect_client, receivers, http, to: str, sends_hz: float, hears_hz: float
) -> None:
    everything, crm = await receivers(SECRET), await receivers(CRM_SECRET)
    gateway = start_gateway(_config(everything.url, crm.url))
    api, page = Api(gateway, http), await connect_client(gateway, "alice")
    created = await _click_to_call(api, page, to, sends_hz)
    assert (created["direction"], created["state"], created["user"], created["to"], created["operator"]) == (
        "outbound-api", "incoming", "alice", to, "crm",
    )
    await until(_hears(page, hears_hz), f"{hears_hz} Hz on the page")

    status, listed = await api.request("GET", "/calls")
    assert status == 200
    legs = {call["id"]: call for call in listed["calls"]}
    assert legs[created["id"]]["state"] == "answered"
    inbound = [call for call in listed["calls"] if call["direction"] == "inbound"]
    assert [call["to"] for call in inbound] == [to], "the gateway's own leg to the extension is listed too"
    status, call = await api.request("GET", f"/calls/{created['id']}")
    assert (status, call["state"]) == (200, "answered") and call["answered_at"]

    status, ending = await api.request("DELETE", f"/calls/{created['id']}")
    assert (status, ending["state"]) == (202, "ending")
    ended = await page.next("ended")
    assert (ended["call"], ended["cause"], ended["code"]) == (created["id"], "normal", 200)
    assert (await api.request("GET", f"/calls/{created['id']}"))[0] == 404
    await until(lambda: gateway.health()["calls"] == 0, "both legs to end")
    assert (await api.request("GET", "/calls"))[1] == {"calls": []}
    counted = scrape(gateway.url + "metrics")
    assert value(counted, "gateway_calls_total", direction="outbound-api", cause="normal") == 1
    assert value(counted, "gateway_call_setup_seconds_count", direction="outbound-api") == 1

    await until(lambda: ("call.ended", "ended") in crm.of(created["id"]), "the operator's call.ended")
    assert crm.of(created["id"]) == [
        ("call.ringing", "incoming"), ("call.answered", "answered"), ("call.ended", "ended"),
    ]
    assert {event["call"]["id"] for event in crm.events} == {created["id"]}, "an operator hears of its own calls only"
    last = crm.events[-1]["call"]
    assert last["end"] == {"cause": "normal", "code": 200, "reason": "Call ended"} and last["ended_at"]
    await until(
        lambda: all(("call.ended", "ended") in everything.of(leg) for leg in legs), "every leg's call.ended for all calls"
    )
    assert everything.of(created["id"]) == crm.of(created["id"])
    assert len({event["id"] for event in everything.events}) == len(everything.events)
    assert everything.bad == crm.bad == []


async def test_the_page_answers_a_click_to_call_and_hears_it_ring_then_connect(
    start_gateway, connect_client, browser: OpenPhone, http
) -> None:
    """The real page in Chromium: the banner says what rings, answering dials bob, who rings, answers and is heard."""
    gateway = start_gateway(_config())
    api, bob = Api(gateway, http), await connect_client(gateway, "bob")
    async with browser(gateway) as phone:
        await phone.sign_in("alice")
        status, call = await api.request("POST", "/calls", json={"user": "alice", "to": "bob"})
        assert status == 201, call
        await phone.wait_state("incoming")
        await expect(phone.page.locator("#incoming-name")).to_have_text("Click-to-call")
        await phone.answer()
        incoming = await bob.next("incoming")
        await phone.wait_state("ringing")
        await bob.answer(incoming["call"], tone_hz=700)
        await phone.wait_state("answered")
        await phone.wait_tone(700)
        await until(_hears(bob, MIC_HZ), f"the page's {MIC_HZ} Hz at bob")
        assert (await api.request("DELETE", f"/calls/{call['id']}"))[0] == 202
        await phone.wait_state("ended")
        assert (await bob.next("ended"))["cause"] == "normal"


async def test_without_a_known_token_nothing_happens(start_gateway, connect_client, http) -> None:
    gateway = start_gateway(_config())
    page = await connect_client(gateway, "alice")
    body = {"user": "alice", "to": "601"}
    for token in (None, "", new_token(), hash_token(TOKEN)):
        status, refused = await Api(gateway, http, token).request("POST", "/calls", json=body)
        assert (status, refused["code"]) == (401, "unauthorized"), token
    status, _ = await Api(gateway, http, None).request("GET", "/calls", headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401
    async with http.get(gateway.url + "api/v1/calls") as reply:
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    await page.send({"type": "ping"})
    assert (await page.next())["type"] == "pong", "the page was not rung"
    assert (await Api(gateway, http).request("GET", "/calls"))[1] == {"calls": []}
    async with http.get(gateway.url + "api/v1/openapi.json") as reply:
        assert reply.status == 200 and (await reply.json())["paths"], "the description is public"


async def test_bad_requests_say_what_is_wrong(start_gateway, connect_client, http) -> None:
    users = "".join(f"[users.{name}]\npassword = '{hash_password('pw')}'\n" for name in ("alice", "bob"))
    gateway = start_gateway(_config() + users)
    page = await connect_client(gateway, "alice", "pw")
    api = Api(gateway, http)
    for body, field in (
        ({"user": "alice"}, "to"),
        ({"user": "alice", "to": 601}, "to"),
        ({"user": "", "to": "601"}, "user"),
        ({"user": "alice", "to": "601", "ring": True}, "ring"),
        ([], "body"),
    ):
        status, refused = await api.request("POST", "/calls", json=body)
        assert (status, refused["code"], refused["field"]) == (400, "bad_request", field), body
        assert refused["message"].startswith(field), refused
    status, refused = await api.request("POST", "/calls", data="{not json", headers={"Content-Type": "application/json"})
    assert (status, refused["field"]) == (400, "body")
    status, refused = await api.request("POST", "/calls", data="user=alice&to=601")
    assert (status, refused["field"]) == (415, "body")
    for method in ("GET", "DELETE"):
        status, refused = await api.request(method, "/calls/0123456789abcdef")
        assert (status, refused["code"]) == (404, "no_such_call")
    status, refused = await api.request("POST", "/calls", json={"user": "bob", "to": "601"})
    assert (status, refused["code"], refused["message"]) == (409, "not_signed_in", "bob is not signed in on any page of this gateway")
    status, refused = await api.request("POST", "/calls", json={"user": "carol", "to": "601"})
    assert (status, refused["code"], refused["field"]) == (400, "no_such_user", "user")
    status, refused = await api.request("POST", "/calls", json={"user": "alice", "to": "sip:someone@192.0.2.1"})
    assert (status, refused["code"], refused["message"]) == (403, "rejected", "You are not allowed to call sip: addresses")
    await page.send({"type": "ping"})
    assert (await page.next())["type"] == "pong", "no refused request rang the page"


async def test_a_delivery_is_tried_again_after_5xx_with_the_same_id_and_not_after_4xx(receivers) -> None:
    receiver = await receivers(SECRET, answers=(503, 204, 400, 204))
    webhooks = Webhooks(ApiConfig(webhook_url=receiver.url, webhook_secret=SECRET, webhook_attempts=3))
    await webhooks.start()
    try:
        engine = Engine(LocalLink(lambda command: None))
        call = ControlCall("c1", CallState.ANSWERED, engine, "inbound", "sip:bob@192.0.2.1", "alice", user="alice")
        for event in ("answered", "ended", "ringing"):
            webhooks.call_event(event, call)
        await until(lambda: len(receiver.events) == 2, "two events taken")
    finally:
        await webhooks.stop()
    assert [event["type"] for event in receiver.events] == ["call.answered", "call.ringing"]
    assert receiver.ids[0] == receiver.ids[1] == receiver.events[0]["id"], "the retry carried the same id"
    assert len(receiver.ids) == 4 and len(set(receiver.ids)) == 3, "the 400 was not tried again"
    assert receiver.bad == []


def _closed_port() -> int:
    """A port nothing listens on: the kernel's free port, let go at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_receivers_that_hang_or_are_down_do_not_hold_up_calls(start_gateway, connect_client, receivers, http) -> None:
    hanging = await receivers(SECRET, hang=True)
    down = f"http://127.0.0.1:{_closed_port()}/hooks"
    gateway = start_gateway(_config(hanging.url, down, extra="webhook_queue = 2\nwebhook_timeout = 60\n"))
    api, page = Api(gateway, http), await connect_client(gateway, "alice")
    for _ in range(2):
        call = await _click_to_call(api, page, "601")
        await until(_hears(page, 440), "440 Hz on the page")
        assert (await api.request("DELETE", f"/calls/{call['id']}"))[0] == 202
        await page.next("ended")
        await page.hang_up_media()
    assert hanging.posts == 1 and hanging.events == [], "the first event is still waiting for an answer"
    await until(lambda: "webhook for all calls: 2 events wait already; dropped" in gateway.log(), "a full queue's log line")
    await until(lambda: "webhook for crm: call.ringing of call" in gateway.log(), "a retry of the down receiver")
    assert "failed (Cannot connect to host" in gateway.log()
