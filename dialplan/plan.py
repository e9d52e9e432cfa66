"""The built-in dialplan: test extensions, web users and direct SIP URIs."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from .route import Route

BUILTIN_EXTENSIONS: Mapping[str, str] = {"600": "echo", "601": "tone"}
"""Extensions the gateway answers itself: 600 echoes your voice, 601 plays 440 Hz."""

MAX_DIALLED = 256
_USER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
_VISUAL_SEPARATORS = re.compile(r"[\s\-.()/]")
_SIP_URI = re.compile(
    r"^sip:(?P<user>[A-Za-z0-9_.!~*'()&=+$,;?/%-]{1,64}@)?"
    r"(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<params>(?:;[A-Za-z0-9_.!~*'()&+$-]+(?:=[A-Za-z0-9_.!~*'()&+$-]+)?)*)$"
)


class Dialplan:
    """Decides outbound and inbound routes.

    ``users`` is the set of configured web users, or None when anyone may
    sign in (then every well-formed user name is a possible callee).
    """

    def __init__(self, users: Collection[str] | None = None, builtins: Mapping[str, str] = BUILTIN_EXTENSIONS) -> None:
        self._users = None if users is None else frozenset(users)
        self._builtins = dict(builtins)

    def outbound(self, dialled: str, caller: str) -> Route:
        """Where a call from web user ``caller`` to ``dialled`` goes."""
        text = dialled.strip()
        if not text or len(text) > MAX_DIALLED:
            return Route.reject(484, "Enter a number, a user name or a sip: address")
        if text.lower().startswith("sip:"):
            return self._sip_uri(text)
        number = _VISUAL_SEPARATORS.sub("", text)
        if number in self._builtins:
            return Route("local", number)
        if _USER.match(text) and not text.isdigit():
            if text == caller:
                return Route.reject(482, "You cannot call yourself")
            if self._users is not None and text not in self._users:
                return Route.reject(404, f"There is no user called {text}")
            return Route("local", text)
        if _NUMBER.match(number):
            return Route.reject(404, f"No route for {number}: no trunk is configured for phone numbers")
        return Route.reject(484, "That is not a number, a user name or a sip: address")

    def inbound(self, to_user: str) -> Route:
        """What a SIP call addressed to ``to_user`` at the gateway rings."""
        if to_user in self._builtins:
            return Route("builtin", self._builtins[to_user])
        if _USER.match(to_user) and (self._users is None or to_user in self._users):
            return Route("user", to_user)
        return Route.reject(404, "No such user or extension")

    @staticmethod
    def _sip_uri(text: str) -> Route:
        match = _SIP_URI.match(text)
        if match is None:
            return Route.reject(484, "That sip: address is not valid")
        port = match.group("port")
        if port is not None and not 0 < int(port) < 65536:
            return Route.reject(484, "That sip: address has an invalid port")
        return Route("sip", text)
