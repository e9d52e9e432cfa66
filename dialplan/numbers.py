"""Phone numbers: what people type, read with :mod:`phonenumbers` in the home country.

Everything that depends on a country's numbering plan is left to
phonenumbers (maintained with the ITU and national regulators' changes);
this module only decides which strings are safe to hand to it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat

NumberFormat = Literal["e164", "e164_digits", "international", "national"]
"""How a trunk wants numbers written: ``+4420...``, ``4420...``, ``004420...``, ``020...``."""

NUMBER_FORMATS: tuple[NumberFormat, ...] = ("e164", "e164_digits", "international", "national")
ALWAYS_EMERGENCY = frozenset({"112", "911"})
"""Recognised everywhere: GSM phones route both to the local emergency service."""

_VISUAL_SEPARATORS = re.compile(r"[ \u00a0\-.()/]")
_DIALLABLE = re.compile(r"^\+?[0-9*#]{1,32}$")
"""ASCII only: phonenumbers would read fullwidth digits and vanity letters as digits."""


def diallable(text: str) -> str | None:
    """``text`` without visual separators if it is a plain number (digits, ``*``, ``#``, a leading ``+``)."""
    number = _VISUAL_SEPARATORS.sub("", text)
    return number if _DIALLABLE.match(number) else None


def parse(number: str, country: str) -> PhoneNumber | None:
    """The valid phone number ``number`` means when dialled in ``country``, or None.

    Accepts international (``+44...``), the country's own international
    prefix (``0044...`` in GB, ``011 44...`` in the US) and national forms.
    """
    if not _DIALLABLE.match(number):
        return None
    try:
        parsed = phonenumbers.parse(number, country)
    except NumberParseException:
        return None
    return parsed if phonenumbers.is_valid_number(parsed) else None


def e164(number: PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def normalise(text: str, country: str) -> str:
    """The E.164 form of ``text`` if it is a valid number in ``country``, else ``text``.

    DIDs then compare equal however a trunk writes them.
    """
    number = diallable(text)
    parsed = None if number is None else parse(number, country)
    return text if parsed is None else e164(parsed)


def is_foreign(number: PhoneNumber, country: str) -> bool:
    """Whether ``number`` belongs to another region than ``country`` (``+1 876`` Jamaica is foreign to US)."""
    return phonenumbers.region_code_for_number(number) != country


def written(number: PhoneNumber, style: NumberFormat, country: str, international_prefix: str) -> str:
    """``number`` written in ``style`` for a trunk in ``country``.

    ``national`` writes numbers of another country code with the international prefix,
    as a national carrier expects them.
    """
    full = e164(number)
    if style == "e164":
        return full
    if style == "national" and number.country_code == phonenumbers.country_code_for_region(country):
        return phonenumbers.normalize_digits_only(phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL))
    if style == "e164_digits":
        return full[1:]
    return international_prefix + full[1:]


@dataclasses.dataclass(frozen=True)
class EmergencyNumbers:
    """Which dialled strings are emergency calls in ``country``.

    ``numbers`` None means phonenumbers' short-number data for the country
    plus 112 and 911, so the default follows the regulator's list.
    """

    country: str
    numbers: frozenset[str] | None = None

    def __contains__(self, dialled: object) -> bool:
        if not isinstance(dialled, str):
            return False
        if self.numbers is not None:
            return dialled in self.numbers
        return dialled in ALWAYS_EMERGENCY or (
            dialled.isascii() and dialled.isdigit() and phonenumbers.is_emergency_number(dialled, self.country)
        )


def is_country(code: str) -> bool:
    """Whether phonenumbers knows ``code`` as an ISO 3166-1 alpha-2 region."""
    return code in phonenumbers.SUPPORTED_REGIONS
