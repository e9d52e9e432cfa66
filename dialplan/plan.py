"""The dialplan: one object that answers every routing question the gateway asks."""

from __future__ import annotations

import re
import types
from collections.abc import Collection, Iterable, Mapping, Sequence

from . import numbers, permissions
from .identity import CallerId
from .numbers import EmergencyNumbers
from .permissions import DEFAULT_ALLOW, PERMISSIONS, USER_NAME, Permission, User
from .route import Route, Target
from .rules import InboundRule, OutboundRule, Room
from .sources import InboundSources
from .trunks import Trunk

BUILTIN_EXTENSIONS: Mapping[str, str] = types.MappingProxyType({"600": "echo", "601": "tone"})
"""Extensions the gateway answers itself: 600 echoes your voice, 601 plays 440 Hz."""

APPLICATIONS = frozenset(BUILTIN_EXTENSIONS.values())
"""The applications the gateway's SIP side can serve."""

DEFAULT_COUNTRY = "US"
MAX_DIALLED = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LETTER = re.compile(r"[a-z]")
"""Names without a letter read as numbers: ``020-7946-0000`` is not a user called that."""

_SIP_URI = re.compile(
    r"^sip:(?P<user>[A-Za-z0-9_.!~*'()&=+$,;?/%-]{1,64}@)?"
    r"(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<params>(?:;[A-Za-z0-9_.!~*'()&+$-]+(?:=[A-Za-z0-9_.!~*'()&+$-]+)?)*)$"
)


class Dialplan:
    """Decides outbound and inbound routes.

    ``users`` are the configured web users (names get ``default_allow``), or
    None when anyone may sign in: then every well-formed user name is a
    possible callee and every caller holds ``default_allow``. The constructor
    trusts its arguments; :func:`dialplan.load_plan` checks a configuration
    before building one.
    """

    def __init__(
        self,
        users: Iterable[str | User] | None = None,
        builtins: Mapping[str, str] = BUILTIN_EXTENSIONS,
        *,
        country: str = DEFAULT_COUNTRY,
        emergency_numbers: Collection[str] | None = None,
        emergency_trunks: Sequence[str] = (),
        trunks: Iterable[Trunk] = (),
        routes: Sequence[OutboundRule] = (),
        inbound: Sequence[InboundRule] = (),
        default_allow: frozenset[Permission] = DEFAULT_ALLOW,
        sources: InboundSources | None = None,
        rooms: Iterable[Room] = (),
    ) -> None:
        self._accounts = (
            None
            if users is None
            else {
                user.name: user
                for user in (User(entry, default_allow) if isinstance(entry, str) else entry for entry in users)
            }
        )
        self._builtins = dict(builtins)
        self._country = country
        self._emergency = EmergencyNumbers(country, None if emergency_numbers is None else frozenset(emergency_numbers))
        self._emergency_trunks = tuple(emergency_trunks)
        self._trunks = types.MappingProxyType({trunk.name: trunk for trunk in trunks})
        self._routes = tuple(routes)
        self._inbound = tuple(inbound)
        self._default_allow = default_allow
        self._sources = sources or InboundSources()
        self._rooms = types.MappingProxyType({room.number: room for room in rooms})
        self._extensions = {user.extension: user.name for user in (self._accounts or {}).values() if user.extension}
        self._warnings = self._check()

    @property
    def users(self) -> frozenset[str] | None:
        """The configured user names, or None when sign-in is open."""
        return None if self._accounts is None else frozenset(self._accounts)

    def extension(self, user: str) -> str | None:
        """The extension that reaches ``user`` (their name at the PBX), if they have one."""
        return next((number for number, name in self._extensions.items() if name == user), None)

    @property
    def country(self) -> str:
        """The home country (ISO 3166-1 alpha-2) in which national numbers are read."""
        return self._country

    @property
    def trunks(self) -> Mapping[str, Trunk]:
        """Trunk name -> definition, in configuration order: what to register with and dial through."""
        return self._trunks

    @property
    def rooms(self) -> Mapping[str, Room]:
        """Conference room number -> its definition."""
        return self._rooms

    def room(self, name: str) -> Room | None:
        """The conference room called ``name``, if one is."""
        return next((room for room in self._rooms.values() if room.name == name), None)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Things that work but are probably not what the operator meant."""
        return self._warnings

    def outbound(self, dialled: str, caller: str) -> Route:
        """Where a call from web user ``caller`` to ``dialled`` goes."""
        if _CONTROL.search(dialled):
            return Route.reject(484, "That contains control characters")
        text = dialled.strip()
        if not text or len(text) > MAX_DIALLED:
            return Route.reject(484, "Enter a number, a user name or a sip: address")
        user = self._caller(caller)
        if text.lower().startswith("sip:"):
            return self._sip_uri(text, user)
        if USER_NAME.match(text) and _LETTER.search(text):
            return self._local_user(text, caller)
        number = numbers.diallable(text)
        if number is None:
            return Route.reject(484, "That is not a number, a user name or a sip: address")
        if number in self._emergency:
            return self._emergency_call(number)
        if number in self._rooms:
            return self._join(self._rooms[number], user)
        if number in self._extensions:
            return self._local_user(self._extensions[number], caller)
        return self._routed(number, user)

    def caller_id(self, caller: str) -> CallerId:
        """Web user ``caller`` as trunks with ``caller_id = "user"`` present them:
        their extension, else their name, and their display name, else their name."""
        user = self._caller(caller)
        return CallerId(user.extension or caller, user.display_name or caller)

    @property
    def inbound_from(self) -> str:
        """``anyone`` or ``trunks``: who may ring web users (see :mod:`dialplan.sources`)."""
        return self._sources.inbound_from

    def trusts(self, source: str) -> bool:
        """Whether ``source`` (``ip:port``) is one of ``trusted_sources``: a PBX peered by address."""
        return self._sources.trusts(source)

    def inbound(self, to_user: str, trunk: str | None = None, source: str | None = None) -> Route:
        """What a SIP call addressed to ``to_user`` at the gateway rings; ``trunk`` names the trunk it came from.

        ``source`` is the caller's address when the call came neither through a
        trunk nor from the gateway itself; a source the policy does not admit
        gets 403.  Then ``[[inbound]]`` rules for a DID come first, then
        built-in extensions, conference rooms, users' extensions and user names, then catch-all
        (``*``) rules, so a catch-all never swallows the gateway's calls to its
        own extensions and users.
        """
        if trunk is None and source is not None and not self._sources.admits(source):
            return Route.reject(403, "Calls from this address are not accepted")
        did = numbers.normalise(to_user, self._country)
        exact = self._inbound_rule(did, trunk, catch_all=False)
        if exact is not None:
            return exact
        if to_user in self._builtins:
            return Route("builtin", self._builtins[to_user])
        if to_user in self._rooms:
            return Route("room", self._rooms[to_user].name, number=to_user)
        if to_user in self._extensions:
            return Route("user", self._extensions[to_user])
        if USER_NAME.match(to_user) and (self._accounts is None or to_user in self._accounts):
            return Route("user", to_user)
        return self._inbound_rule(did, trunk, catch_all=True) or Route.reject(404, "No such user or extension")

    def _inbound_rule(self, did: str, trunk: str | None, catch_all: bool) -> Route | None:
        return next(
            (rule.route for rule in self._inbound if rule.catch_all == catch_all and rule.matches(did, trunk)), None
        )

    def _caller(self, name: str) -> User:
        if self._accounts is None:
            return User(name, self._default_allow)
        return self._accounts.get(name, User(name, frozenset()))

    def _local_user(self, name: str, caller: str) -> Route:
        if name == caller:
            return Route.reject(482, "You cannot call yourself")
        if self._accounts is not None and name not in self._accounts:
            return Route.reject(404, f"There is no user called {name}")
        return Route("local", name)

    def _join(self, room: Room, user: User) -> Route:
        if not room.admits(user):
            return Route.reject(403, f"You may not join the room {room.name}")
        return Route("room", room.name, number=room.number)

    def _sip_uri(self, text: str, user: User) -> Route:
        match = _SIP_URI.match(text)
        if match is None:
            return Route.reject(484, "That sip: address is not valid")
        port = match.group("port")
        if port is not None and not 0 < int(port) < 65536:
            return Route.reject(484, "That sip: address has an invalid port")
        reason = None if self._accounts is None else permissions.refusal(user.allow, ("sip_uri",))
        return Route("sip", text) if reason is None else Route.reject(403, reason)

    def _emergency_call(self, number: str) -> Route:
        """Emergency calls skip permissions and leave as dialled: the carrier knows its local numbers."""
        if not self._emergency_trunks:
            return Route.reject(
                404, f"Emergency calls to {number} cannot be made from here: no emergency trunk is configured"
            )
        targets = tuple(Target(trunk, number) for trunk in self._emergency_trunks)
        return Route("trunk", number=number, targets=targets, emergency=True)

    def _routed(self, number: str, user: User) -> Route:
        """A dialled number or extension: the first route that takes it, else a built-in extension.

        Routes come before the built-in extensions, so 600 and 601 never hide
        what a PBX answers on those numbers behind a matching route.  A valid
        phone number needs its permission whichever route takes it, so an
        extension pattern (``_X.``) carries no call the user may not make.
        """
        parsed = numbers.parse(number, self._country)
        e164 = None if parsed is None else numbers.e164(parsed)
        rule = next((rule for rule in self._routes if rule.matches(number, e164) and rule.admits(user)), None)
        if rule is None and number in self._builtins:
            return Route("local", number)
        if not self._trunks:
            return Route.reject(404, f"No route for {number}: no trunk is configured for phone numbers")
        if parsed is None and rule is None:
            by_extension = any(rule.extensions for rule in self._routes)
            return Route.reject(404, f"No route for {number}" if by_extension else f"{number} is not a valid number")
        if parsed is not None:
            reason = permissions.refusal(user.allow, permissions.needed(parsed, self._country))
            if reason is not None:
                return Route.reject(403, reason)
        if rule is None:
            return Route.reject(404, f"No route for {e164}")
        if parsed is None or rule.extensions:  # an extension rule: the PBX gets what the user dialled
            return Route("trunk", number=number, targets=tuple(Target(name, number) for name in rule.trunks))
        targets = tuple(Target(name, self._trunks[name].dial_string(parsed, self._country)) for name in rule.trunks)
        return Route("trunk", number=numbers.e164(parsed), targets=targets)

    def _check(self) -> tuple[str, ...]:
        warnings: list[str] = []
        if self._trunks and not self._emergency_trunks:
            warnings.append("no emergency trunk is set: emergency calls will be refused")
        phone = [
            permission for permission in PERMISSIONS if permission in self._default_allow and permission != "sip_uri"
        ]
        if self._accounts is not None and self._sources.inbound_from == "anyone":
            warnings.append("dialplan.inbound_from is \"anyone\": any SIP source may ring the web users")
        if self._accounts is None and self._routes and phone:
            warnings.append(
                f"sign-in is open: anyone who can reach the page may call phone numbers ({', '.join(phone)})"
            )
        for extension, application in self._builtins.items():
            shadow = next((rule for rule in self._routes if rule.extensions and rule.matches(extension, None)), None)
            if shadow is not None:
                warnings.append(f"route {shadow.name!r} takes {extension} before the built-in {application} extension")
        used = {name for rule in self._routes for name in rule.trunks} | set(self._emergency_trunks)
        warnings.extend(f"trunk {name!r} is not used by any route" for name in self._trunks if name not in used)
        warnings.extend(
            f"trunk {name!r} uses SRTP over {trunk.transport.upper()}: its SRTP keys cross the network in clear"
            for name, trunk in self._trunks.items() if trunk.srtp != "off" and trunk.transport != "tls"
        )
        for index, greedy in enumerate(self._routes):
            if greedy.takes_everything:
                later = self._routes[index + 1 :]
                warnings.extend(
                    f"route {rule.name!r} is never used: route {greedy.name!r} before it takes every number"
                    for rule in later
                )
                break
        return tuple(warnings)
