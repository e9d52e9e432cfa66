"""Small pure pieces: end causes, call states, engine messages, passwords, configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import endcause, engineapi
from gateway.callstate import CallState, can_move
from gateway.config import ConfigError, load, worker_count
from gateway.control import CallControl, RequestError
from gateway.passwords import hash_password, verify_password
from gateway.supervisor import Supervisor
from gateway.turn import turn_server


@pytest.mark.parametrize(
    ("code", "cause"),
    [(200, "normal"), (404, "not_found"), (480, "unavailable"), (486, "busy"), (487, "cancelled"),
     (603, "declined"), (408, "no_answer"), (503, "busy"), (499, "failed"), (0, "network_error")],
)
def test_sip_codes_have_causes_and_words(code: int, cause: str) -> None:
    ended = endcause.from_sip(code)
    assert ended.cause == cause
    assert ended.reason


def test_a_ring_timeout_reads_as_no_answer() -> None:
    assert endcause.from_sip(480, "No Answer").cause == "no_answer"


def test_the_fronts_tls_refusal_says_why() -> None:
    assert endcause.from_sip(503, "No Verified TLS Connection To The Trunk") == endcause.TRUNK_TLS_FAILED
    assert endcause.from_sip(503, "Service Unavailable").cause == "busy"


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (CallState.CALLING, CallState.RINGING, True),
        (CallState.RINGING, CallState.ANSWERED, True),
        (CallState.ANSWERED, CallState.RINGING, False),
        (CallState.INCOMING, CallState.ANSWERED, False),
        (CallState.INCOMING, CallState.ANSWERING, True),
        (CallState.ANSWERED, CallState.ENDING, True),
        (CallState.ENDING, CallState.ENDING, False),
        (CallState.ENDED, CallState.ENDING, False),
    ],
)
def test_call_state_moves(old: CallState, new: CallState, allowed: bool) -> None:
    assert can_move(old, new) is allowed


@pytest.mark.parametrize(
    "message",
    [
        engineapi.Dial("c1", (("", "sip:600@127.0.0.1"), ("carrier", "+4420")), "v=0", "alice"),
        engineapi.Hangup("c1"),
        engineapi.Ended("c1", "busy", 486, "Busy"),
        engineapi.Incoming("c2", "alice", "sip:bob@h", "Bob", ""),
        engineapi.TrunkState("carrier", False, 403, "Forbidden"),
        engineapi.Reject("c2", 480, "Not available", ("alice", "bob")),
        engineapi.EngineReady("127.0.0.1:5071", 4),
    ],
)
def test_engine_messages_survive_json(message: object) -> None:
    assert engineapi.decode(engineapi.encode(message)) == message  # type: ignore[arg-type]


@pytest.mark.parametrize("line", ["{}", "[]", '{"type": "Nope"}', '{"type": "Hangup", "call_id": "c", "x": 1}'])
def test_engine_rejects_foreign_lines(line: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        engineapi.decode(line)


def test_password_hashes_are_salted_and_checked() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second
    assert verify_password("s3cret", first)
    assert not verify_password("wrong", first)
    assert not verify_password("s3cret", "scrypt$broken")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[http]\nport = 'x'\n", "http.port must be int"),
        ("[http]\nprot = 1\n", "unknown key http.prot"),
        ("[sip]\nmax_calls = 9\n", "sip.max_calls must be 1-4"),
        ("[sip]\nport = 70000\n", "sip.port must be 0-65535"),
        ("[sip\n", "Expected"),
        ("colour = 1\n", "unknown key 'colour'"),
        ("[users.alice]\npassword = 'plain'\n", "users.alice.password"),
        ("[users]\n'Bad Name' = 'scrypt$x'\n", "a user name is"),
        ("[webrtc]\nice_servers = [{ username = 'u' }]\n", "needs urls"),
        ("[calls]\nring_timeout = 0\n", "must be positive"),
        ("[engines]\nworkers = -1\n", "must not be negative"),
        ("[engines]\nmedia = 'fast'\n", "engines.media must be"),
        ("[front]\nhost_id = 100\n", "front.host_id must be 1-99"),
        ("[front]\nrpc_url = 'http://front:5080/RPC'\n", "go together"),
        ("[front]\nrpc_url = 'http://front:5080/RPC'\naddress = 'front:5060'\n", "need front.rpc_secret"),
        ("[front]\nrpc_secret = 'short'\n", "front.rpc_secret must be at least 16"),
        ("[front]\nrpc_secret = 'has \"quotes\" in it, sixteen+'\n", "front.rpc_secret must be at least 16"),
    ],
)
def test_configuration_errors_name_file_and_key(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=says) as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_no_file_gives_embedded_defaults() -> None:
    config = load(None)
    assert config.users is None
    assert config.webrtc.ice_servers == []


def test_turn_credentials_follow_coturns_shared_secret_scheme() -> None:
    server = turn_server(["turn:127.0.0.1:3478"], "s3cret", 600, "alice", now=1_000_000)
    assert server["username"] == "1000600:alice"
    # base64(HMAC-SHA1("s3cret", "1000600:alice")), as coturn's use-auth-secret computes it
    assert server["credential"] == "WArXTW1V1HCEEN+krrm2umr8b4c="


@pytest.mark.parametrize(
    ("engines", "cores", "workers"),
    [
        ("", 2, 0),  # the embedded default
        ("capacity = 4", 2, 0),  # one engine carries it
        ("capacity = 5", 2, 2),
        ("capacity = 100", 2, 25),
        ("capacity = 10", 8, 8),  # at least one per core: a process uses one core at most
        ("workers = 3\ncapacity = 100", 2, 3),  # asked for outright
    ],
)
def test_worker_count_follows_capacity_and_cores(tmp_path: Path, engines: str, cores: int, workers: int) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f"[engines]\n{engines}\n")
    assert worker_count(load(path), cores) == workers


class _Link:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, command: object) -> None:
        self.sent.append(command)


class _Page:
    user: str | None = None
    source = "127.0.0.1"

    def send(self, message: dict) -> None:
        pass


async def test_calls_go_to_the_engine_with_most_room_and_busy_when_none_has_any() -> None:
    control = CallControl(load(None), sip_host="front:5060")
    links = [_Link(), _Link()]
    full: list[tuple[object, bool]] = []
    control.on_load = lambda link, is_full: full.append((link, is_full))
    for index, link in enumerate(links):
        control.attach(link)
        control.on_event(link, engineapi.EngineReady(f"engine{index}:5071", 2))
    page = _Page()
    await control.sign_in(page, "alice", None)
    calls = [control.place_call(page, "600", "v=0") for _ in range(4)]
    assert [len(link.sent) for link in links] == [2, 2]
    assert links[0].sent[0].targets == (("", "sip:600@front:5060"),)  # local calls go through the front
    assert sorted(is_full for _, is_full in full) == [True, True]
    with pytest.raises(RequestError, match="busy"):
        control.place_call(page, "600", "v=0")
    control.on_event(links[1], engineapi.Ended(calls[1], "normal", 200, "Call ended"))
    assert full[-1] == (links[1], False)
    control.place_call(page, "600", "v=0")
    assert len(links[1].sent) == 3


async def test_a_lost_engine_ends_its_calls_for_the_page_only() -> None:
    control = CallControl(load(None))
    first, second = _Link(), _Link()
    for link in (first, second):
        control.attach(link)
        control.on_event(link, engineapi.EngineReady("127.0.0.1:5071", 4))
    page = _Page()
    await control.sign_in(page, "alice", None)
    lost, kept = control.place_call(page, "600", "v=0"), control.place_call(page, "600", "v=0")
    assert (first.sent[0].call_id, second.sent[0].call_id) == (lost, kept)
    control.detach(first, endcause.EndCause("failed", 500, "engine stopped"))
    assert control.call_count == 1
    control.hang_up_all()
    assert len(first.sent) == 1, "nothing is sent to a dead engine"
    assert second.sent[-1] == engineapi.Hangup(kept)


async def test_a_worker_whose_life_fails_with_any_error_is_started_again(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(None)
    config.engines.restart_delay = 0.01
    supervisor = Supervisor(config, CallControl(config), front=None, count=1)  # type: ignore[arg-type]
    lives: list[int] = []

    async def one_life(worker: object) -> None:
        lives.append(len(lives))
        if len(lives) == 1:
            raise RuntimeError("a bug in the supervisor's own code")
        supervisor._stopping = True

    monkeypatch.setattr(supervisor, "_run", one_life)
    await supervisor._keep_running(supervisor.workers[0])
    assert lives == [0, 1]
