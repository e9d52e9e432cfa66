"""The dialplan as a table: dialled string in, route out, hostile input included."""

from __future__ import annotations

import pytest

from dialplan import Dialplan, Route

OPEN = Dialplan()
CLOSED = Dialplan(users={"alice", "bob"})


@pytest.mark.parametrize(
    ("plan", "dialled", "action", "target"),
    [
        (OPEN, "600", "local", "600"),
        (OPEN, " 601 ", "local", "601"),
        (OPEN, "6-0-0", "local", "600"),
        (OPEN, "bob", "local", "bob"),
        (CLOSED, "bob", "local", "bob"),
        (OPEN, "sip:bob@127.0.0.1:5070", "sip", "sip:bob@127.0.0.1:5070"),
        (OPEN, "sip:bob@example.com;transport=tcp", "sip", "sip:bob@example.com;transport=tcp"),
        (OPEN, "sip:[::1]:5070", "sip", "sip:[::1]:5070"),
    ],
)
def test_outbound_routes(plan: Dialplan, dialled: str, action: str, target: str) -> None:
    assert plan.outbound(dialled, caller="alice") == Route(action, target)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("plan", "dialled", "code"),
    [
        (OPEN, "", 484),
        (OPEN, "   ", 484),
        (OPEN, "alice", 482),
        (CLOSED, "carol", 404),
        (OPEN, "+44 20 7946 0000", 404),
        (OPEN, "0044 20 7946 0000", 404),
        (OPEN, "1234@evil.example", 484),
        (OPEN, "sip:bob@evil.example>;x", 484),
        (OPEN, "sip:bob@host\r\nVia: x", 484),
        (OPEN, "sip:bob@host:99999", 484),
        (OPEN, "sip:bob@host?Route=x", 484),
        (OPEN, "１２３", 484),
        (OPEN, "x" * 300, 484),
        (OPEN, "600;foo", 484),
        (OPEN, "<script>", 484),
    ],
)
def test_outbound_rejections(plan: Dialplan, dialled: str, code: int) -> None:
    route = plan.outbound(dialled, caller="alice")
    assert route.action == "reject"
    assert route.code == code
    assert route.reason


@pytest.mark.parametrize(
    ("plan", "to_user", "expected"),
    [
        (OPEN, "600", Route("builtin", "echo")),
        (OPEN, "601", Route("builtin", "tone")),
        (OPEN, "alice", Route("user", "alice")),
        (CLOSED, "alice", Route("user", "alice")),
        (CLOSED, "carol", Route.reject(404, "No such user or extension")),
        (OPEN, "", Route.reject(404, "No such user or extension")),
        (OPEN, "Alice%20", Route.reject(404, "No such user or extension")),
    ],
)
def test_inbound_routes(plan: Dialplan, to_user: str, expected: Route) -> None:
    assert plan.inbound(to_user) == expected
