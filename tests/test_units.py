"""Small pure pieces: end causes, call states, engine messages, passwords, configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import endcause, engineapi
from gateway.callstate import CallState, can_move
from gateway.config import ConfigError, load
from gateway.passwords import hash_password, verify_password
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
