"""Who may call what: the permission a number needs and the users who hold them.

Permissions follow cost and fraud risk, not geography alone: an
international or premium-rate call is what a stolen password is used for.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal, get_args

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType

from . import numbers

USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")

Permission = Literal["national", "mobile", "international", "premium", "toll_free", "sip_uri"]
PERMISSIONS: tuple[Permission, ...] = get_args(Permission)
DEFAULT_ALLOW: frozenset[Permission] = frozenset({"national", "mobile", "toll_free"})

_WHAT: dict[Permission, str] = {
    "national": "national numbers",
    "mobile": "mobile numbers",
    "international": "international numbers",
    "premium": "premium-rate numbers",
    "toll_free": "toll-free numbers",
    "sip_uri": "sip: addresses",
}
_COSTLY = frozenset({PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST, PhoneNumberType.PERSONAL_NUMBER})
"""Personal numbers (UK 070) are billed like premium rate and are a favourite of fraudsters."""


@dataclasses.dataclass(frozen=True)
class User:
    """A configured web user: what they may call, the groups they belong to, their extension
    and the name trunks that present their callers show."""

    name: str
    allow: frozenset[Permission] = DEFAULT_ALLOW
    groups: frozenset[str] = frozenset()
    extension: str | None = None
    display_name: str | None = None


def needed(number: PhoneNumber, country: str) -> tuple[Permission, ...]:
    """Every permission a call from ``country`` to the valid ``number`` takes."""
    kind = phonenumbers.number_type(number)
    costly: tuple[Permission, ...] = ("premium",) if kind in _COSTLY else ()
    if numbers.is_foreign(number, country):
        return ("international", *costly)
    if costly:
        return costly
    if kind == PhoneNumberType.TOLL_FREE:
        return ("toll_free",)
    if kind == PhoneNumberType.MOBILE:
        return ("mobile",)
    return ("national",)


def refusal(allow: frozenset[Permission], wanted: tuple[Permission, ...]) -> str | None:
    """Why a user holding ``allow`` may not make a call that takes ``wanted``, or None if they may."""
    missing = next((permission for permission in wanted if permission not in allow), None)
    return None if missing is None else f"You are not allowed to call {_WHAT[missing]}"
