"""Media engines as worker processes behind the gateway's own Kamailio front.

Every test runs the real thing: ``python -m gateway`` with ``[engines]
workers``, which starts Kamailio (Debian's package) and the worker
processes; browser stand-ins (aiortc) and SIP peers (sipp, baresip) call
through them, and audio is checked by its frequency.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from gateway.config import load
from gateway.front import Front
from . import peers, proctree
from .audio import dominant_frequency, has_tone, tone_snr_db
from .conftest import PHONE_HZ
from .peers import sipp
from .peers.baresip import Baresip
from .webclient import RATE, WebClient


@pytest.mark.parametrize("media", ["native", "python"])
async def test_ten_calls_over_three_workers_each_keep_their_own_tone(start_gateway, tmp_path: Path, media: str) -> None:
    gateway = start_gateway(f'[engines]\nworkers = 3\nmedia = "{media}"\n')
    clients = []
    with sipp.echo_uas(tmp_path / "echo") as phone:
        try:
            for i in range(10):
                client = WebClient(gateway.url)
                clients.append(client)
                await client.connect()
                await client.sign_in(f"user{i}")
                await client.call(phone.uri(f"echo{i}"), tone_hz=400 + 100 * i)
                await client.next("answered", timeout=20)
            engines = gateway.health()["engines"]
            assert sorted(engine["calls"] for engine in engines) == [3, 3, 4], engines
            # The right frequency, and more energy in it than in everything else: twenty
            # Opus legs (ten of them these stand-ins, in this one process) share two cores,
            # and the concealment of late frames costs SNR, not the tone.
            def each_hears_its_own() -> bool:
                return all(
                    has_tone(client.last_heard(1.0), RATE, 400 + 100 * i, min_snr_db=3) for i, client in enumerate(clients)
                )

            try:
                await peers.net.wait_for_async(each_hears_its_own, 20, interval=0.2)
            except TimeoutError:
                heard = [
                    f"{dominant_frequency(c.last_heard(1.0), RATE):.0f} Hz {tone_snr_db(c.last_heard(1.0), RATE, 400 + 100 * i):.1f} dB"
                    for i, c in enumerate(clients)
                ]
                raise AssertionError(f"a call lost its own tone: {heard}") from None
        finally:
            for client in clients:
                await client.close()


async def call_on_each_worker(gateway, alice: WebClient, bob: WebClient, phone: Baresip, echo: sipp.Sipp) -> list[dict]:
    """alice calls the phone (700 Hz), bob the echo (900 Hz), one call per worker; the engines as /health has them."""
    await alice.call(phone.uri, tone_hz=700)
    await alice.next("answered", timeout=20)
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED")
    await bob.call(echo.uri("echo"), tone_hz=900)
    await bob.next("answered", timeout=20)
    engines = gateway.health()["engines"]
    assert [engine["calls"] for engine in engines] == [1, 1], engines
    return engines


@pytest.mark.parametrize("media", ["native", "python"])
async def test_a_killed_worker_ends_its_calls_on_both_legs_and_comes_back(
    start_gateway, connect_client, phone: Baresip, tmp_path: Path, media: str
) -> None:
    """With native media the relay runs in the worker: killing it ends that worker's calls, nothing else."""
    gateway = start_gateway(f'[engines]\nworkers = 2\nmedia = "{media}"\n')
    alice, bob = await connect_client(gateway, "alice"), await connect_client(gateway, "bob")
    with sipp.echo_uas(tmp_path / "echo") as echo:
        engines = await call_on_each_worker(gateway, alice, bob, phone, echo)
        alice_worker = gateway.workers()[engines[0]["sip"]]
        await alice.wait_tone(PHONE_HZ)

        os.kill(alice_worker, signal.SIGKILL)

        ended = await alice.next("ended", timeout=10)
        assert ended["cause"] == "failed" and "engine" in ended["reason"]
        await asyncio.to_thread(phone.wait_event, "CALL_CLOSED", 10)  # the BYE came from the front
        await bob.wait_tone(900)  # the other worker's call keeps its audio
        await peers.net.wait_for_async(lambda: len(gateway.workers()) == 2 and alice_worker not in gateway.workers().values(), 20)
        await peers.net.wait_for_async(lambda: len(gateway.worker_starts()) == 3, 20)
        carol = await connect_client(gateway, "carol")
        await carol.call("601")
        await carol.next("answered", timeout=20)
        await carol.wait_tone(440)


def hears_since(client: WebClient, since: float, freq: float) -> bool:
    """A whole second heard after ``since``, its latest, with ``freq`` dominant."""
    heard = client.heard_since(since)
    return len(heard) >= RATE and has_tone(heard[-RATE:], RATE, freq)


def mapped(pid: int, name: str) -> bool:
    return name in Path(f"/proc/{pid}/maps").read_text()


async def test_sip_runs_in_lean_processes_and_one_that_dies_ends_only_its_engines_calls(
    start_gateway, connect_client, tmp_path: Path
) -> None:
    """With native media each engine's pjsua2 is a process of its own, with no aiortc, av or relay in it;
    engines share a worker per core.  A SIP process killed mid-call ends its engine's call on both legs;
    the call of another engine in the same worker keeps its audio, and the engine comes back."""
    count = 2 * (os.cpu_count() or 1)  # at least two engines in every worker
    gateway = start_gateway(f"[engines]\nworkers = {count}\n")
    clients: list[WebClient] = []
    with sipp.echo_uas(tmp_path / "echo") as echo:
        on: dict[int, str] = {}  # client -> the SIP address of its engine
        while len(set(gateway.workers()[address] for address in on.values())) == len(on):  # until two share a worker
            client = await connect_client(gateway, f"user{len(clients)}")
            await client.call(echo.uri(f"echo{len(clients)}"), tone_hz=500 + 100 * len(clients))
            await client.next("answered", timeout=20)
            busy = {engine["sip"] for engine in gateway.health()["engines"] if engine["calls"]}
            on[len(clients)] = (busy - set(on.values())).pop()
            clients.append(client)
        victim = next(i for i in on if [gateway.workers()[a] for a in on.values()].count(gateway.workers()[on[i]]) > 1)
        address = on[victim]
        sip_process, worker = gateway.sip_processes()[address], gateway.workers()[address]
        assert sip_process != worker
        assert mapped(worker, "_mediarelay") and mapped(worker, "libavcodec")
        assert not mapped(sip_process, "_mediarelay") and not mapped(sip_process, "libavcodec")
        assert mapped(sip_process, "_pjsua2")
        dialogs, workers = len(gateway.front_rpc("dlg.list")), set(gateway.workers().values())
        await clients[victim].wait_tone(500 + 100 * victim)

        os.kill(sip_process, signal.SIGKILL)
        killed = time.monotonic()

        ended = await clients[victim].next("ended", timeout=10)
        assert ended["cause"] == "failed" and "engine" in ended["reason"], ended
        await peers.net.wait_for_async(lambda: len(gateway.front_rpc("dlg.list")) == dialogs - 1, 10)  # its BYE
        for i, client in enumerate(clients):  # the same worker's other engine, and the rest, still heard
            if i != victim:
                await peers.net.wait_for_async(lambda: hears_since(client, killed, 500 + 100 * i), 10)
        await peers.net.wait_for_async(lambda: gateway.sip_processes()[address] != sip_process, 20)
        await peers.net.wait_for_async(lambda: gateway.front_states()[address] == "A", 20)
        assert {pid for _, pid, _ in gateway.worker_starts()} == workers, "a worker process was started again"
        again = await connect_client(gateway, "again")
        await again.call("601")
        await again.next("answered", timeout=20)
        await again.wait_tone(440)


async def test_an_invite_flood_through_the_front_is_throttled_and_harms_no_call(
    start_gateway, connect_client, tmp_path: Path
) -> None:
    gateway = start_gateway("[engines]\nworkers = 2\n")
    alice = await connect_client(gateway, "alice")
    before = dict(gateway.workers())
    with sipp.echo_uas(tmp_path / "echo") as echo:
        await alice.call(echo.uri("echo"), tone_hz=700)
        await alice.next("answered", timeout=20)
        await alice.wait_tone(700)
        memory_before = proctree.pss(proctree.tree(gateway.process.pid))
        flood = sipp.Sipp(
            tmp_path / "flood", "flood", ["-sf", str(sipp.SCENARIOS / "uac_final.xml")],
            remote=gateway.sip_address, variables={"ruri": gateway.uri("nobody")},
            options=["-r", "200", "-m", "2000", "-l", "2000", "-recv_timeout", "3000", "-timeout", "25s"],
        )
        with flood:
            await asyncio.to_thread(flood.result, 40)
        memory_after = proctree.pss(proctree.tree(gateway.process.pid))
        assert gateway.workers() == before, "a worker died or restarted under the flood"
        assert has_tone(alice.last_heard(1.0), RATE, 700), "the call in progress lost its audio"
        assert memory_after - memory_before < 100, f"memory grew from {memory_before:.0f} to {memory_after:.0f} MiB"
        rows = flood.log_path("_shortmessages.log").read_text().splitlines()
        invites = {row.split("\t")[4] for row in rows if "\tS\t" in row and "INVITE sip:" in row}
        finals = {row.split("\t")[4] for row in rows if "\tR\t" in row and re.search(r"SIP/2.0 [2-6]\d\d", row)}
        assert len(invites) >= 1500
        assert len(finals) < len(invites) / 2, f"{len(finals)} of {len(invites)} flood INVITEs got an answer: not throttled"
        bob = await connect_client(gateway, "bob")
        await bob.call("601")
        await bob.next("answered", timeout=20)


async def test_a_full_worker_leaves_the_rotation_until_a_call_ends(start_gateway, connect_client, tmp_path: Path) -> None:
    gateway = start_gateway("[engines]\nworkers = 2\n[sip]\nmax_calls = 1\n")
    alice = await connect_client(gateway, "alice")
    with sipp.echo_uas(tmp_path / "echo") as echo:
        call = await alice.call(echo.uri("echo"), tone_hz=700)
        await alice.next("answered", timeout=20)
        busy = next(engine["sip"] for engine in gateway.health()["engines"] if engine["calls"])
        await peers.net.wait_for_async(lambda: gateway.front_states()[busy] == "I", 5)
        for attempt in range(3):  # new calls go to the other worker
            result = await asyncio.to_thread(sipp.uac(tmp_path / f"in{attempt}", gateway.uri("601"), hold_ms=200).run, 15)
            assert result.final_status == 200
        await alice.send({"type": "hangup", "call": call})
        await alice.next("ended")
        await peers.net.wait_for_async(lambda: gateway.front_states()[busy] == "A", 5)


def test_the_front_configuration_is_valid_kamailio(tmp_path: Path) -> None:
    """What `--write-front` writes, with trunks to exempt and a public address, passes `kamailio -c`."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[sip]\nport = 5060\npublic_host = "203.0.113.7"\n[engines]\nworkers = 2\n'
        '[dialplan]\ncountry = "GB"\n[[trunks]]\nname = "carrier"\nhost = "127.0.0.2:5060"\n'
    )
    front = tmp_path / "front"
    told = subprocess.run(
        [sys.executable, "-m", "gateway", "-c", str(path), "--write-front", str(front)], capture_output=True, text=True
    )
    assert told.returncode == 0 and "kamailio -DD -E -f" in told.stdout, told.stderr
    written = (front / "kamailio.cfg").read_text()
    secret = re.search(r'rpc_secret = "([^"]+)"', told.stdout).group(1)
    assert f"!RPC_SECRET!{secret}!" in written, "the secret printed for other gateways is not the one written"
    assert (front / "kamailio.cfg").stat().st_mode & 0o077 == 0, "others could read the RPC secret"
    assert 'if ($si == "127.0.0.2") return 1;' in written
    assert "advertise 203.0.113.7:5060" in written
    assert (front / "dispatcher.list").exists()
    check = subprocess.run(["kamailio", "-c", "-f", str(front / "kamailio.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]


async def test_a_call_ringing_on_a_killed_worker_ends_for_the_sip_caller_at_once(
    start_gateway, connect_client, tmp_path: Path
) -> None:
    gateway = start_gateway("[engines]\nworkers = 1\n")
    bob = await connect_client(gateway, "bob")
    caller = sipp.uac(tmp_path / "caller", gateway.uri("bob"), answer_timeout_s=60)
    with caller:
        await bob.next("incoming", timeout=10)
        os.kill(next(iter(gateway.workers().values())), signal.SIGKILL)
        ended = await bob.next("ended", timeout=10)
        assert ended["cause"] == "failed"
        assert (await asyncio.to_thread(caller.result, 10)).final_status == 500


async def test_the_front_answers_malformed_requests_with_400(start_gateway) -> None:
    gateway = start_gateway("[engines]\nworkers = 1\n")
    broken = {"CSeq": "one OPTIONS", "Max-Forwards": "many", "Expires": "soon", "From": "not a uri;tag=x"}
    for header, value in broken.items():
        status = await asyncio.to_thread(sipp.send_request, gateway.uri("alice"), headers={header: value})
        assert status == 400, f"{header}: {value} got {status}"
    assert await asyncio.to_thread(sipp.send_request, f"sip:{gateway.sip_address}") == 200


async def test_the_fronts_json_rpc_wants_the_gateways_secret(start_gateway) -> None:
    gateway = start_gateway("[engines]\nworkers = 1\n")
    for secret in ("", "not-the-secret-at-all"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(gateway.front_rpc, "dlg.list", secret)
        assert refused.value.code == 403
    assert list(gateway.front_states().values()) == ["A"]


async def test_the_front_starts_from_a_relative_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``state_dir`` is ".gateway" by default: Kamailio, started in its folder, must still find its files."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gateway.toml").write_text("[engines]\nworkers = 2\n")
    front = Front(load(tmp_path / "gateway.toml"))
    await front.start(Path(".gateway/front"))
    try:
        assert "kamailio" in str(await front.rpc("core.version")).lower()
    finally:
        await front.stop()
