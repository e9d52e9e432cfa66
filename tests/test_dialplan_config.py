"""The dialplan's TOML sections: every mistake named by its key path, every default as documented."""

from __future__ import annotations

import sys

import pytest

from gateway.dialplan import DEFAULT_ALLOW, Dialplan, DialplanError, Route, Trunk, User, load_plan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

GB = '[dialplan]\ncountry = "GB"\n'
CARRIER = '[[trunks]]\nname = "carrier"\nhost = "sip.example.net"\n'
USERS = "[users.alice]\n[users.bob]\n"


def plan_from(text: str) -> Dialplan:
    """The plan a TOML document describes, parsed the way the gateway parses its file."""
    return load_plan(tomllib.loads(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # [dialplan]
        ("dialplan = 1", "dialplan: expected a table, not int"),
        ('[dialplan]\ncontry = "GB"', "dialplan.contry: unknown key (known: country, "),
        ('[dialplan]\ncountry = "XX"', "dialplan.country: 'XX' is not a country code"),
        ('[dialplan]\ncountry = "UK"', "dialplan.country: 'UK' is not a country code"),
        ("[dialplan]\ncountry = 44", "dialplan.country: expected a string, not int"),
        (CARRIER, "dialplan.country: required once [[trunks]] are configured"),
        ("[dialplan]\nemergency_numbers = []", "dialplan.emergency_numbers: must not be empty"),
        ('[dialplan]\nemergency_numbers = ["9-9-9"]', "dialplan.emergency_numbers: '9-9-9' is not a number"),
        ("[dialplan]\nemergency_numbers = [999]", "dialplan.emergency_numbers: expected an array of strings"),
        (
            '[dialplan]\ncountry = "GB"\nemergency_trunks = ["carier"]\n' + CARRIER,
            "dialplan.emergency_trunks: unknown trunk 'carier'",
        ),
        (
            '[dialplan]\ncountry = "GB"\nemergency_trunks = ["carrier", "carrier"]\n' + CARRIER,
            "dialplan.emergency_trunks: trunk 'carrier' is listed twice",
        ),
        (
            '[dialplan]\nextensions = { "600" = "ecko" }',
            "dialplan.extensions.600: unknown application 'ecko' (known: echo, tone)",
        ),
        (
            '[dialplan]\nextensions = { "6a" = "echo" }',
            "dialplan.extensions.6a: '6a' is not an extension (1-16 digits)",
        ),
        ('[dialplan]\nextensions = { "911" = "echo" }', "dialplan.extensions.911: '911' is an emergency number"),
        ('[dialplan]\ndefault_allow = ["intl"]', "dialplan.default_allow: unknown permission 'intl'"),
        # [users]
        ('users = "alice"', "users: expected a table, not str"),
        ("[users.Alice]", "users.Alice: a user name is 1-32 of a-z 0-9 . _ -"),
        ("[users]\nalice = 5", "users.alice: expected a table, not int"),
        (
            '[users.alice]\ncolour = "red"',
            "users.alice.colour: unknown key (known: password, groups, allow, extension, display_name, sip_password)",
        ),
        ('[users.alice]\nallow = ["national", "intl"]', "users.alice.allow: unknown permission 'intl'"),
        ('[users.alice]\nallow = "national"', "users.alice.allow: expected an array, not str"),
        ('[users.alice]\ngroups = ["sails"]', "users.alice.groups: unknown group 'sails'"),
        ("[users.alice]\nextension = 2001", "users.alice.extension: expected a string, not int"),
        ('[users.alice]\nextension = "20a1"', "users.alice.extension: '20a1' is not an extension (1-16 digits)"),
        ('[users.alice]\nextension = "600"', "users.alice.extension: '600' is a built-in extension"),
        (GB + '[users.alice]\nextension = "999"', "users.alice.extension: '999' is an emergency number"),
        (
            '[users.alice]\nextension = "2001"\n[users.bob]\nextension = "2001"',
            "users.bob.extension: '2001' is already alice's extension",
        ),
        ("[users.alice]\ndisplay_name = 7", "users.alice.display_name: expected a string, not int"),
        ('[users.alice]\ndisplay_name = ""', "users.alice.display_name: 1-64 characters, no control characters"),
        ('[users.alice]\ndisplay_name = "Alice\\n"', "users.alice.display_name: 1-64 characters"),
        ('[users.alice]\ndisplay_name = "Alice\\r\\nVia: x"', "users.alice.display_name: 1-64 characters"),
        (f'[users.alice]\ndisplay_name = "{"A" * 65}"', "users.alice.display_name: 1-64 characters"),
        # [groups]
        ('[groups]\nsales = ["carol"]\n' + USERS, "groups.sales: unknown user 'carol'"),
        ('[groups]\nsales = ["alice"]', "groups.sales: unknown user 'alice'"),
        ('[groups]\nsales = "alice"\n' + USERS, "groups.sales: expected an array, not str"),
        ('[groups]\n"sales team" = []', "groups.sales team: 'sales team' is not a name"),
        # [[trunks]]
        ('[trunks]\nname = "carrier"', "trunks: expected an array, not dict"),
        ('trunks = ["carrier"]', "trunks[0]: expected a table, not str"),
        (GB + '[[trunks]]\nhost = "sip.example.net"', "trunks[0].name: required"),
        (GB + '[[trunks]]\nname = "my carrier"\nhost = "h"', "trunks[0].name: 'my carrier' is not a name"),
        (GB + CARRIER + CARRIER, "trunks[1].name: trunk 'carrier' is defined twice"),
        (GB + '[[trunks]]\nname = "carrier"', "trunks[0].host: required"),
        (
            GB + '[[trunks]]\nname = "c"\nhost = "sip.example.net:99999"',
            "trunks[0].host: 'sip.example.net:99999' is not host or host:port",
        ),
        (
            GB + '[[trunks]]\nname = "c"\nhost = "sip example net"',
            "trunks[0].host: 'sip example net' is not host or host:port",
        ),
        (
            GB + '[[trunks]]\nname = "c"\nhost = "sip:carrier@example.net"',
            "trunks[0].host: 'sip:carrier@example.net' is not host or host:port",
        ),
        (GB + CARRIER + 'proxy = "p"', "trunks[0].proxy: unknown key"),
        (GB + CARRIER + 'transport = "sctp"', "trunks[0].transport: 'sctp' is not one of udp, tcp, tls"),
        (GB + CARRIER + 'tls_name = "sip:x"', "trunks[0].tls_name: 'sip:x' is not a host name"),
        (GB + CARRIER + 'srtp = "yes"', "trunks[0].srtp: 'yes' is not one of off, optional, mandatory"),
        (GB + CARRIER + 'username = "gw1"', "trunks[0]: username and password go together"),
        (GB + CARRIER + 'password = "secret"', "trunks[0]: username and password go together"),
        (GB + CARRIER + 'register = "yes"', "trunks[0].register: expected true or false, not str"),
        (GB + CARRIER + "expires = 5", "trunks[0].expires: must be 10-86400 seconds, not 5"),
        (GB + CARRIER + "expires = true", "trunks[0].expires: expected an integer, not bool"),
        (
            GB + CARRIER + 'number_format = "E164"',
            "trunks[0].number_format: 'E164' is not one of e164, e164_digits, international, national",
        ),
        (
            GB + CARRIER + 'international_prefix = "+"',
            "trunks[0].international_prefix: '+' is not an international prefix",
        ),
        (GB + CARRIER + 'caller_id = "users"', "trunks[0].caller_id: 'users' is not one of trunk, user"),
        (
            GB + CARRIER + 'caller_id = "user"\nidentity_header = "PAI"',
            "trunks[0].identity_header: 'PAI' is not one of from, pai, both",
        ),
        (GB + CARRIER + 'identity_header = "pai"', 'trunks[0].identity_header: applies only with caller_id = "user"'),
        (GB + CARRIER + 'tech_prefix = "12a#"', "trunks[0].tech_prefix: '12a#' is not digits, *, # and + only"),
        (GB + CARRIER + 'strip_prefix = "0 "', "trunks[0].strip_prefix: '0 ' is not digits, *, # and + only"),
        (GB + CARRIER + 'add_prefix = "9;x"', "trunks[0].add_prefix: '9;x' is not digits, *, # and + only"),
        # [[routes]]
        (
            GB + CARRIER + '[[routes]]\ntrunks = ["carrier"]\n' * 2 + '[[routes]]\ntrunks = ["carrier", "carier"]',
            "routes[2].trunks: unknown trunk 'carier'",
        ),
        ('[[routes]]\ntrunks = ["carrier"]', "routes[0].trunks: unknown trunk 'carrier'"),
        (GB + CARRIER + '[[routes]]\nprefix = "+44"', "routes[0].trunks: required"),
        (GB + CARRIER + "[[routes]]\ntrunks = []", "routes[0].trunks: required"),
        (GB + CARRIER + '[[routes]]\ntrunks = "carrier"', "routes[0].trunks: expected an array, not str"),
        (
            GB + CARRIER + '[[routes]]\ntrunks = ["carrier", "carrier"]',
            "routes[0].trunks: trunk 'carrier' is listed twice",
        ),
        (
            GB + CARRIER + '[[routes]]\nprefix = "44"\ntrunks = ["carrier"]',
            "routes[0].prefix: '44' is not an E.164 prefix",
        ),
        (
            GB + CARRIER + '[[routes]]\npattern = "(+44"\ntrunks = ["carrier"]',
            "routes[0].pattern: not a regular expression",
        ),
        (
            GB + CARRIER + '[[routes]]\nprefix = "+44"\npattern = "^\\\\+44"\ntrunks = ["carrier"]',
            "routes[0]: set prefix or pattern, not both",
        ),
        (
            GB + CARRIER + '[[routes]]\ntrunks = ["carrier"]\nusers = ["zed"]\n' + USERS,
            "routes[0].users: unknown user 'zed'",
        ),
        (GB + CARRIER + '[[routes]]\ntrunks = ["carrier"]\nusers = ["alice"]', "routes[0].users: unknown user 'alice'"),
        (
            GB + CARRIER + '[[routes]]\ntrunks = ["carrier"]\ngroups = ["sails"]',
            "routes[0].groups: unknown group 'sails'",
        ),
        (
            GB + CARRIER + '[[routes]]\nprefix = "+44"\nextensions = ["_2XXX"]\ntrunks = ["carrier"]',
            "routes[0]: set extensions or prefix/pattern, not both",
        ),
        (GB + CARRIER + "[[routes]]\nextensions = []\ntrunks = [\"carrier\"]", "routes[0].extensions: must not be empty"),
        (
            GB + CARRIER + '[[routes]]\nextensions = "_2XXX"\ntrunks = ["carrier"]',
            "routes[0].extensions: expected an array, not str",
        ),
        (
            GB + CARRIER + '[[routes]]\nextensions = ["_2XY"]\ntrunks = ["carrier"]',
            "routes[0].extensions: '_2XY': 'Y' has no meaning in a pattern",
        ),
        (
            GB + CARRIER + '[[routes]]\nextensions = ["_X.1"]\ntrunks = ["carrier"]',
            "routes[0].extensions: '_X.1': '.' may only end a pattern",
        ),
        (
            GB + CARRIER + '[[routes]]\nextensions = ["_[5-1]"]\ntrunks = ["carrier"]',
            "routes[0].extensions: '_[5-1]': a [...] set lists digits",
        ),
        (
            GB + CARRIER + '[[routes]]\nextensions = ["_[1-5"]\ntrunks = ["carrier"]',
            "routes[0].extensions: '_[1-5': a [...] set lists digits",
        ),
        (
            GB + CARRIER + '[[routes]]\nextensions = ["_[*-5]"]\ntrunks = ["carrier"]',
            "routes[0].extensions: '_[*-5]': a [...] set lists digits",
        ),
        (GB + CARRIER + '[[routes]]\nextensions = ["_"]\ntrunks = ["carrier"]', "routes[0].extensions: '_' is an empty"),
        (
            GB + CARRIER + '[[routes]]\nextensions = ["2001a"]\ntrunks = ["carrier"]',
            "routes[0].extensions: '2001a' is not an extension",
        ),
        (GB + CARRIER + '[[routes]]\ntrunks = ["carrier"]\nvia = "x"', "routes[0].via: unknown key"),
        (
            GB
            + CARRIER
            + '[[routes]]\nname = "uk"\ntrunks = ["carrier"]\n[[routes]]\nname = "uk"\ntrunks = ["carrier"]',
            "routes[1].name: route 'uk' is defined twice",
        ),
        # [[inbound]]
        ('[[inbound]]\nextension = "600"', "inbound[0].did: required"),
        (
            '[[inbound]]\ndid = "0800 FLOWERS"\nextension = "600"',
            "inbound[0].did: '0800 FLOWERS' is not a number, a user name or '*'",
        ),
        ('[[inbound]]\ndid = "*"', "inbound[0]: set exactly one of user, group, extension"),
        (
            '[[inbound]]\ndid = "*"\nextension = "600"\nuser = "alice"\n' + USERS,
            "inbound[0]: set exactly one of user, group, extension",
        ),
        ('[[inbound]]\ndid = "*"\ntrunk = "carier"\nextension = "600"', "inbound[0].trunk: unknown trunk 'carier'"),
        ('[[inbound]]\ndid = "*"\nuser = "zed"\n' + USERS, "inbound[0].user: unknown user 'zed'"),
        ('[[inbound]]\ndid = "*"\nuser = "alice"', "inbound[0].user: unknown user 'alice'"),
        ('[[inbound]]\ndid = "*"\ngroup = "sails"', "inbound[0].group: unknown group 'sails'"),
        (
            '[groups]\nempty = []\n[[inbound]]\ndid = "*"\ngroup = "empty"',
            "inbound[0].group: group 'empty' has no members",
        ),
        ('[[inbound]]\ndid = "*"\nextension = "700"', "inbound[0].extension: unknown extension '700'"),
        ('[[inbound]]\ndid = "*"\nextension = 600', "inbound[0].extension: expected a string, not int"),
        ('[[inbound]]\ndid = "*"\nqueue = "q"', "inbound[0].queue: unknown key"),
        # who may ring web users
        ('[dialplan]\ninbound_from = "everyone"', "dialplan.inbound_from: 'everyone' is not one of anyone, trunks"),
        ('[dialplan]\ntrusted_sources = ["10.0.0.0/33"]', "dialplan.trusted_sources: '10.0.0.0/33' does not appear"),
        ('[dialplan]\ntrusted_sources = "10.0.0.1"', "dialplan.trusted_sources: expected an array"),
        # [[rooms]]
        ('[[rooms]]\nnumber = "700"', "rooms[0].name: required"),
        ('[[rooms]]\nname = "standup"', "rooms[0].number: required"),
        ('[[rooms]]\nname = "stand up"\nnumber = "700"', "rooms[0].name: 'stand up' is not a name"),
        ('[[rooms]]\nname = "standup"\nnumber = "7a"', "rooms[0].number: '7a' is not an extension"),
        ('[[rooms]]\nname = "standup"\nnumber = "911"', "rooms[0].number: '911' is an emergency number"),
        ('[[rooms]]\nname = "standup"\nnumber = "600"', "rooms[0].number: '600' is already a built-in extension"),
        (
            '[users.alice]\nextension = "700"\n[[rooms]]\nname = "standup"\nnumber = "700"',
            "rooms[0].number: '700' is already alice's extension",
        ),
        (
            '[[rooms]]\nname = "a"\nnumber = "700"\n[[rooms]]\nname = "b"\nnumber = "700"',
            "rooms[1].number: '700' is already room 'a''s number",
        ),
        (
            '[[rooms]]\nname = "a"\nnumber = "700"\n[[rooms]]\nname = "a"\nnumber = "701"',
            "rooms[1].name: room 'a' is defined twice",
        ),
        ('[[rooms]]\nname = "a"\nnumber = "700"\nmax_participants = 1', "rooms[0].max_participants: must be 2-32, not 1"),
        ('[[rooms]]\nname = "a"\nnumber = "700"\nmax_participants = 33', "rooms[0].max_participants: must be 2-32"),
        ('[[rooms]]\nname = "a"\nnumber = "700"\nusers = ["carol"]', "rooms[0].users: unknown user 'carol'"),
        ('[users.alice]\n[[rooms]]\nname = "a"\nnumber = "700"\ngroups = ["x"]', "rooms[0].groups: unknown group 'x'"),
        ('[[rooms]]\nname = "a"\nnumber = "700"\npin = "1"', "rooms[0].pin: unknown key"),
    ],
)
def test_configuration_errors(text: str, message: str) -> None:
    with pytest.raises(DialplanError) as raised:
        plan_from(text)
    assert str(raised.value).startswith(message), str(raised.value)


def test_no_sections_is_the_built_in_plan() -> None:
    plan = plan_from('state_dir = "state"\n[http]\nport = 8443\n[sip]\nport = 5060\n[webrtc]\n[calls]\n')
    assert plan.users is None
    assert dict(plan.trunks) == {}
    assert plan.warnings == ()
    for dialled in ("600", "601", "bob", "sip:bob@example.com", "+44 20 7946 0000", "911", "<script>"):
        assert plan.outbound(dialled, "alice") == Dialplan().outbound(dialled, "alice"), dialled
    assert plan.outbound("+44 20 7946 0000", "alice") == Route.reject(
        404, "No route for +442079460000: no trunk is configured for phone numbers"
    )
    assert plan.inbound("601") == Route("builtin", "tone")


def test_users_keep_the_gateway_keys_and_defaults() -> None:
    plan = plan_from(
        """
        [dialplan]
        default_allow = ["national"]
        [groups]
        sales = ["bob"]
        [users]
        carol = "scrypt$old-style-entry"
        [users.alice]
        password = "scrypt$..."
        allow = ["international", "sip_uri"]
        extension = "2001"
        groups = ["sales"]
        [users.bob]
        """
    )
    assert plan.users == frozenset({"alice", "bob", "carol"})
    assert plan.inbound("2001") == Route("user", "alice")
    assert plan.outbound("sip:x@example.com", "alice") == Route("sip", "sip:x@example.com")
    assert plan.outbound("sip:x@example.com", "bob").code == 403


def test_groups_join_both_ways_in_user_order() -> None:
    plan = plan_from(
        '[groups]\nsales = ["bob"]\n[users.alice]\ngroups = ["sales"]\n[users.bob]\n'
        '[[inbound]]\ndid = "*"\ngroup = "sales"\n'
    )
    assert plan.inbound("+15005550006") == Route("group", "sales", targets=("alice", "bob"))


def test_trunk_fields_are_read_whole() -> None:
    plan = plan_from(
        GB
        + """
[[trunks]]
name = "carrier"
host = "[2001:db8::1]:5080"
transport = "tcp"
username = "gw1"
password = "secret"
register = true
expires = 600
number_format = "international"
international_prefix = "011"
strip_prefix = "0"
add_prefix = "9"
tech_prefix = "1234#"
caller_id = "user"
identity_header = "both"
tls_name = "sip.example.net"
srtp = "mandatory"
register_users = true
"""
    )
    assert list(plan.trunks.values()) == [
        Trunk(
            "carrier",
            "[2001:db8::1]:5080",
            "tcp",
            "gw1",
            "secret",
            True,
            600,
            "international",
            "011",
            "0",
            "9",
            "1234#",
            "user",
            "both",
            "sip.example.net",
            "mandatory",
            True,
        )
    ]
    assert "secret" not in repr(plan.trunks)


def test_trunk_defaults() -> None:
    assert plan_from(GB + CARRIER).trunks["carrier"] == Trunk("carrier", "sip.example.net")
    assert Trunk("c", "h") == Trunk(
        "c", "h", "udp", None, None, False, 300, "e164", "00", "", "", "", "trunk", "pai", "", "off", False
    )


@pytest.mark.parametrize(
    ("host", "tls_name", "name"),
    [("sip.example.net:5061", "", "sip.example.net"), ("[2001:db8::1]:5061", "", "2001:db8::1"),
     ("2001:db8::1", "", "2001:db8::1"), ("192.0.2.7", "sip.example.net", "sip.example.net")],
)
def test_a_trunks_certificate_names_its_host_or_tls_name(host: str, tls_name: str, name: str) -> None:
    trunk = Trunk("c", host, "tls", tls_name=tls_name)
    assert trunk.certificate_name == name
    assert trunk.port == (5061 if host.endswith(":5061") else None)


def test_dialplan_defaults() -> None:
    plan = plan_from('[users.alice]\n[dialplan]\ncountry = "gb"\nextensions = { "700" = "echo" }')
    assert plan.outbound("600", "alice").code == 404
    assert plan.outbound("700", "alice") == Route("local", "700")
    assert plan.inbound("700") == Route("builtin", "echo")
    assert {"national", "mobile", "toll_free"} == DEFAULT_ALLOW
    assert User("alice").allow == DEFAULT_ALLOW


@pytest.mark.parametrize(
    ("text", "warnings"),
    [
        ("", ()),
        (GB + USERS, ()),
        (
            GB + CARRIER + '[[routes]]\ntrunks = ["carrier"]\n',
            (
                "no emergency trunk is set: emergency calls will be refused",
                "sign-in is open: anyone who can reach the page may call phone numbers (national, mobile, toll_free)",
            ),
        ),
        (
            '[dialplan]\ncountry = "GB"\ndefault_allow = []\nemergency_trunks = ["carrier"]\n'
            + CARRIER
            + '[[routes]]\ntrunks = ["carrier"]\n',
            (),
        ),
        (
            '[dialplan]\ncountry = "GB"\ndefault_allow = []\nemergency_trunks = ["carrier", "tls"]\n'
            + CARRIER
            + 'srtp = "optional"\n[[trunks]]\nname = "tls"\nhost = "tls.example.net"\ntransport = "tls"\nsrtp = "mandatory"\n',
            ("trunk 'carrier' uses SRTP over UDP: its SRTP keys cross the network in clear",),
        ),
        (
            '[dialplan]\ncountry = "GB"\nemergency_trunks = ["carrier"]\n'
            + USERS
            + CARRIER
            + '[[trunks]]\nname = "spare"\nhost = "spare.example.net"\n'
            + '[[routes]]\nname = "alice"\nusers = ["alice"]\ntrunks = ["carrier"]\n'
            + '[[routes]]\nname = "all"\ntrunks = ["carrier"]\n'
            + '[[routes]]\nname = "uk"\nprefix = "+44"\ntrunks = ["carrier"]\n',
            (
                "trunk 'spare' is not used by any route",
                "route 'uk' is never used: route 'all' before it takes every number",
            ),
        ),
    ],
)
def test_warnings(text: str, warnings: tuple[str, ...]) -> None:
    assert plan_from(text).warnings == warnings
