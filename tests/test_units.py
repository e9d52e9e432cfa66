"""Small pure pieces: end causes, call states, engine messages, passwords, configuration."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from pathlib import Path

import pytest

from gateway import endcause, engineapi, logs
from gateway.apitokens import TokenChecker, hash_token, new_token
from gateway.callstate import CallState, can_move
from gateway.config import ConfigError, load, recording_dir, worker_count
from gateway.dialplan import load_plan
from gateway.control import CallControl, RequestError
from gateway.passwords import hash_password, is_password_hash, verify_password
from gateway.supervisor import Supervisor
from gateway.transfer import FarEnd, refer_refusal
from gateway.turn import turn_server

from .fakes import FakeLink, FakePage


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


def test_the_fronts_timeout_for_a_silent_target_reads_as_not_responding() -> None:
    assert endcause.from_sip(408, "Not Responding") == endcause.NOT_RESPONDING
    assert endcause.from_sip(408, "Request Timeout").cause == "no_answer"


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
        (CallState.INCOMING, CallState.CALLING, True),
        (CallState.ANSWERING, CallState.CALLING, False),
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
        engineapi.Dial("c1", (("", "sip:600@127.0.0.1"), ("carrier", "+4420")), "v=0", "alice", "2001", "Alice Smith"),
        engineapi.Hangup("c1"),
        engineapi.Ended("c1", "busy", 486, "Busy"),
        engineapi.Incoming("c2", "alice", "sip:bob@h", "Bob", ""),
        engineapi.TrunkState("carrier", False, 403, "Forbidden"),
        engineapi.Reject("c2", 480, "Not available", ("alice", "bob")),
        engineapi.EngineReady("127.0.0.1:5071", 4),
        engineapi.Transfer("c1", "carrier", "+4420"),
        engineapi.Transfer("c1", replacing="c3"),
        engineapi.TransferVerdict("c1", False, "no"),
        engineapi.TransferAsked("c1", "sip:601@h"),
        engineapi.Transferred("c1", "sip:601@h", "Tone"),
        engineapi.TransferStatus("c1", 603, "Declined"),
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
    assert is_password_hash(first)
    for placeholder in ("scrypt$16384$8$1$REPLACE$REPLACE", "scrypt$16384$8$1$$", "scrypt$1000$8$1$c2FsdA==$aGFzaA=="):
        assert not is_password_hash(placeholder)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[http]\nport = 'x'\n", "http.port must be int"),
        ("[http]\nprot = 1\n", "unknown key http.prot"),
        ("[sip]\nmax_calls = 9\n", "sip.max_calls must be 1-4"),
        ("[sip]\nport = 70000\n", "sip.port must be 0-65535"),
        (
            "[dialplan]\ncountry = 'GB'\n" + "".join(f"[[trunks]]\nname = 't{n}'\nhost = 'pbx{n}'\n" for n in range(8)),
            "8 trunks, but a media engine holds at most 7",
        ),
        ("[sip\n", "Expected"),
        ("colour = 1\n", "unknown key 'colour'"),
        ("[users.alice]\npassword = 'plain'\n", "users.alice.password"),
        ("[users]\n'Bad Name' = 'scrypt$x'\n", "a user name is"),
        ("[users.alice]\npassword = 'scrypt$16384$8$1$REPLACE$REPLACE'\n", "users.alice.password: .* is not a usable hash"),
        ("[webrtc]\nice_servers = [{ username = 'u' }]\n", "needs urls"),
        ("[calls]\nring_timeout = 0\n", "must be positive"),
        ("[sip]\nno_response_timeout = 0\n", "sip.no_response_timeout must be above 0 and at most 32"),
        ("[sip]\nno_response_timeout = 40.0\n", "sip.no_response_timeout must be above 0 and at most 32"),
        ("[engines]\nworkers = -1\n", "must not be negative"),
        ("[engines]\nmedia = 'fast'\n", "engines.media must be"),
        ("[front]\nhost_id = 100\n", "front.host_id must be 1-99"),
        ("[front]\nrpc_url = 'http://front:5080/RPC'\n", "go together"),
        ("[front]\nrpc_url = 'http://front:5080/RPC'\naddress = 'front:5060'\n", "need front.rpc_secret"),
        ("[front]\nrpc_secret = 'short'\n", "front.rpc_secret must be at least 16"),
        ("[front]\nrpc_secret = 'has \"quotes\" in it, sixteen+'\n", "front.rpc_secret must be at least 16"),
        ("[api]\ntokens = [{ name = 'crm' }]\n", r"api.tokens\[0\] needs a name and a hash"),
        ("[api]\ntokens = [{ name = 'crm', hash = 'secret' }]\n", r"api.tokens\[0\].hash must be a unique"),
        ("[api]\ntokens = [{ name = 'crm', hash = 'sha256$x', colour = 'red' }]\n", "unknown key 'colour'"),
        ("[api]\ntokens = ['crm']\n", r"api.tokens\[0\] must be a table"),
        (f"[[api.tokens]]\nname = 'crm'\nhash = '{'sha256$' + '0' * 64}'\n" * 2, r"api.tokens\[1\].name must be"),
        ("[api]\nwebhook_url = 'https://crm.example.org/hooks'\n", "api: webhook_url and webhook_secret go together"),
        ("[api]\nwebhook_url = 'crm.example.org'\nwebhook_secret = 'sixteen-chars-long'\n", "is not a URL"),
        ("[api]\nwebhook_url = 'https://crm.example.org/'\nwebhook_secret = 'short'\n", "at least 16 characters"),
        ("[api]\nwebhook_queue = 0\n", "api.webhook_queue, api.webhook_timeout and api.webhook_attempts must be positive"),
        ("[recording]\nformats = ['wav', 'flac']\n", "recording.formats: 'flac' is not one of wav, mp3, opus"),
        ("[recording]\nmax_minutes = 0\n", "recording.max_minutes must be above 0"),
        ("[recording]\nenabled = 'yes'\n", "recording.enabled must be bool"),
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


async def test_calls_go_to_the_engine_with_most_room_and_busy_when_none_has_any() -> None:
    control = CallControl(load(None), sip_host="front:5060")
    links = [FakeLink(), FakeLink()]
    full: list[tuple[object, bool]] = []
    control.on_load = lambda link, is_full: full.append((link, is_full))
    for index, link in enumerate(links):
        control.attach(link)
        control.on_event(link, engineapi.EngineReady(f"engine{index}:5071", 2))
    pages = [FakePage() for _ in range(3)]  # a page has two calls at most
    for page in pages:
        await control.sign_in(page, "alice", None)
    calls = [control.place_call(pages[i // 2], "600", "v=0") for i in range(4)]
    assert [len(link.sent) for link in links] == [2, 2]
    assert links[0].sent[0].targets == (("", "sip:600@front:5060"),)  # local calls go through the front
    assert sorted(is_full for _, is_full in full) == [True, True]
    with pytest.raises(RequestError, match="busy"):
        control.place_call(pages[2], "600", "v=0")
    control.on_event(links[1], engineapi.Ended(calls[1], "normal", 200, "Call ended"))
    assert full[-1] == (links[1], False)
    control.place_call(pages[2], "600", "v=0")
    assert len(links[1].sent) == 3


async def test_a_page_has_two_calls_at_most_and_a_third_caller_gets_busy() -> None:
    """Call waiting: a second call rings a page in a call; a third gets 486 unless another tab has room."""
    control = CallControl(load(None))
    link = FakeLink()
    control.attach(link)
    control.on_event(link, engineapi.EngineReady("127.0.0.1:5071", 8))
    page, other_tab = FakePage(), FakePage()
    await control.sign_in(page, "alice", None)
    control.place_call(page, "600", "v=0")

    def ring(call_id: str) -> object:
        control.on_event(link, engineapi.Incoming(call_id, "alice", f"sip:{call_id}@192.0.2.1", "", ""))
        return link.sent[-1]

    assert ring("waiting") == engineapi.Ring("waiting")
    assert ring("third") == engineapi.Reject("third", 486, endcause.BUSY_HERE.reason)
    with pytest.raises(RequestError) as refused:
        control.place_call(page, "600", "v=0")
    assert refused.value.code == "busy"

    await control.sign_in(other_tab, "alice", None)
    assert ring("other-tab") == engineapi.Ring("other-tab")
    with pytest.raises(RequestError, match="No such call"):
        control.answer(page, "other-tab", "v=0")  # only the tab with room rang
    assert ring("fourth") == engineapi.Ring("fourth")
    assert ring("fifth") == engineapi.Reject("fifth", 486, endcause.BUSY_HERE.reason)
    control.decline(page, "waiting")
    assert ring("sixth") == engineapi.Ring("sixth")


async def test_a_lost_engine_ends_its_calls_for_the_page_only() -> None:
    control = CallControl(load(None))
    first, second = FakeLink(), FakeLink()
    for link in (first, second):
        control.attach(link)
        control.on_event(link, engineapi.EngineReady("127.0.0.1:5071", 4))
    page = FakePage()
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

    async def one_life(host: object) -> None:
        lives.append(len(lives))
        if len(lives) == 1:
            raise RuntimeError("a bug in the supervisor's own code")
        supervisor._stopping = True

    monkeypatch.setattr(supervisor, "_run", one_life)
    await supervisor._keep_running(supervisor._group(native=True)[0])
    assert lives == [0, 1]


def test_native_engines_share_a_worker_per_core_and_python_engines_have_one_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    supervisor = Supervisor(load(None), CallControl(load(None)), front=None, count=5)  # type: ignore[arg-type]
    native = supervisor._group(native=True)
    assert [[worker.index for worker in host.workers] for host in native] == [[0, 2, 4], [1, 3]]
    assert all(host.remote_sip for host in native)
    python = supervisor._group(native=False)
    assert [[worker.index for worker in host.workers] for host in python] == [[0], [1], [2], [3], [4]]
    assert not any(host.remote_sip for host in python)


async def test_a_worker_of_several_engines_labels_each_line_with_its_engine() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.CallFilter())
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("test.engines")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        async def engine(index: int) -> None:
            logs.for_engine(index)
            await asyncio.sleep(0)
            log.info("engine %d", index)

        await asyncio.gather(engine(2), engine(4))
        log.info("the process")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {line["message"]: line.get("worker") for line in lines} == {"engine 2": 2, "engine 4": 4, "the process": None}


def test_api_tokens_are_found_by_their_hash_only_with_bearer() -> None:
    token = new_token()
    checker = TokenChecker({"crm": hash_token(token), "billing": hash_token(new_token())})
    assert checker.operator(f"Bearer {token}") == "crm"
    assert checker.operator(f"bearer  {token} ") == "crm"
    for header in ("", "Bearer", "Bearer ", f"Basic {token}", f"Bearer {token}x", f"Bearer {hash_token(token)}"):
        assert checker.operator(header) is None, header


async def _engine_and_alice(config_text: str = "", tmp_path: Path | None = None) -> tuple[CallControl, FakeLink, FakePage, list[tuple[str, str]]]:
    """Call control with one ready engine, alice signed in on one page (password "x"), and the events it reports."""
    config = load(None)
    if tmp_path is not None:
        (tmp_path / "gateway.toml").write_text(config_text)
        config = load(tmp_path / "gateway.toml")
    control = CallControl(config)
    reported: list[tuple[str, str]] = []
    control.on_call = lambda event, call: reported.append((event, call.state.value))
    link = FakeLink()
    control.attach(link)
    control.on_event(link, engineapi.EngineReady("127.0.0.1:5071", 4))
    page = FakePage()
    await control.sign_in(page, "alice", "x")
    return control, link, page, reported


async def test_click_to_call_rings_the_page_and_dials_only_once_it_answers() -> None:
    control, link, page, reported = await _engine_and_alice()
    call = control.click_to_call("alice", "601", "crm")
    assert link.sent == [], "nothing is dialled before the user answers"
    assert page.messages[-1] == {
        "type": "incoming", "call": call.call_id, "from": "601", "from_name": "Click-to-call", "to": "alice", "dial": "601",
    }
    control.answer(page, call.call_id, "v=0")
    assert link.sent == [engineapi.Dial(call.call_id, (("", "sip:601@127.0.0.1:5071"),), "v=0", "alice", "alice", "alice")]
    for event in (engineapi.Progress(call.call_id, 180, False), engineapi.Answered(call.call_id)):
        control.on_event(link, event)
    assert [message["type"] for message in page.messages[-2:]] == ["ringing", "answered"]
    assert control.end_call(call.call_id) is call
    assert link.sent[-1] == engineapi.Hangup(call.call_id)
    control.on_event(link, engineapi.Ended(call.call_id, "normal", 200, "Call ended"))
    assert reported == [("ringing", "incoming"), ("ringing", "ringing"), ("answered", "answered"), ("ended", "ended")]
    assert call.end == endcause.NORMAL and control.calls() == []


async def test_a_click_to_call_not_answered_ends_without_the_engine() -> None:
    control, link, page, reported = await _engine_and_alice()
    declined, cancelled = control.click_to_call("alice", "601", "crm"), control.click_to_call("alice", "600", "crm")
    control.decline(page, declined.call_id)
    control.end_call(cancelled.call_id)
    assert link.sent == [] and control.calls() == []
    ended = [message for message in page.messages if message["type"] == "ended"]
    assert [(message["call"], message["cause"]) for message in ended] == [
        (declined.call_id, "declined"), (cancelled.call_id, "cancelled"),
    ]
    assert reported.count(("ended", "ended")) == 2


async def test_click_to_call_keeps_the_dialplan_and_needs_the_user_signed_in(tmp_path: Path) -> None:
    users = "".join(f"[users.{name}]\npassword = '{hash_password('x')}'\n" for name in ("alice", "bob"))
    control, link, page, reported = await _engine_and_alice(users, tmp_path)
    for user, to, code in (
        ("carol", "601", "no_such_user"),
        ("bob", "601", "not_signed_in"),
        ("alice", "sip:someone@192.0.2.1", "rejected"),
        ("alice", "alice", "rejected"),
    ):
        with pytest.raises(RequestError) as refused:
            control.click_to_call(user, to, "crm")
        assert refused.value.code == code
    assert link.sent == [] and reported == [] and page.messages == []


def test_recording_dir_is_read_relative_to_the_file_and_defaults_to_the_state_dir(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[recording]\nenabled = true\n")
    assert recording_dir(load(path)) == Path(".gateway") / "recordings"
    path.write_text("[recording]\ndir = 'calls'\n")
    assert recording_dir(load(path)) == tmp_path / "calls"


_TRANSFER_PLAN = load_plan({
    "dialplan": {"country": "GB"},
    "users": {"alice": {"allow": ["national", "sip_uri"]}, "bob": {}},
    "trunks": [{"name": "pbx", "host": "192.0.2.10:5060"}],
    "routes": [{"prefix": "+", "trunks": ["pbx"]}],
})
_PBX = FarEnd(trusted=True, trunk="pbx")


@pytest.mark.parametrize(
    ("far_end", "user", "target", "refusal"),
    [
        (FarEnd(), "alice", "sip:601@192.0.2.1:5070", "only from trunks"),
        (_PBX, "alice", "<sip:601@192.0.2.1:5070>", None),
        (FarEnd(trusted=True), "alice", "sip:bob@192.0.2.1:5070", None),
        (_PBX, "alice", "sip:nobody@192.0.2.1:5070", "no user called nobody"),
        (_PBX, "alice", "sip:+441234567890@192.0.2.10", None),
        (_PBX, "alice", "sip:+12125550123@192.0.2.10:5060;user=phone", "may not call +12125550123"),
        (FarEnd(trusted=True, trunk="other"), "alice", "sip:+441234567890@192.0.2.10", "only trunk pbx itself"),
        (_PBX, "alice", "sip:carol@198.51.100.1", None),
        (_PBX, "bob", "sip:carol@198.51.100.1", "bob may not call sip:carol@198.51.100.1"),
        (_PBX, "alice", "sip:+441234567890@192.0.2.1:5070", "another way"),
        (_PBX, "alice", "tel:+441234567890", "not a sip: address"),
    ],
    ids=[
        "stranger", "builtin", "user", "unknown-user", "trunk-number", "forbidden-number", "not-this-trunk",
        "sip-address", "sip-not-allowed", "number-at-the-gateway", "tel",
    ],
)
def test_a_far_ends_refer_is_obeyed_only_for_what_the_user_may_call_as_the_dialplan_calls_it(
    far_end: FarEnd, user: str, target: str, refusal: str | None
) -> None:
    found = refer_refusal(_TRANSFER_PLAN, far_end, user, target, {"192.0.2.1:5070"})
    assert found is None if refusal is None else refusal in (found or "")
