"""The operator's routing tables: which trunks a number leaves by, what an arriving DID rings."""

from __future__ import annotations

import dataclasses
import re

from .patterns import ExtensionPattern
from .permissions import User
from .route import Route

ANY_DID = "*"


@dataclasses.dataclass(frozen=True)
class OutboundRule:
    """A ``[[routes]]`` entry: what it matches leaves by ``trunks`` in order.

    A number rule takes valid phone numbers starting with ``prefix`` or matching
    ``pattern`` (both on E.164; neither: every number).  An extension rule
    (``extensions`` set) takes whatever was dialled that one of its
    :class:`~dialplan.patterns.ExtensionPattern` matches, phone number or not.
    Non-empty ``users``/``groups`` keep the rule to those users and group members.
    """

    name: str
    trunks: tuple[str, ...]
    prefix: str = ""
    pattern: re.Pattern[str] | None = None
    extensions: tuple[ExtensionPattern, ...] = ()
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def matches(self, dialled: str, e164: str | None) -> bool:
        """Whether the rule takes ``dialled``, whose E.164 form is ``e164`` when it is a valid number."""
        if self.extensions:
            return any(extension.matches(dialled) for extension in self.extensions)
        return (
            e164 is not None
            and e164.startswith(self.prefix)
            and (self.pattern is None or self.pattern.search(e164) is not None)
        )

    def admits(self, user: User) -> bool:
        return self.unrestricted or user.name in self.users or not self.groups.isdisjoint(user.groups)

    @property
    def unrestricted(self) -> bool:
        """Whether any user may take this rule."""
        return not self.users and not self.groups

    @property
    def takes_everything(self) -> bool:
        """Whether no number rule after this one can ever be reached."""
        return self.unrestricted and not self.prefix and self.pattern is None and not self.extensions


@dataclasses.dataclass(frozen=True)
class Room:
    """A ``[[rooms]]`` entry: a conference room that web users join by dialling ``number``
    and SIP callers by calling it at the gateway, ``max_participants`` at once.
    Non-empty ``users``/``groups`` keep it to those users and group members (on the page;
    SIP callers are admitted as any inbound call is)."""

    name: str
    number: str
    max_participants: int = 8
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def admits(self, user: User) -> bool:
        return (not self.users and not self.groups) or user.name in self.users or not self.groups.isdisjoint(user.groups)


@dataclasses.dataclass(frozen=True)
class InboundRule:
    """An ``[[inbound]]`` entry: a call to ``did`` (E.164 when it is a valid number,
    or ``*``), optionally only from ``trunk``, is answered with ``route``."""

    did: str
    route: Route
    trunk: str | None = None

    def matches(self, did: str, trunk: str | None) -> bool:
        return (self.did in (ANY_DID, did)) and (self.trunk is None or self.trunk == trunk)

    @property
    def catch_all(self) -> bool:
        return self.did == ANY_DID
