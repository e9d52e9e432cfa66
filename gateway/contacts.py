"""Contacts: a web user's names for numbers and addresses, and the operator's shared ones.

Every field is checked here, for the page's requests, for the operator's
``[[contacts]]`` and for a user's file read back, so what is stored is always
what the page could have sent.  A caller matches a contact when both name the
same party (:func:`party`): numbers compare in E.164, read in the dialplan's
home country (``+44 20 7946 0000`` is ``020 7946 0000`` in GB), SIP URIs by
user and host, web users by name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .dialplan import numbers
from .requesterror import RequestError

MAX_CONTACTS = 200
"""A user's own contacts; the operator's shared ones come on top."""
NAME_LENGTH = 64
NUMBER_LENGTH = 256

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
"""A web user on this gateway, as the page's dial field takes one (web/js/dialtarget.js)."""
_SIP_URI = re.compile(r"^sips?:[A-Za-z0-9_.!~*'()&=+$,;?/%@:\[\]-]+$", re.I)
_ID = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_DIGIT = re.compile(r"[0-9]")
_PORT = re.compile(r":[0-9]{1,5}$")


class ContactError(RequestError, ValueError):
    """A contact request that cannot be carried out, worded for the user; ``field`` names the bad field."""

    def __init__(self, message: str, field: str = "", code: str = "invalid_contact") -> None:
        super().__init__(code, message, **({"field": field} if field else {}))
        self.field = field


@dataclasses.dataclass(frozen=True)
class Contact:
    id: str
    name: str
    number: str
    """A phone number (as typed, less spaces and dashes), a web user's name or a ``sip:`` URI: what a call dials."""
    favourite: bool = False
    shared: bool = False
    """The operator's (``[[contacts]]`` in the configuration): every user sees it, nobody changes it."""

    def stored(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "number": self.number, "favourite": self.favourite}

    def for_page(self) -> dict[str, Any]:
        return {**self.stored(), "shared": self.shared}


def check_name(value: object) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > NAME_LENGTH or _CONTROL.search(name):
        raise ContactError(f"A name is 1-{NAME_LENGTH} characters, without control characters", "name")
    return name


def check_number(value: object) -> str:
    """What the page's dial field would call for ``value``: a number cleaned of separators, a user name or a URI."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ContactError("Enter a number, a user name or a sip: address", "number")
    if len(text) > NUMBER_LENGTH:
        raise ContactError(f"A number or address is at most {NUMBER_LENGTH} characters", "number")
    if text.lower().startswith(("sip:", "sips:")):
        if _SIP_URI.match(text) and len(text.split(":", 1)[1]) > 0:
            return text
    else:
        number = numbers.diallable(text.removeprefix("tel:"))
        if number is not None and _DIGIT.search(number):
            return number
        if _USER_NAME.match(text):
            return text
    raise ContactError(f"{text[:40]!r} is not a number, a user name or a sip: address", "number")


def check_id(value: object) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ContactError("A contact id is 1-32 of A-Z a-z 0-9 -", "contact")
    return value


def contact(fields: Mapping[str, Any], contact_id: str, shared: bool = False) -> Contact:
    """A checked contact from ``name``, ``number`` and optional ``favourite`` (a page's request, a file, the config)."""
    favourite = fields.get("favourite", False)
    if not isinstance(favourite, bool):
        raise ContactError("favourite is true or false", "favourite")
    return Contact(check_id(contact_id), check_name(fields.get("name")), check_number(fields.get("number")), favourite, shared)


def party(address: str, country: str) -> str:
    """What every address of one party reduces to, so that a caller and a contact can be compared.

    A number (alone or as a SIP URI's user part) becomes E.164 when it is a
    valid number in ``country``, else its digits; another SIP URI ``user@host``
    without port or parameters; a web user's name stays a name.
    """
    text = address.strip()
    if text.lower().startswith(("sip:", "sips:")):
        rest = re.split(r"[;?>]", text.split(":", 1)[1], maxsplit=1)[0]
        user, at, host = rest.rpartition("@")
        if not at:
            return _PORT.sub("", rest).lower()
        number = numbers.diallable(user)
        if number is not None and _DIGIT.search(number):
            return numbers.normalise(number, country)
        return f"{user}@{_PORT.sub('', host).lower()}"
    number = numbers.diallable(text.removeprefix("tel:"))
    if number is not None and _DIGIT.search(number):
        return numbers.normalise(number, country)
    return text.lower()


class ContactIndex:
    """Contacts by the party they name, to look up many addresses (a whole history) against one list."""

    def __init__(self, contacts: Iterable[Contact], country: str) -> None:
        self._country = country
        self._by_party: dict[str, Contact] = {}
        for entry in contacts:
            self._by_party.setdefault(party(entry.number, country), entry)

    def find(self, address: str) -> Contact | None:
        """The first contact that names the party at ``address``."""
        return self._by_party.get(party(address, self._country)) if self._by_party else None
