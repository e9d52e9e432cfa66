"""Extension patterns as Asterisk writes them, so a route can take what a PBX's users dial.

A pattern starts with ``_``.  Then ``X`` is any digit, ``Z`` 1-9, ``N`` 2-9,
``[15-7]`` one of the digits listed (``-`` between two digits is a range),
``.`` one or more characters and ``!`` zero or more (both only at the end);
digits, ``*``, ``#`` and ``+`` stand for themselves.  ``X``, ``Z`` and ``N``
may be lower case and a ``-`` outside brackets is ignored, as in Asterisk's
``exten =>`` lines.  Without the ``_`` the text is one extension, matched
whole (``*97``).  A pattern matches the whole dialled string, as written by
:func:`dialplan.numbers.diallable` (separators removed).
"""

from __future__ import annotations

import dataclasses
import re

MAX_PATTERN = 64
_LITERAL = re.compile(r"\+?[0-9*#]{1,32}")
_CLASSES = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}
_TAILS = {".": ".+", "!": ".*"}
_RANGE = re.compile(r"([0-9])-([0-9])")
_SET = re.compile(r"(?:[0-9](?:-[0-9])?|[*#])+")


@dataclasses.dataclass(frozen=True)
class ExtensionPattern:
    """One pattern (``_2XXX``) or extension (``*97``) as the operator wrote it, and what it matches."""

    text: str
    regex: re.Pattern[str] = dataclasses.field(compare=False, repr=False)

    def matches(self, dialled: str) -> bool:
        return self.regex.fullmatch(dialled) is not None


def extension_pattern(text: str) -> ExtensionPattern:
    """The pattern ``text`` writes; raises ``ValueError`` saying what is wrong with it."""
    if not 0 < len(text) <= MAX_PATTERN:
        raise ValueError(f"{text!r} is not 1-{MAX_PATTERN} characters")
    if not text.startswith("_"):
        extension = text.replace("-", "")
        if not _LITERAL.fullmatch(extension):
            raise ValueError(f"{text!r} is not an extension (digits, *, #, a leading +) or a pattern starting with _")
        return ExtensionPattern(text, re.compile(re.escape(extension)))
    return ExtensionPattern(text, re.compile(_translate(text)))


def _translate(text: str) -> str:
    """The regular expression for the pattern ``text`` (``_`` included)."""
    body, parts, index = text[1:], [], 0
    while index < len(body):
        char = body[index]
        if char in _TAILS:
            if index != len(body) - 1:
                raise ValueError(f"{text!r}: {char!r} may only end a pattern")
            parts.append(_TAILS[char])
        elif char == "[":
            end = body.find("]", index)
            members = body[index + 1 : end]
            if end < 0 or not _SET.fullmatch(members) or any(low > high for low, high in _RANGE.findall(members)):
                raise ValueError(f"{text!r}: a [...] set lists digits, * or #, and ranges such as 1-5")
            parts.append(f"[{members}]")
            index = end
        elif char.upper() in _CLASSES:
            parts.append(_CLASSES[char.upper()])
        elif char in "0123456789*#" or (char == "+" and not parts):
            parts.append(re.escape(char))
        elif char != "-":
            raise ValueError(f"{text!r}: {char!r} has no meaning in a pattern (X Z N [..] . ! digits * # +)")
        index += 1
    if not parts:
        raise ValueError(f"{text!r} is an empty pattern")
    return "".join(parts)
