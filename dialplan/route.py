"""The answer the dialplan gives: what to do with one call."""

from __future__ import annotations

import dataclasses
from typing import Literal

Action = Literal["local", "sip", "builtin", "user", "reject"]


@dataclasses.dataclass(frozen=True)
class Route:
    """``local``: INVITE ``target`` at the gateway itself (a built-in extension or a web user);
    ``sip``: INVITE the SIP URI ``target``; ``builtin``: answer with the application ``target``;
    ``user``: ring the web user ``target``; ``reject``: refuse with ``code`` and ``reason``."""

    action: Action
    target: str = ""
    code: int = 0
    reason: str = ""

    @classmethod
    def reject(cls, code: int, reason: str) -> Route:
        return cls("reject", code=code, reason=reason)
