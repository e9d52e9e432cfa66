"""The answer the dialplan gives: what to do with one call."""

from __future__ import annotations

import dataclasses
from typing import Literal

Action = Literal["local", "sip", "builtin", "user", "group", "trunk", "room", "reject"]


@dataclasses.dataclass(frozen=True)
class Target:
    """One way out through a trunk: the number as that trunk wants it written."""

    trunk: str
    number: str


@dataclasses.dataclass(frozen=True)
class Route:
    """What the gateway does with a call, by ``action``:

    ``local``: INVITE ``target`` at the gateway itself (a built-in extension or a web user);
    ``sip``: INVITE the SIP URI ``target``;
    ``trunk``: call ``number`` through ``targets`` (:class:`Target`), trying each in turn
    until one answers other than with a failure; ``emergency`` marks calls that must
    never be held back;
    ``builtin``: answer with the application ``target``;
    ``user``: ring the web user ``target``;
    ``group``: ring every web user in ``targets`` (names) at once, the first to answer wins;
    ``target`` names the group;
    ``room``: join the conference room ``target`` (:class:`~dialplan.rules.Room`), whose ``number`` was dialled;
    ``reject``: refuse with the SIP status ``code`` and the human ``reason``.
    """

    action: Action
    target: str = ""
    code: int = 0
    reason: str = ""
    targets: tuple[Target, ...] | tuple[str, ...] = ()
    number: str = ""
    emergency: bool = False

    @classmethod
    def reject(cls, code: int, reason: str) -> Route:
        return cls("reject", code=code, reason=reason)
