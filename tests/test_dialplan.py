"""The dialplan as a table: dialled string in, route out, hostile input included."""

from __future__ import annotations

import pytest

from gateway.dialplan import PERMISSIONS, CallerId, Dialplan, OutboundRule, Presented, Room, Route, Target, Trunk, User
from gateway.dialplan.patterns import extension_pattern

from .test_dialplan_config import plan_from

OPEN = Dialplan()
CLOSED = Dialplan(users={"alice", "bob"})
PERMISSIONS_ALL = frozenset(PERMISSIONS)


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


# -- phone numbers through trunks ---------------------------------------------

UK = plan_from(
    r"""
    [dialplan]
    country = "GB"
    emergency_trunks = ["carrier", "backup"]

    [groups]
    sales = ["frank"]

    [users.alice]
    allow = ["national", "mobile", "international", "premium", "toll_free", "sip_uri"]
    extension = "2001"
    [users.bob]
    extension = "2002"
    [users.carol]
    allow = []
    [users.dave]
    allow = ["national"]
    [users.frank]
    allow = ["national", "international"]

    [[trunks]]
    name = "carrier"
    host = "sip.example.net"
    number_format = "national"
    tech_prefix = "1234#"
    [[trunks]]
    name = "backup"
    host = "backup.example.net:5080"
    transport = "tcp"
    number_format = "international"

    [[routes]]
    name = "premium"
    prefix = "+449"
    trunks = ["backup"]
    [[routes]]
    name = "france"
    pattern = "^\\+33[1-9]"
    groups = ["sales"]
    trunks = ["backup", "carrier"]
    [[routes]]
    name = "uk"
    prefix = "+44"
    trunks = ["carrier", "backup"]

    [[inbound]]
    did = "+44 20 7946 0000"
    trunk = "carrier"
    group = "sales"
    [[inbound]]
    did = "020 7946 0001"
    user = "alice"
    [[inbound]]
    did = "+442079460002"
    extension = "601"
    [[inbound]]
    did = "*"
    trunk = "backup"
    extension = "2002"
    """
)
LONDON = (Target("carrier", "1234#02079460000"), Target("backup", "00442079460000"))


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("0044 20 7946 0000", Route("trunk", targets=LONDON, number="+442079460000")),
        ("+44 20 7946 0000", Route("trunk", targets=LONDON, number="+442079460000")),
        ("(020) 7946 0000", Route("trunk", targets=LONDON, number="+442079460000")),
        ("020-7946-0000", Route("trunk", targets=LONDON, number="+442079460000")),
        ("020.7946.0000", Route("trunk", targets=LONDON, number="+442079460000")),
        ("020/7946/0000", Route("trunk", targets=LONDON, number="+442079460000")),
        ("\u00a0+44\u00a020 7946 0000 ", Route("trunk", targets=LONDON, number="+442079460000")),
        ("2001", Route("local", "alice")),
        ("20-01", Route("local", "alice")),
        ("alice", Route("local", "alice")),
        ("600", Route("local", "600")),
    ],
)
def test_uk_spellings(dialled: str, expected: Route) -> None:
    assert UK.outbound(dialled, caller="bob") == expected


@pytest.mark.parametrize(
    ("caller", "dialled", "code", "reason"),
    [
        ("bob", "+33 1 42 68 53 00", 403, "You are not allowed to call international numbers"),
        ("bob", "+1 876 555 0123", 403, "You are not allowed to call international numbers"),
        ("bob", "0909 879 0000", 403, "You are not allowed to call premium-rate numbers"),
        ("bob", "070 1234 5678", 403, "You are not allowed to call premium-rate numbers"),
        ("frank", "+33 891 12 34 56", 403, "You are not allowed to call premium-rate numbers"),
        ("dave", "07400 123456", 403, "You are not allowed to call mobile numbers"),
        ("dave", "0800 123 4567", 403, "You are not allowed to call toll-free numbers"),
        ("carol", "020 7946 0000", 403, "You are not allowed to call national numbers"),
        ("bob", "sip:carol@example.com", 403, "You are not allowed to call sip: addresses"),
        ("mallory", "020 7946 0000", 403, "You are not allowed to call national numbers"),
        ("alice", "+33 1 42 68 53 00", 404, "No route for +33142685300"),
        ("alice", "+1 876 555 0123", 404, "No route for +18765550123"),
        ("alice", "020 7946 000", 404, "0207946000 is not a valid number"),
        ("alice", "+999 1234", 404, "+9991234 is not a valid number"),
        ("alice", "*21#", 404, "*21# is not a valid number"),
        ("alice", "2001", 482, "You cannot call yourself"),
        ("alice", "zed", 404, "There is no user called zed"),
    ],
)
def test_permissions_and_refusals(caller: str, dialled: str, code: int, reason: str) -> None:
    assert UK.outbound(dialled, caller) == Route.reject(code, reason)


@pytest.mark.parametrize(
    ("caller", "dialled", "targets"),
    [
        ("bob", "07400 123456", (Target("carrier", "1234#07400123456"), Target("backup", "00447400123456"))),
        ("bob", "0800 123 4567", (Target("carrier", "1234#08001234567"), Target("backup", "00448001234567"))),
        ("alice", "0909 879 0000", (Target("backup", "00449098790000"),)),
        ("frank", "+33 1 42 68 53 00", (Target("backup", "0033142685300"), Target("carrier", "1234#0033142685300"))),
        ("alice", "sip:carol@example.com", None),
    ],
)
def test_allowed_calls_in_failover_order(caller: str, dialled: str, targets: tuple[Target, ...] | None) -> None:
    route = UK.outbound(dialled, caller)
    if targets is None:
        assert route == Route("sip", dialled)
    else:
        assert (route.action, route.targets, route.emergency) == ("trunk", targets, False)


# -- PBX extensions through a trunk ---------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "dialled", "matches"),
    [
        ("_2XXX", "2001", True),
        ("_2XXX", "2999", True),
        ("_2XXX", "200", False),
        ("_2XXX", "20011", False),
        ("_2XXX", "3001", False),
        ("_Z", "0", False),
        ("_Z", "1", True),
        ("_N", "1", False),
        ("_N", "2", True),
        ("_n", "9", True),
        ("_x", "0", True),
        ("_[1-5]", "5", True),
        ("_[1-5]", "6", False),
        ("_[13-5*]X", "*1", True),
        ("_[13-5*]X", "21", False),
        ("_X.", "1", False),
        ("_X.", "12", True),
        ("_X.", "1*#", True),
        ("_X!", "1", True),
        ("_X!", "123", True),
        ("_0X.", "02079460000", True),
        ("_0X.", "+442079460000", False),
        ("_+44X.", "+442079460000", True),
        ("_*XX", "*97", True),
        ("_*XX", "#97", False),
        ("*97", "*97", True),
        ("*97", "*970", False),
        ("*97", "97", False),
        ("_555-XXXX", "5551212", True),
        ("555-1212", "5551212", True),
        ("_#", "#", True),
    ],
)
def test_extension_patterns_match_as_asterisk_reads_them(pattern: str, dialled: str, matches: bool) -> None:
    assert extension_pattern(pattern).matches(dialled) is matches


OFFICE = plan_from(
    """
    [dialplan]
    country = "GB"
    emergency_trunks = ["carrier"]

    [groups]
    desk = ["dave"]

    [users.alice]
    allow = ["national", "mobile", "international"]
    extension = "3001"
    [users.bob]
    extension = "2050"
    [users.carol]
    allow = []
    [users.dave]

    [[trunks]]
    name = "pbx"
    host = "pbx.example.org"
    number_format = "national"
    [[trunks]]
    name = "carrier"
    host = "carrier.example.net"

    [[routes]]
    name = "mobiles"
    prefix = "+447"
    trunks = ["carrier"]
    [[routes]]
    name = "office"
    extensions = ["_2XXX", "_*XX", "_0X."]
    trunks = ["pbx"]
    [[routes]]
    name = "conference"
    extensions = ["601"]
    groups = ["desk"]
    trunks = ["pbx"]
    [[routes]]
    name = "abroad"
    trunks = ["carrier"]
    """
)


def via(trunk: str, number: str, sent: str = "") -> Route:
    return Route("trunk", number=number, targets=(Target(trunk, sent or number),))


@pytest.mark.parametrize(
    ("caller", "dialled", "expected"),
    [
        ("alice", "2001", via("pbx", "2001")),
        ("alice", "20-01", via("pbx", "2001")),
        ("carol", "2001", via("pbx", "2001")),
        ("alice", "*97", via("pbx", "*97")),
        ("alice", "0 20 7946 0000", via("pbx", "02079460000")),
        ("alice", "07400 123456", via("carrier", "+447400123456")),
        ("alice", "+33 1 42 68 53 00", via("carrier", "+33142685300")),
        ("alice", "2050", Route("local", "bob")),
        ("bob", "3001", Route("local", "alice")),
        ("alice", "999", Route("trunk", number="999", targets=(Target("carrier", "999"),), emergency=True)),
        ("dave", "601", via("pbx", "601")),
        ("alice", "601", Route("local", "601")),
        ("alice", "600", Route("local", "600")),
        ("carol", "0 20 7946 0000", Route.reject(403, "You are not allowed to call national numbers")),
        ("alice", "5000", Route.reject(404, "No route for 5000")),
        ("alice", "*9", Route.reject(404, "No route for *9")),
    ],
)
def test_office_extensions_reach_the_pbx(caller: str, dialled: str, expected: Route) -> None:
    """Emergency numbers, then users' own extensions, then routes in order, then the built-ins."""
    assert OFFICE.outbound(dialled, caller) == expected


def test_a_route_that_takes_a_built_in_extension_is_warned_about() -> None:
    assert OFFICE.warnings == ("route 'conference' takes 601 before the built-in tone extension",)
    plan = plan_from(
        '[dialplan]\ncountry = "GB"\nemergency_trunks = ["pbx"]\n[users.alice]\n'
        '[[trunks]]\nname = "pbx"\nhost = "h"\n[[routes]]\nname = "office"\nextensions = ["_X."]\ntrunks = ["pbx"]\n'
    )
    assert plan.warnings == (
        "route 'office' takes 600 before the built-in echo extension",
        "route 'office' takes 601 before the built-in tone extension",
    )
    assert plan.outbound("600", "alice") == via("pbx", "600")


# -- who a call through a trunk is from ------------------------------------------

ALICE = CallerId("2001", "Alice Smith")


@pytest.mark.parametrize(
    ("trunk", "expected"),
    [
        (Trunk("t", "h"), Presented()),
        (Trunk("t", "h", caller_id="user"), Presented(asserted=ALICE)),
        (Trunk("t", "h", caller_id="user", identity_header="pai"), Presented(asserted=ALICE)),
        (Trunk("t", "h", caller_id="user", identity_header="from"), Presented(from_=ALICE)),
        (Trunk("t", "h", caller_id="user", identity_header="both"), Presented(ALICE, ALICE)),
        (Trunk("t", "h", caller_id="trunk", identity_header="both"), Presented()),
    ],
)
def test_trunks_present_the_caller_as_their_policy_says(trunk: Trunk, expected: Presented) -> None:
    assert trunk.presents(ALICE) == expected


@pytest.mark.parametrize(
    ("plan", "caller", "expected"),
    [
        (
            plan_from('[users.alice]\nextension = "2001"\ndisplay_name = "Alice Smith"\n'),
            "alice",
            CallerId("2001", "Alice Smith"),
        ),
        (plan_from('[users.alice]\nextension = "2001"\n'), "alice", CallerId("2001", "alice")),
        (plan_from('[users.alice]\ndisplay_name = "Zoë O\'Brien"\n'), "alice", CallerId("alice", "Zoë O'Brien")),
        (OPEN, "bob", CallerId("bob", "bob")),
    ],
)
def test_a_users_caller_id_is_their_extension_and_display_name(plan: Dialplan, caller: str, expected: CallerId) -> None:
    assert plan.caller_id(caller) == expected


def emergency(number: str, *trunks: str) -> Route:
    return Route("trunk", targets=tuple(Target(trunk, number) for trunk in trunks), number=number, emergency=True)


TRUNK_T = '[[trunks]]\nname = "t"\nhost = "h"\n'
NO_EMERGENCY_TRUNK = "cannot be made from here: no emergency trunk is configured"


@pytest.mark.parametrize(
    ("plan", "caller", "dialled", "expected"),
    [
        (UK, "carol", "999", emergency("999", "carrier", "backup")),
        (UK, "carol", "9 9 9", emergency("999", "carrier", "backup")),
        (UK, "mallory", "112", emergency("112", "carrier", "backup")),
        (UK, "dave", "911", emergency("911", "carrier", "backup")),
        (
            plan_from('[dialplan]\ncountry = "DE"\nemergency_trunks = ["t"]\n' + TRUNK_T),
            "x",
            "110",
            emergency("110", "t"),
        ),
        (
            plan_from('[dialplan]\ncountry = "GB"\nemergency_numbers = ["999"]\nemergency_trunks = ["t"]\n' + TRUNK_T),
            "x",
            "112",
            Route.reject(404, "112 is not a valid number"),
        ),
        (
            plan_from('[dialplan]\ncountry = "GB"\n' + TRUNK_T),
            "x",
            "999",
            Route.reject(404, f"Emergency calls to 999 {NO_EMERGENCY_TRUNK}"),
        ),
        (OPEN, "x", "911", Route.reject(404, f"Emergency calls to 911 {NO_EMERGENCY_TRUNK}")),
        (OPEN, "x", "999", Route.reject(404, "No route for 999: no trunk is configured for phone numbers")),
    ],
)
def test_emergency_calls(plan: Dialplan, caller: str, dialled: str, expected: Route) -> None:
    assert plan.outbound(dialled, caller) == expected


@pytest.mark.parametrize(
    "dialled",
    [
        "１２３",
        "٠١٢",
        "1234@evil.example",
        "600;foo",
        "999;phone-context=x",
        "020 7946 0000\r\n",
        "600\nVia: x",
        "\x00600",
        "020 7946 000a",
        "0800 FLOWERS",
        "+44 20 7946 0000?Route=x",
        "+",
        "++44 20 7946 0000",
        "44+20",
        "9" * 40,
        "9" * 300,
        "sip:bob@example.com?Subject=x",
        "sips:bob@example.com",
        "tel:+442079460000",
        "",
    ],
)
def test_hostile_input_is_refused_cleanly(dialled: str) -> None:
    route = UK.outbound(dialled, caller="alice")
    assert route.action == "reject"
    assert route.code == 484
    assert route.reason and "\n" not in route.reason


@pytest.mark.parametrize(
    ("to_user", "trunk", "expected"),
    [
        ("+442079460000", "carrier", Route("group", "sales", targets=("frank",))),
        ("02079460000", "carrier", Route("group", "sales", targets=("frank",))),
        ("442079460000", "carrier", Route("group", "sales", targets=("frank",))),
        ("+442079460000", "backup", Route("user", "bob")),
        ("+442079460000", None, Route.reject(404, "No such user or extension")),
        ("+442079460001", None, Route("user", "alice")),
        ("02079460001", "backup", Route("user", "alice")),
        ("+442079460002", "carrier", Route("builtin", "tone")),
        ("600", "backup", Route("builtin", "echo")),
        ("2001", None, Route("user", "alice")),
        ("bob", None, Route("user", "bob")),
        ("zed", None, Route.reject(404, "No such user or extension")),
        ("zed", "backup", Route("user", "bob")),
        ("+33142685300", "backup", Route("user", "bob")),
    ],
)
def test_inbound_rules(to_user: str, trunk: str | None, expected: Route) -> None:
    assert UK.inbound(to_user, trunk) == expected


def test_inbound_ignores_the_trunk_argument_without_rules() -> None:
    assert OPEN.inbound("600", "carrier") == Route("builtin", "echo")


FORBIDDEN = Route.reject(403, "Calls from this address are not accepted")
USERS_ONLY = plan_from('[users.alice]\npassword = "x"\n')
TRUSTING = plan_from('[dialplan]\ntrusted_sources = ["192.0.2.0/24", "2001:db8::1"]\n[users.alice]\npassword = "x"\n')


@pytest.mark.parametrize(
    ("plan", "trunk", "source", "expected"),
    [
        (OPEN, None, "203.0.113.9:5060", Route("user", "alice")),
        (USERS_ONLY, None, "203.0.113.9:5060", FORBIDDEN),
        (USERS_ONLY, None, None, Route("user", "alice")),
        (USERS_ONLY, "carrier", "203.0.113.9:5060", Route("user", "alice")),
        (TRUSTING, None, "192.0.2.200:5062", Route("user", "alice")),
        (TRUSTING, None, "192.0.2.200", Route("user", "alice")),
        (TRUSTING, None, "192.0.3.1:5060", FORBIDDEN),
        (TRUSTING, None, "[2001:db8::1]:5060", Route("user", "alice")),
        (TRUSTING, None, "[2001:db8::2]:5060", FORBIDDEN),
        (TRUSTING, None, "not an address", FORBIDDEN),
        (TRUSTING, None, "", FORBIDDEN),
    ],
    ids=[
        "open-anyone", "users-stranger", "users-gateway-itself", "users-trunk", "trusted-net", "trusted-bare",
        "untrusted-net", "trusted-v6", "untrusted-v6", "garbage", "unknown",
    ],
)
def test_who_may_ring_web_users(plan: Dialplan, trunk: str | None, source: str | None, expected: Route) -> None:
    assert plan.inbound("alice", trunk, source) == expected


@pytest.mark.parametrize(
    ("trunk", "dialled", "number"),
    [
        (Trunk("t", "h"), "+44 20 7946 0000", "+442079460000"),
        (Trunk("t", "h", number_format="e164_digits"), "+44 20 7946 0000", "442079460000"),
        (Trunk("t", "h", number_format="international"), "+44 20 7946 0000", "00442079460000"),
        (
            Trunk("t", "h", number_format="international", international_prefix="011"),
            "+44 20 7946 0000",
            "011442079460000",
        ),
        (Trunk("t", "h", number_format="national"), "+44 20 7946 0000", "02079460000"),
        (Trunk("t", "h", number_format="national"), "+33 1 42 68 53 00", "0033142685300"),
        (Trunk("t", "h", number_format="national", international_prefix="011"), "+33 1 42 68 53 00", "01133142685300"),
        (
            Trunk("t", "h", number_format="national", strip_prefix="0", add_prefix="9"),
            "+44 20 7946 0000",
            "92079460000",
        ),
        (
            Trunk("t", "h", number_format="e164_digits", strip_prefix="44", add_prefix="0"),
            "+44 20 7946 0000",
            "02079460000",
        ),
        (
            Trunk("t", "h", number_format="e164_digits", strip_prefix="44", add_prefix="0"),
            "+33 1 42 68 53 00",
            "033142685300",
        ),
        (Trunk("t", "h", strip_prefix="0"), "+44 20 7946 0000", "+442079460000"),
        (Trunk("t", "h", tech_prefix="1234#"), "+44 20 7946 0000", "1234#+442079460000"),
        (
            Trunk("t", "h", number_format="national", add_prefix="9", tech_prefix="*77*"),
            "+44 20 7946 0000",
            "*77*902079460000",
        ),
    ],
)
def test_trunk_number_formats(trunk: Trunk, dialled: str, number: str) -> None:
    plan = Dialplan(
        ["alice"], country="GB", trunks=[trunk], routes=[OutboundRule("all", ("t",))], default_allow=PERMISSIONS_ALL
    )
    assert plan.outbound(dialled, "alice").targets == (Target("t", number),)


def test_open_sign_in_keeps_sip_uris_and_uses_default_allow() -> None:
    plan = Dialplan(None, country="GB", trunks=[Trunk("t", "h")], routes=[OutboundRule("all", ("t",))])
    assert plan.outbound("sip:bob@example.com", "anyone") == Route("sip", "sip:bob@example.com")
    assert plan.outbound("020 7946 0000", "anyone").targets == (Target("t", "+442079460000"),)
    assert plan.outbound("+33 1 42 68 53 00", "anyone") == Route.reject(
        403, "You are not allowed to call international numbers"
    )


def test_configured_users_need_sip_uri_permission() -> None:
    assert CLOSED.outbound("sip:bob@example.com", "alice") == Route.reject(
        403, "You are not allowed to call sip: addresses"
    )
    assert Dialplan([User("alice", frozenset({"sip_uri"}))]).outbound("sip:bob@example.com", "alice") == Route(
        "sip", "sip:bob@example.com"
    )


def test_public_attributes() -> None:
    assert OPEN.users is None
    assert CLOSED.users == frozenset({"alice", "bob"})
    assert list(UK.trunks) == ["carrier", "backup"]
    assert UK.trunks["backup"] == Trunk("backup", "backup.example.net:5080", "tcp", number_format="international")
    assert UK.warnings == ()


ROOMS = plan_from(
    """
[groups]
team = ["alice"]
[users.alice]
[users.bob]
[[rooms]]
name = "standup"
number = "700"
groups = ["team"]
[[rooms]]
name = "lobby"
number = "701"
max_participants = 3
"""
)
STANDUP = Route("room", "standup", number="700")
LOBBY = Route("room", "lobby", number="701")


@pytest.mark.parametrize(
    ("caller", "dialled", "expected"),
    [
        ("alice", "700", STANDUP),
        ("alice", "7-0-0", STANDUP),
        ("bob", "700", Route.reject(403, "You may not join the room standup")),
        ("bob", "701", LOBBY),
        ("alice", "702", Route.reject(404, "No route for 702: no trunk is configured for phone numbers")),
    ],
)
def test_web_users_join_a_room_by_its_number(caller: str, dialled: str, expected: Route) -> None:
    assert ROOMS.outbound(dialled, caller) == expected


@pytest.mark.parametrize(
    ("to_user", "trunk", "source", "expected"),
    [
        ("700", None, None, STANDUP),  # from the gateway itself
        ("701", "carrier", None, LOBBY),
        ("701", None, "198.51.100.7:5060", Route.reject(403, "Calls from this address are not accepted")),
        ("standup", None, None, Route.reject(404, "No such user or extension")),
    ],
)
def test_sip_callers_join_a_room_as_any_inbound_call_is_admitted(
    to_user: str, trunk: str | None, source: str | None, expected: Route
) -> None:
    assert ROOMS.inbound(to_user, trunk, source) == expected


def test_rooms_are_known_by_number_and_name() -> None:
    assert ROOMS.rooms["701"] == Room("lobby", "701", 3)
    assert ROOMS.room("standup") == Room("standup", "700", 8, groups=frozenset({"team"}))
    assert ROOMS.room("nope") is None and OPEN.rooms == {}
