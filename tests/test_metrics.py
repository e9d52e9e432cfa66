"""Prometheus metrics and JSON logs, read from a real gateway after real calls.

The built-in extensions make each call two: the page's (outbound) and the
INVITE the gateway sends itself (inbound), both ended normally by a hang-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.hostaddr import own_addresses
from gateway.metrics import Metrics
from gateway.passwords import hash_password

from .audio import has_tone
from .gatewayprocess import GatewayProcess
from .peers import sipp
from .peers.kamailio import Kamailio
from .peers.net import wait_for_async
from .scrape import Samples, scrape, value
from .webclient import RATE, WebClient

PASSWORD = "right"
USERS = f'[http]\nsign_in_delay = 0.05\n\n[users.alice]\npassword = "{hash_password(PASSWORD)}"\n'
BROWSER = {"rtt_ms": 100, "jitter_ms": 10, "loss_pct": 1}
BROWSER_MOS = 4.2716
"""The E-model for BROWSER, by hand: R = 93.2 - (100 + 2 * 10 + 10) / 40 - 2.5 * 1 = 87.45."""

def metrics(gateway: GatewayProcess) -> Samples:
    return scrape(gateway.url + "metrics")


async def until_metric(gateway: GatewayProcess, name: str, expected: float, timeout: float = 10, **labels: str) -> Samples:
    """Poll /metrics until ``name`` (with ``labels``) reaches ``expected``; the samples then."""
    seen: list[float] = []

    def reached() -> Samples | None:
        samples = metrics(gateway)
        seen.append(value(samples, name, **labels))
        return samples if seen[-1] == expected else None

    try:
        return await wait_for_async(reached, timeout)  # type: ignore[return-value]
    except TimeoutError:
        raise AssertionError(f"{name}{labels} stayed {seen[-1:]}, expected {expected}") from None


async def call_until_heard(client: WebClient, to: str, hz: float, sent_hz: float = 0) -> str:
    call = await client.call(to, tone_hz=sent_hz)
    await client.next("answered")
    await wait_for_async(lambda: has_tone(client.last_heard(1.0), RATE, hz), 10)
    return call


async def hang_up(client: WebClient, call: str) -> None:
    await client.send({"type": "hangup", "call": call})
    ended = await client.next("ended")
    assert (ended["call"], ended["cause"]) == (call, "normal")
    await client.hang_up_media()


async def test_calls_their_set_up_quality_engines_and_trunk_are_counted(
    start_gateway: Callable[..., GatewayProcess], connect_client, tmp_path: Path
) -> None:
    with Kamailio(tmp_path / "kam", {"gw": "secret"}) as kam:
        gateway = start_gateway(
            '[dialplan]\ncountry = "GB"\n\n'
            f'[[trunks]]\nname = "kam"\nhost = "127.0.0.1:{kam.port}"\nusername = "gw"\npassword = "secret"\nregister = true\n'
        )
        await until_metric(gateway, "gateway_trunk_registered", 1, trunk="kam")
        client = await connect_client(gateway)
        before = metrics(gateway)
        assert value(before, "gateway_engine_capacity") == 4
        assert value(before, "gateway_calls_in_progress") == 0

        tone = await call_until_heard(client, "601", 440)
        during = metrics(gateway)
        assert value(during, "gateway_calls_in_progress", direction="outbound-dial") == 1
        assert value(during, "gateway_calls_in_progress", direction="inbound") == 1
        assert value(during, "gateway_engine_calls") == 2, "one engine carries both legs of a built-in call"
        await client.send({"type": "stats", "call": tone, "id": "q1", "browser": BROWSER})
        sip = (await client.next("stats"))["sip"]
        assert sip["codec"] in ("PCMU/8000", "PCMA/8000") and 0 <= sip["loss_pct"] <= 100
        assert sip["jitter_ms"] >= 0 and "rtt_ms" not in sip, "the built-in 601 sends no RTCP: no round trip is invented"
        await hang_up(client, tone)
        await until_metric(gateway, "gateway_calls_in_progress", 0)

        echo = await call_until_heard(client, "600", 880, sent_hz=880)
        await client.send({"type": "stats", "call": echo, "id": "q2", "browser": BROWSER})
        await client.next("stats")
        await hang_up(client, echo)
        after = await until_metric(gateway, "gateway_calls_in_progress", 0)

    for direction in ("outbound-dial", "inbound"):
        assert value(after, "gateway_calls_total", direction=direction) == 2
        assert value(after, "gateway_calls_total", direction=direction, cause="normal") == 2
        assert value(after, "gateway_call_setup_seconds_count", direction=direction) == 2
        assert 0 < value(after, "gateway_call_setup_seconds_sum", direction=direction) < 20
    assert value(after, "gateway_engine_calls") == 0
    assert value(after, "gateway_call_mos_count", leg="browser") == 2
    assert value(after, "gateway_call_mos_sum", leg="browser") == pytest.approx(2 * BROWSER_MOS, abs=0.01)
    assert value(after, "gateway_call_rtt_seconds_sum", leg="browser") == pytest.approx(0.2)
    assert value(after, "gateway_call_loss_ratio_count", leg="sip") == 2
    assert value(after, "gateway_call_jitter_seconds_count", leg="sip") == 2
    assert value(after, "gateway_call_rtt_seconds_count", leg="sip") == 0
    assert value(after, "gateway_call_mos_count", leg="sip") == 0, "no MOS without a round trip"


async def test_the_python_media_path_measures_the_sip_legs_jitter_and_it_is_counted(
    start_gateway: Callable[..., GatewayProcess], connect_client
) -> None:
    gateway = start_gateway('[engines]\nmedia = "python"\n')
    client = await connect_client(gateway)
    call = await call_until_heard(client, "601", 440)

    async def sip_figures() -> dict[str, Any] | None:
        await client.send({"type": "stats", "call": call, "id": "q"})
        sip = (await client.next("stats"))["sip"]
        return sip if "jitter_ms" in sip else None

    sip = await wait_for_async(sip_figures, 10)
    assert sip["jitter_ms"] >= 0 and 0 <= sip["loss_pct"] <= 100  # type: ignore[index]
    await hang_up(client, call)
    samples = await until_metric(gateway, "gateway_call_jitter_seconds_count", 1, leg="sip")
    assert value(samples, "gateway_call_loss_ratio_count", leg="sip") == 1
    assert value(samples, "gateway_call_mos_count", leg="browser") == 0, "this page sent no figures of its own"


async def test_refused_sign_ins_invites_and_websockets_are_counted(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    gateway = start_gateway(USERS)
    client = WebClient(gateway.url)
    try:
        await client.connect()
        await client.send({"type": "sign_in", "user": "alice", "password": "wrong"})
        assert (await client.next("error"))["code"] == "auth_failed"
    finally:
        await client.close()
    await until_metric(gateway, "gateway_sign_in_failures_total", 1, reason="password")

    bad_date = {"Date": "Fri, 01 Jan 2010 16:00:00 EST", "Contact": "<sip:probe@127.0.0.1>"}
    status = await asyncio.to_thread(sipp.send_request, gateway.uri("601"), method="INVITE", headers=bad_date, reply_timeout=5)
    assert status == 400
    await until_metric(gateway, "gateway_sip_refused_total", 1, reason="malformed", code="400")

    stranger = await asyncio.to_thread(sipp.uac(tmp_path / "sipp", gateway.uri("alice")).run, 20)
    assert stranger.final_status == 403
    await until_metric(gateway, "gateway_sip_refused_total", 1, reason="dialplan", code="403")

    async with aiohttp.ClientSession() as session:
        ws_url = gateway.url.replace("http", "ws", 1) + "ws"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url, origin="https://elsewhere.example")
        assert refused.value.status == 403
    samples = await until_metric(gateway, "gateway_websockets_refused_total", 1, reason="origin")
    assert value(samples, "gateway_calls_total", direction="inbound", cause="rejected") == 1


def test_metrics_are_only_for_status_from_or_the_status_token(start_gateway: Callable[..., GatewayProcess]) -> None:
    addresses = own_addresses(loopback=False)
    assert addresses, "this test needs a non-loopback interface address"
    gateway = start_gateway('[http]\nstatus_token = "s3cret"\n', http_host="0.0.0.0")
    url = f"http://{addresses[0]}:{gateway.http_port}/metrics"
    for token in ("", "wrong"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(url, token)
        assert refused.value.code == 403
    assert value(scrape(url, "s3cret"), "gateway_engine_capacity") == 4
    assert value(metrics(gateway), "gateway_engine_capacity") == 4, "loopback needs no token"


def json_lines(gateway: GatewayProcess) -> list[dict[str, Any]]:
    """Every log line, each a JSON object; only pjsua's own C-level lines (on stdout) are not."""
    records = []
    for line in gateway.log().splitlines():
        if re.match(r"^\d\d:\d\d:\d\d\.\d{3} ", line):
            continue  # pjsua prints these itself, before the gateway can configure it
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        records.append(record)
    return records


def assert_lines_name_their_call(records: list[dict[str, Any]], call: str) -> list[dict[str, Any]]:
    """Every line about ``call`` carries it as ``call``; those lines."""
    about = [record for record in records if f"call {call}" in record["message"] or f"INVITE {call} " in record["message"]]
    assert about, f"no line about call {call}"
    assert all(record.get("call") == call for record in about), [r for r in about if r.get("call") != call]
    return [record for record in records if record.get("call") == call]


async def test_json_logs_carry_the_call_id_on_a_calls_lines(start_gateway: Callable[..., GatewayProcess], connect_client) -> None:
    gateway = start_gateway(log_format="json")
    client = await connect_client(gateway)
    call = await call_until_heard(client, "601", 440)
    await hang_up(client, call)
    await until_metric(gateway, "gateway_calls_in_progress", 0)
    records = json_lines(gateway)
    mine = assert_lines_name_their_call(records, call)
    loggers = {record["logger"] for record in mine}
    assert {"gateway.control", "gateway.callstate", "gateway.nativemedia"} <= loggers, loggers
    served = {record["call"] for record in records if record.get("call") and record["call"] != call}
    assert len(served) == 1, f"the served leg is one more call: {served}"
    assert_lines_name_their_call(records, served.pop())
    assert any(record["message"].startswith("Web phone: ") for record in records)


async def test_with_workers_call_control_counts_calls_and_restarts(
    start_gateway: Callable[..., GatewayProcess], connect_client
) -> None:
    gateway = start_gateway("[engines]\nworkers = 2\n", log_format="json")
    engines = metrics(gateway)["gateway_engine_capacity"]
    assert sorted(labels["engine"] for labels, _ in engines) == sorted(gateway.workers())
    client = await connect_client(gateway)
    call = await call_until_heard(client, "601", 440)
    await hang_up(client, call)
    samples = await until_metric(gateway, "gateway_calls_in_progress", 0)
    assert value(samples, "gateway_calls_total", cause="normal") == 2
    worker_lines = [record for record in json_lines(gateway) if "worker" in record]
    assert {record["worker"] for record in worker_lines} == {0, 1}
    assert any(record.get("call") == call for record in worker_lines), "a worker's lines about the call carry its id"

    address, pid = next(iter(gateway.workers().items()))
    os.kill(pid, signal.SIGKILL)
    await until_metric(gateway, "gateway_engine_restarts_total", 1, engine=address)
    await until_metric(gateway, "gateway_engine_capacity", 8, timeout=30)


def test_the_grafana_dashboard_shows_every_metric_and_only_those() -> None:
    dashboard = json.loads((Path(__file__).parent.parent / "docker" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    shown = {name for expr in exprs for name in re.findall(r"\b((?:gateway|process)_[a-z_]+)", expr)}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    families = {family.name: suffixes.get(family.type, ("",)) for family in Metrics().registry.collect()}
    exposed = {name + suffix for name, ends in families.items() for suffix in ends}
    assert shown <= exposed, f"not metrics of the gateway: {shown - exposed}"
    unshown = [name for name in families if name.startswith("gateway_") and not any(s.startswith(name) for s in shown)]
    assert not unshown, f"not on the dashboard: {unshown}"
