"""Page messages: every malformed shape gets a clear error, valid ones parse."""

from __future__ import annotations

import json

import pytest

from gateway import protocol

OFFER = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"


@pytest.mark.parametrize(
    ("raw", "kind", "fields"),
    [
        ('{"type": "ping"}', "ping", {}),
        ('{"type": "sign_in", "user": "alice", "id": "r1"}', "sign_in", {"user": "alice"}),
        (json.dumps({"type": "call", "to": "600", "sdp": OFFER}), "call", {"to": "600", "sdp": OFFER}),
        ('{"type": "dtmf", "call": "c1", "digits": "12#*"}', "dtmf", {"call": "c1", "digits": "12#*"}),
        ('{"type": "hangup", "call": "c1", "extra": 1}', "hangup", {"call": "c1"}),
        (
            '{"type": "stats", "call": "c1", "browser": {"rtt_ms": 80, "jitter_ms": 2.5, "loss_pct": 100}}',
            "stats", {"call": "c1", "browser": {"rtt_ms": 80, "jitter_ms": 2.5, "loss_pct": 100}},
        ),
        ('{"type": "stats", "call": "c1", "browser": {}}', "stats", {"call": "c1", "browser": {}}),
    ],
)
def test_valid_messages(raw: str, kind: str, fields: dict) -> None:
    request = protocol.parse(raw)
    assert (request.type, request.fields) == (kind, fields)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("", "not JSON"),
        ("{", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('"hello"', "JSON object"),
        ("null", "JSON object"),
        ('{"type": "fly"}', "unknown message type"),
        ('{"type": 7}', "unknown message type"),
        ('{}', "unknown message type"),
        ('{"type": "call", "to": "600"}', "missing 'sdp'"),
        ('{"type": "call", "to": "600", "sdp": "hello"}', "'sdp' must be"),
        ('{"type": "call", "to": "", "sdp": "v=0"}', "'to' must be"),
        ('{"type": "call", "to": 600, "sdp": "v=0"}', "'to' must be"),
        ('{"type": "dtmf", "call": "c1", "digits": "12x"}', "'digits' must be"),
        ('{"type": "hangup", "call": null}', "'call' must be"),
        ('{"type": "ping", "id": {"a": 1}}', "id must be"),
        ('{"type": "stats", "call": "c1", "browser": {"rtt_ms": -1}}', "'browser' must be"),
        ('{"type": "stats", "call": "c1", "browser": {"loss_pct": 101}}', "'browser' must be"),
        ('{"type": "stats", "call": "c1", "browser": {"jitter_ms": "5"}}', "'browser' must be"),
        ('{"type": "stats", "call": "c1", "browser": {"rtt_ms": true}}', "'browser' must be"),
        ('{"type": "stats", "call": "c1", "browser": {"rtt_ms": NaN}}', "'browser' must be"),
        ('{"type": "stats", "call": "c1", "browser": {"mos": 4.5}}', "'browser' must be"),
        ('{"type": "stats", "call": "c1", "browser": [1]}', "'browser' must be"),
        ('{"type": "sign_in", "user": "' + "a" * 100 + '"}', "'user' must be"),
        ("x" * (protocol.MAX_MESSAGE_BYTES + 1), "larger than"),
    ],
)
def test_malformed_messages(raw: str, says: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=says):
        protocol.parse(raw)


def test_error_keeps_the_request_id() -> None:
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.parse('{"type": "call", "id": "r9"}')
    assert caught.value.request_id == "r9"
