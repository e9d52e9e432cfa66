"""Who a web user's call says it is from, towards a trunk.

A PBX wants to know which of its users calls (to show the extension on a
desk phone, to call back, to bill); a carrier usually wants the company's
own account and nothing else.  Each trunk says which with ``caller_id``:

``trunk``
    every call is from the trunk's account (``username``, else ``gateway``),
    whoever placed it.
``user``
    the caller's own identity (their extension, else their user name, and
    their display name) goes out in the header ``identity_header`` names:
    ``from``, ``pai`` (P-Asserted-Identity, RFC 3325; From stays the trunk's
    account, which a registrar that authenticates by From expects) or ``both``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

CallerIdPolicy = Literal["trunk", "user"]
CALLER_ID_POLICIES: tuple[CallerIdPolicy, ...] = ("trunk", "user")
IdentityHeader = Literal["from", "pai", "both"]
IDENTITY_HEADERS: tuple[IdentityHeader, ...] = ("from", "pai", "both")


@dataclasses.dataclass(frozen=True)
class CallerId:
    """A web user as a trunk sees them: the SIP user part and the display name."""

    user: str
    name: str


@dataclasses.dataclass(frozen=True)
class Presented:
    """The identities one call carries: ``from_`` None is the trunk's own account, ``asserted`` None no PAI."""

    from_: CallerId | None = None
    asserted: CallerId | None = None
