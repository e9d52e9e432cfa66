"""Reading the dialplan's sections of the gateway's TOML file into a checked :class:`Dialplan`.

The gateway parses the file and hands over the whole document; the sections
below belong to the dialplan, every other one (``http``, ``sip``, ...) and a
user's ``password`` to the gateway. Every problem is a :class:`DialplanError`
whose message starts with the key path, so the operator can find the line.
With none of these sections the plan is the built-in one: open sign-in,
600/601, phone numbers refused for want of a trunk.

``[dialplan]``
    ``country``: ISO 3166-1 alpha-2 home country, deciding how national
    numbers, the international prefix and emergency numbers are read;
    required once a trunk is configured (a wrong guess misroutes calls),
    otherwise "US". ``emergency_numbers``: replaces the default, which is the
    country's list in phonenumbers plus 112 and 911. ``emergency_trunks``:
    where those go, in order, whatever the caller's permissions.
    ``extensions``: number -> built-in application (replaces 600 echo, 601 tone).
    ``default_allow``: permissions of users without ``allow`` and of everyone
    when sign-in is open; default national, mobile, toll_free.
    ``inbound_from``: who may ring web users over SIP, "anyone" or "trunks"
    (default "anyone" with open sign-in, "trunks" once ``[users]`` exist);
    ``trusted_sources``: addresses or networks that may as well (a PBX).
``[groups]``
    name = [user, ...]; users can also join with their own ``groups``.
``[users.NAME]``
    ``groups``, ``allow`` (national, mobile, international, premium,
    toll_free, sip_uri), ``extension`` (digits that reach the user),
    ``display_name`` (up to 64 characters; trunks that present the user show
    it, with the extension), ``sip_password`` (read by the gateway: the
    user's own secret at the PBX, see a trunk's ``register_users``). The
    gateway's older ``NAME = "hash"`` form is read as a user with defaults.
    Without ``[users]`` sign-in is open, and nothing may name a user or group.
``[[trunks]]``
    ``name``, ``host`` ("host" or "host:port") required; ``transport`` udp|tcp|
    tls (udp), ``tls_name`` (the name its certificate carries, default the
    host), ``srtp`` off|optional|mandatory (off), ``username``/``password``
    (together), ``register`` (false), ``register_users`` (false: REGISTER
    each signed-in user with a ``sip_password`` as their extension),
    ``expires`` (300, 10-86400), ``number_format`` e164|e164_digits|
    international|national (e164), ``international_prefix`` ("00"),
    ``strip_prefix``, ``add_prefix``, ``tech_prefix`` (""), ``caller_id``
    trunk|user (trunk) and, with "user", ``identity_header`` from|pai|both
    (pai): see :mod:`dialplan.identity`.
``[[routes]]``
    ``trunks`` required; ``name`` (default its key path), ``prefix`` ("+44")
    or ``pattern`` (regex searched in the E.164 number), or instead
    ``extensions``: Asterisk patterns matched on what was dialled ("_2XXX",
    "*97", see :mod:`dialplan.patterns`), sent on as dialled; ``users``, ``groups``.
    The first route that takes a call and admits its caller wins; emergency
    numbers and users' extensions come before every route, the built-in
    extensions after them.
``[[rooms]]``
    ``name``, ``number`` required: a conference room that web users join by
    dialling ``number`` and SIP callers by calling it at the gateway (under
    ``inbound_from``, like any SIP call); ``max_participants`` (8, 2-32);
    ``users``, ``groups``: who may join from the page (default every user).
``[[inbound]]``
    ``did`` required (a number, normalised to E.164 when valid, or "*"),
    ``trunk``, and exactly one of ``user``, ``group``, ``extension`` (built-in
    or a user's).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from . import numbers
from .numbers import NUMBER_FORMATS, EmergencyNumbers
from .identity import CALLER_ID_POLICIES, IDENTITY_HEADERS
from .patterns import ExtensionPattern, extension_pattern
from .permissions import DEFAULT_ALLOW, PERMISSIONS, USER_NAME, Permission, User
from .plan import APPLICATIONS, BUILTIN_EXTENSIONS, DEFAULT_COUNTRY, Dialplan
from .route import Route
from .rules import ANY_DID, InboundRule, OutboundRule, Room
from .sources import INBOUND_FROM, InboundSources, network_problem
from .trunks import SRTP_MODES, TRANSPORTS, Trunk

_T = TypeVar("_T")
_D = TypeVar("_D")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_EXTENSION = re.compile(r"^[0-9]{1,16}$")
_DNS_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_E164_PREFIX = re.compile(r"^\+[0-9]{0,15}$")
_DIAL_PREFIX = re.compile(r"^[0-9*#+]{0,16}$")
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?$"
)
_KINDS: dict[type, str] = {str: "a string", int: "an integer", bool: "true or false", dict: "a table", list: "an array"}

_DIALPLAN_KEYS = (
    "country", "emergency_numbers", "emergency_trunks", "extensions", "default_allow", "inbound_from", "trusted_sources"
)
_USER_KEYS = ("password", "groups", "allow", "extension", "display_name", "sip_password")
_DISPLAY_NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,64}")
_TRUNK_KEYS = (
    "name",
    "host",
    "transport",
    "tls_name",
    "srtp",
    "username",
    "password",
    "register",
    "register_users",
    "expires",
    "number_format",
    "international_prefix",
    "strip_prefix",
    "add_prefix",
    "tech_prefix",
    "caller_id",
    "identity_header",
)
_ROUTE_KEYS = ("name", "prefix", "pattern", "extensions", "trunks", "users", "groups")
_INBOUND_KEYS = ("did", "trunk", "user", "group", "extension")
_ANSWERS = ("user", "group", "extension")
_ROOM_KEYS = ("name", "number", "max_participants", "users", "groups")
MAX_PARTICIPANTS = 32
"""The most one room takes: the native relay mixes at most this many (gateway/_mixer.h)."""


class DialplanError(ValueError):
    """A problem in the dialplan's configuration; the message starts with the key path."""


@dataclasses.dataclass(frozen=True)
class _Table:
    """One TOML table being read, with the key path its errors name."""

    path: str
    values: Mapping[str, Any]

    @classmethod
    def read(cls, value: object, path: str, known: Collection[str]) -> _Table:
        if not isinstance(value, dict):
            raise DialplanError(f"{path}: expected a table, not {type(value).__name__}")
        for key in value:
            if key not in known:
                raise DialplanError(f"{path}.{key}: unknown key (known: {', '.join(known)})")
        return cls(path, value)

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type[_T], default: _D) -> _T | _D:
        if key not in self.values:
            return default
        value = self.values[key]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise DialplanError(f"{self.at(key)}: expected {_KINDS[kind]}, not {type(value).__name__}")
        return value

    def need(self, key: str, kind: type[_T]) -> _T:
        value = self.get(key, kind, None)
        if value is None:
            raise DialplanError(f"{self.at(key)}: required")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, [])
        if not all(isinstance(value, str) for value in values):
            raise DialplanError(f"{self.at(key)}: expected an array of strings")
        return tuple(values)

    def tables(self, key: str, known: Collection[str]) -> list[_Table]:
        """The array of tables ``[[key]]``."""
        return [
            _Table.read(value, f"{self.at(key)}[{index}]", known) for index, value in enumerate(self.get(key, list, []))
        ]

    def choice(self, key: str, choices: tuple[_T, ...], default: _T) -> _T:
        value = self.get(key, str, default)
        for choice in choices:
            if choice == value:
                return choice
        raise DialplanError(f"{self.at(key)}: {value!r} is not one of {', '.join(map(str, choices))}")

    def matching(self, key: str, pattern: re.Pattern[str], default: str, what: str) -> str:
        value = self.get(key, str, default)
        if key in self.values and not pattern.match(value):
            raise DialplanError(f"{self.at(key)}: {value!r} is not {what}")
        return value

    def known(self, key: str, names: Collection[str], what: str) -> tuple[str, ...]:
        """The strings at ``key``, each one of ``names``, none twice."""
        values = self.strings(key)
        for index, value in enumerate(values):
            if value not in names:
                raise DialplanError(f"{self.at(key)}: unknown {what} {value!r}")
            if value in values[:index]:
                raise DialplanError(f"{self.at(key)}: {what} {value!r} is listed twice")
        return values

    def permissions(self, key: str, default: frozenset[Permission]) -> frozenset[Permission]:
        if key not in self.values:
            return default
        names = self.known(key, PERMISSIONS, "permission")
        return frozenset(permission for permission in PERMISSIONS if permission in names)


def load_plan(data: Mapping[str, Any]) -> Dialplan:
    """The :class:`Dialplan` a parsed TOML document describes; raises :class:`DialplanError`."""
    root = _Table("", data)
    section = _Table.read(root.get("dialplan", dict, {}), "dialplan", _DIALPLAN_KEYS)
    trunk_tables = root.tables("trunks", _TRUNK_KEYS)
    country = _country(section, required=bool(trunk_tables))
    emergency_numbers = _emergency_numbers(section)
    emergency = EmergencyNumbers(country, emergency_numbers)
    builtins = _builtins(section, emergency)
    default_allow = section.permissions("default_allow", DEFAULT_ALLOW)
    trunks = _trunks(trunk_tables)
    group_lists = _group_lists(root)
    users = _users(root, group_lists, default_allow, builtins, emergency)
    members = {
        group: tuple(user.name for user in (users or {}).values() if group in user.groups) for group in group_lists
    }
    routes = _routes(root, trunks, users, members)
    owners = {user.extension: user.name for user in (users or {}).values() if user.extension}
    rooms = _rooms(root, users, members, builtins, emergency, owners)
    inbound = [
        _inbound(table, country, trunks, users, members, builtins, owners)
        for table in root.tables("inbound", _INBOUND_KEYS)
    ]
    return Dialplan(
        None if users is None else users.values(),
        builtins,
        country=country,
        emergency_numbers=emergency_numbers,
        emergency_trunks=section.known("emergency_trunks", trunks, "trunk"),
        trunks=trunks.values(),
        routes=routes,
        inbound=inbound,
        default_allow=default_allow,
        sources=_sources(section, open_sign_in=users is None),
        rooms=rooms,
    )


def _sources(section: _Table, open_sign_in: bool) -> InboundSources:
    inbound_from = section.choice("inbound_from", INBOUND_FROM, "anyone" if open_sign_in else "trunks")
    trusted = section.strings("trusted_sources")
    for network in trusted:
        problem = network_problem(network)
        if problem is not None:
            raise DialplanError(f"dialplan.trusted_sources: {problem}")
    return InboundSources(inbound_from, trusted)


def _country(section: _Table, required: bool) -> str:
    if "country" not in section.values:
        if required:
            raise DialplanError(
                "dialplan.country: required once [[trunks]] are configured"
                " (it decides how national and emergency numbers are read)"
            )
        return DEFAULT_COUNTRY
    code = section.need("country", str)
    if not numbers.is_country(code.upper()):
        raise DialplanError(f"dialplan.country: {code!r} is not a country code")
    return code.upper()


def _emergency_numbers(section: _Table) -> frozenset[str] | None:
    if "emergency_numbers" not in section.values:
        return None
    values = section.strings("emergency_numbers")
    if not values:
        raise DialplanError(
            "dialplan.emergency_numbers: must not be empty (leave it out for the country's own numbers)"
        )
    for value in values:
        if not _EXTENSION.match(value):
            raise DialplanError(f"dialplan.emergency_numbers: {value!r} is not a number (digits only)")
    return frozenset(values)


def _builtins(section: _Table, emergency: EmergencyNumbers) -> Mapping[str, str]:
    if "extensions" not in section.values:
        return BUILTIN_EXTENSIONS
    table = section.need("extensions", dict)
    for number, application in table.items():
        path = f"dialplan.extensions.{number}"
        _extension_number(path, number, emergency)
        if application not in APPLICATIONS:
            raise DialplanError(
                f"{path}: unknown application {application!r} (known: {', '.join(sorted(APPLICATIONS))})"
            )
    return dict(table)


def _extension_number(path: str, number: str, emergency: EmergencyNumbers) -> None:
    if not _EXTENSION.match(number):
        raise DialplanError(f"{path}: {number!r} is not an extension (1-16 digits)")
    if number in emergency:
        raise DialplanError(f"{path}: {number!r} is an emergency number")


def _trunks(tables: list[_Table]) -> dict[str, Trunk]:
    trunks: dict[str, Trunk] = {}
    for table in tables:
        trunk = _trunk(table)
        if trunk.name in trunks:
            raise DialplanError(f"{table.at('name')}: trunk {trunk.name!r} is defined twice")
        trunks[trunk.name] = trunk
    return trunks


def _trunk(table: _Table) -> Trunk:
    name = table.need("name", str)
    if not _NAME.match(name):
        raise DialplanError(f"{table.at('name')}: {name!r} is not a name (1-32 of A-Z a-z 0-9 . _ -)")
    host = table.need("host", str)
    address = _HOST.match(host)
    if address is None or (address.group("port") is not None and not 0 < int(address.group("port")) < 65536):
        raise DialplanError(f"{table.at('host')}: {host!r} is not host or host:port")
    username = table.get("username", str, None)
    password = table.get("password", str, None)
    if (username is None) != (password is None):
        raise DialplanError(f"{table.path}: username and password go together")
    expires = table.get("expires", int, 300)
    if not 10 <= expires <= 86400:
        raise DialplanError(f"{table.at('expires')}: must be 10-86400 seconds, not {expires}")
    prefix = "digits, *, # and + only"
    caller_id = table.choice("caller_id", CALLER_ID_POLICIES, "trunk")
    if caller_id == "trunk" and "identity_header" in table.values:
        raise DialplanError(f"{table.at('identity_header')}: applies only with caller_id = \"user\"")
    return Trunk(
        name=name,
        host=host,
        transport=table.choice("transport", TRANSPORTS, "udp"),
        tls_name=table.matching("tls_name", _DNS_NAME, "", "a host name"),
        srtp=table.choice("srtp", SRTP_MODES, "off"),
        username=username,
        password=password,
        register=table.get("register", bool, False),
        register_users=table.get("register_users", bool, False),
        expires=expires,
        number_format=table.choice("number_format", NUMBER_FORMATS, "e164"),
        international_prefix=table.matching(
            "international_prefix", _EXTENSION, "00", "an international prefix (digits)"
        ),
        strip_prefix=table.matching("strip_prefix", _DIAL_PREFIX, "", prefix),
        add_prefix=table.matching("add_prefix", _DIAL_PREFIX, "", prefix),
        tech_prefix=table.matching("tech_prefix", _DIAL_PREFIX, "", prefix),
        caller_id=caller_id,
        identity_header=table.choice("identity_header", IDENTITY_HEADERS, "pai"),
    )


def _group_lists(root: _Table) -> dict[str, tuple[str, ...]]:
    """``[groups]`` as written; members are checked once the users are known."""
    table = _Table("groups", root.get("groups", dict, {}))
    for name in table.values:
        if not _NAME.match(name):
            raise DialplanError(f"groups.{name}: {name!r} is not a name (1-32 of A-Z a-z 0-9 . _ -)")
    return {name: table.strings(name) for name in table.values}


def _users(
    root: _Table,
    group_lists: Mapping[str, tuple[str, ...]],
    default_allow: frozenset[Permission],
    builtins: Mapping[str, str],
    emergency: EmergencyNumbers,
) -> dict[str, User] | None:
    """The configured users, or None for open sign-in; membership joins ``[groups]`` and each user's ``groups``."""
    section = root.get("users", dict, None)
    listed: dict[str, set[str]] = {name: set() for name in section or {}}
    for group, names in group_lists.items():
        for name in names:
            if name not in listed:
                raise DialplanError(f"groups.{group}: unknown user {name!r}")
            listed[name].add(group)
    if section is None:
        return None
    users: dict[str, User] = {}
    owners: dict[str, str] = {}
    for name, value in section.items():
        path = f"users.{name}"
        if not USER_NAME.match(name):
            raise DialplanError(f"{path}: a user name is 1-32 of a-z 0-9 . _ - (starting with a letter or digit)")
        table = _Table(path, {}) if isinstance(value, str) else _Table.read(value, path, _USER_KEYS)
        extension = table.get("extension", str, None)
        if extension is not None:
            _extension_number(table.at("extension"), extension, emergency)
            if extension in builtins:
                raise DialplanError(f"{table.at('extension')}: {extension!r} is a built-in extension")
            if extension in owners:
                raise DialplanError(
                    f"{table.at('extension')}: {extension!r} is already {owners[extension]}'s extension"
                )
            owners[extension] = name
        groups = frozenset(table.known("groups", group_lists, "group")) | listed[name]
        display_name = table.get("display_name", str, None)
        if display_name is not None and not _DISPLAY_NAME.fullmatch(display_name):
            raise DialplanError(f"{table.at('display_name')}: 1-64 characters, no control characters")
        users[name] = User(name, table.permissions("allow", default_allow), groups, extension, display_name)
    return users


def _routes(
    root: _Table, trunks: Mapping[str, Trunk], users: Mapping[str, User] | None, members: Mapping[str, tuple[str, ...]]
) -> list[OutboundRule]:
    routes: list[OutboundRule] = []
    for table in root.tables("routes", _ROUTE_KEYS):
        route = _route(table, trunks, users, members)
        if any(other.name == route.name for other in routes):
            raise DialplanError(f"{table.at('name')}: route {route.name!r} is defined twice")
        routes.append(route)
    return routes


def _route(
    table: _Table, trunks: Mapping[str, Trunk], users: Mapping[str, User] | None, members: Mapping[str, tuple[str, ...]]
) -> OutboundRule:
    if "prefix" in table.values and "pattern" in table.values:
        raise DialplanError(f"{table.path}: set prefix or pattern, not both")
    if "extensions" in table.values and ("prefix" in table.values or "pattern" in table.values):
        raise DialplanError(f"{table.path}: set extensions or prefix/pattern, not both")
    source = table.get("pattern", str, None)
    try:
        pattern = None if source is None else re.compile(source)
    except re.error as exc:
        raise DialplanError(f"{table.at('pattern')}: not a regular expression: {exc}") from None
    via = table.known("trunks", trunks, "trunk")
    if not via:
        raise DialplanError(f"{table.at('trunks')}: required (the trunks to try, in order)")
    return OutboundRule(
        name=table.get("name", str, table.path),
        trunks=via,
        prefix=table.matching("prefix", _E164_PREFIX, "", "an E.164 prefix such as '+44'"),
        pattern=pattern,
        extensions=_extension_patterns(table),
        users=frozenset(table.known("users", users or {}, "user")),
        groups=frozenset(table.known("groups", members, "group")),
    )


def _extension_patterns(table: _Table) -> tuple[ExtensionPattern, ...]:
    if "extensions" not in table.values:
        return ()
    texts = table.strings("extensions")
    if not texts:
        raise DialplanError(f"{table.at('extensions')}: must not be empty (leave it out for a route of phone numbers)")
    try:
        return tuple(extension_pattern(text) for text in texts)
    except ValueError as exc:
        raise DialplanError(f"{table.at('extensions')}: {exc}") from None


def _rooms(
    root: _Table,
    users: Mapping[str, User] | None,
    members: Mapping[str, tuple[str, ...]],
    builtins: Mapping[str, str],
    emergency: EmergencyNumbers,
    owners: Mapping[str, str],
) -> list[Room]:
    """``owners`` maps users' extensions to the users: a room's number must be nobody else's."""
    rooms: list[Room] = []
    for table in root.tables("rooms", _ROOM_KEYS):
        name = table.need("name", str)
        if not _NAME.match(name):
            raise DialplanError(f"{table.at('name')}: {name!r} is not a name (1-32 of A-Z a-z 0-9 . _ -)")
        if any(room.name == name for room in rooms):
            raise DialplanError(f"{table.at('name')}: room {name!r} is defined twice")
        number = table.need("number", str)
        _extension_number(table.at("number"), number, emergency)
        taken = (
            "a built-in extension" if number in builtins
            else f"{owners[number]}'s extension" if number in owners
            else next((f"room {room.name!r}'s number" for room in rooms if room.number == number), None)
        )
        if taken:
            raise DialplanError(f"{table.at('number')}: {number!r} is already {taken}")
        limit = table.get("max_participants", int, 8)
        if not 2 <= limit <= MAX_PARTICIPANTS:
            raise DialplanError(f"{table.at('max_participants')}: must be 2-{MAX_PARTICIPANTS}, not {limit}")
        rooms.append(
            Room(
                name, number, limit,
                users=frozenset(table.known("users", users or {}, "user")),
                groups=frozenset(table.known("groups", members, "group")),
            )
        )
    return rooms


def _inbound(
    table: _Table,
    country: str,
    trunks: Mapping[str, Trunk],
    users: Mapping[str, User] | None,
    members: Mapping[str, tuple[str, ...]],
    builtins: Mapping[str, str],
    owners: Mapping[str, str],
) -> InboundRule:
    """``owners`` maps users' extensions to the users."""
    did = table.need("did", str)
    if did != ANY_DID and numbers.diallable(did) is None and not USER_NAME.match(did):
        raise DialplanError(f"{table.at('did')}: {did!r} is not a number, a user name or '*'")
    trunk = table.get("trunk", str, None)
    if trunk is not None and trunk not in trunks:
        raise DialplanError(f"{table.at('trunk')}: unknown trunk {trunk!r}")
    answers = [key for key in _ANSWERS if key in table.values]
    if len(answers) != 1:
        raise DialplanError(f"{table.path}: set exactly one of user, group, extension")
    target = table.need(answers[0], str)
    if answers[0] == "user":
        if target not in (users or {}):
            raise DialplanError(f"{table.at('user')}: unknown user {target!r}")
        route = Route("user", target)
    elif answers[0] == "group":
        if target not in members:
            raise DialplanError(f"{table.at('group')}: unknown group {target!r}")
        if not members[target]:
            raise DialplanError(f"{table.at('group')}: group {target!r} has no members")
        route = Route("group", target, targets=members[target])
    elif target in builtins:
        route = Route("builtin", builtins[target])
    elif target in owners:
        route = Route("user", owners[target])
    else:
        raise DialplanError(f"{table.at('extension')}: unknown extension {target!r}")
    return InboundRule(did if did == ANY_DID else numbers.normalise(did, country), route, trunk)
