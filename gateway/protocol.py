"""Parsing and checking the page's messages (the protocol is in docs/protocol.md).

A message that fails any check raises :class:`ProtocolError` with a sentence
saying what is wrong; nothing else happens for it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable

MAX_MESSAGE_BYTES = 64 * 1024
MAX_DEPTH = 8
"""Arrays and objects inside each other; the protocol needs 1, json.loads recurses on each."""
VERSION = 1

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_DIGITS = re.compile(r"^[0-9*#A-Da-d]{1,32}$")
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class ProtocolError(Exception):
    """The message is not valid protocol; ``request_id`` is echoed when known."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclasses.dataclass(frozen=True)
class Request:
    type: str
    id: str | None
    fields: dict[str, Any]


def _text(limit: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and 0 < len(value) <= limit


def _string(limit: int) -> Callable[[Any], bool]:
    """A string that may be empty: its content is checked where a clearer message can name the problem."""
    return lambda value: isinstance(value, str) and len(value) <= limit


def _sdp(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("v=0") and len(value) <= 32 * 1024


_FIGURE_LIMITS = {"jitter_ms": 3_600_000.0, "loss_pct": 100.0, "rtt_ms": 3_600_000.0}


def _figures(value: Any) -> bool:
    """A leg's quality as the page measured it: some of ``_FIGURE_LIMITS``, each a number from 0 to its limit."""
    return isinstance(value, dict) and all(
        name in _FIGURE_LIMITS and isinstance(figure, (int, float)) and not isinstance(figure, bool)
        and 0 <= figure <= _FIGURE_LIMITS[name]
        for name, figure in value.items()
    )


_call_id = _text(64)
_SCHEMA: dict[str, dict[str, tuple[Callable[[Any], bool], bool, str]]] = {
    # field: (check, required, what it must be)
    "sign_in": {"user": (_text(64), True, "a user name"), "password": (_text(1024), False, "a string")},
    "sign_out": {},
    "call": {
        "to": (_text(256), True, "a number, user name or sip: URI"),
        "sdp": (_sdp, True, "an SDP offer"),
        "transfer_of": (_call_id, False, "a call id"),
    },
    "answer": {"call": (_call_id, True, "a call id"), "sdp": (_sdp, True, "an SDP offer")},
    "decline": {"call": (_call_id, True, "a call id")},
    "hangup": {"call": (_call_id, True, "a call id")},
    "dtmf": {
        "call": (_call_id, True, "a call id"),
        "digits": (lambda v: isinstance(v, str) and bool(_DIGITS.match(v)), True, "1-32 of 0-9 * # A-D"),
    },
    "hold": {"call": (_call_id, True, "a call id")},
    "stats": {
        "call": (_call_id, True, "a call id"),
        "browser": (_figures, False, "an object of jitter_ms, loss_pct (0-100) and rtt_ms, numbers from 0"),
    },
    "resume": {"call": (_call_id, True, "a call id")},
    "save_contact": {
        # Lengths and characters are checked by gateway.contacts, which names the field for the page.
        "contact": (_text(32), False, "a contact id"),
        "name": (_string(256), True, "a string"),
        "number": (_string(512), True, "a string"),
        "favourite": (lambda v: isinstance(v, bool), False, "true or false"),
    },
    "delete_contact": {"contact": (_text(32), True, "a contact id")},
    "clear_history": {},
    "record": {"call": (_call_id, True, "a call id"), "on": (lambda v: isinstance(v, bool), True, "true or false")},
    "recordings": {},
    "mailbox_play": {"entry": (_call_id, True, "a mailbox entry id")},
    "mailbox_heard": {"entry": (_call_id, True, "a mailbox entry id")},
    "mailbox_delete": {"entry": (_call_id, True, "a mailbox entry id")},
    "transfer": {
        "call": (_call_id, True, "a call id"),
        "to": (_text(256), False, "a number, user name or sip: URI"),
        "to_call": (_call_id, False, "a call id"),
    },
    "ping": {},
}


def _nests_deeper(raw: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit``: checked before json.loads can recurse."""
    depth = 0
    for token in _STRING_OR_BRACKET.finditer(raw):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif bracket in ("]", "}"):
            depth -= 1
    return False


def load_object(raw: str) -> dict[str, Any]:
    """A JSON object of at most MAX_MESSAGE_BYTES and MAX_DEPTH levels (a frame, or a REST API body)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    if _nests_deeper(raw, MAX_DEPTH):
        raise ProtocolError(f"message nests deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(raw)
    except ValueError:
        raise ProtocolError("message is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("message must be a JSON object")
    return data


def parse(raw: str) -> Request:
    """One WebSocket text frame to a checked :class:`Request`."""
    data = load_object(raw)
    request_id = data.get("id")
    if request_id is not None and not (isinstance(request_id, str) and _ID.match(request_id)):
        raise ProtocolError("id must be 1-64 of A-Z a-z 0-9 _ . : -")
    kind = data.get("type")
    schema = _SCHEMA.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ProtocolError(f"unknown message type {str(kind)[:32]!r}", request_id)
    fields: dict[str, Any] = {}
    for name, (check, required, what) in schema.items():
        if name not in data:
            if required:
                raise ProtocolError(f"{kind}: missing {name!r}", request_id)
            continue
        if not check(data[name]):
            raise ProtocolError(f"{kind}: {name!r} must be {what}", request_id)
        fields[name] = data[name]
    return Request(kind, request_id, fields)
