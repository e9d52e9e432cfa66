"""Strict checks of an incoming INVITE before anything acts on it.

pjsip's parser is lenient: it accepts several requests that RFC 4475 calls
invalid (a Content-Length longer than the body, doubled spaces in the
request line, headers escaped into the Request-URI, a Date that is not GMT,
a display name with a bare comma).  A gateway facing the internet answers
those with 400 instead of letting them ring anybody.  Pure functions on the
raw message text, no SIP stack needed.
"""

from __future__ import annotations

import re

_REQUEST_LINE = re.compile(r"^INVITE (\S+) SIP/2\.0$")
_DATE = re.compile(r"^[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$")
_TOKENS = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*$")
_QUOTED = re.compile(r'^"(?:[^"\\\r\n]|\\.)*"$')
_COMPACT = {"f": "from", "t": "to", "i": "call-id", "l": "content-length", "v": "via"}
_REQUIRED = ("via", "from", "to", "call-id", "cseq")


def invite_problem(message: str) -> str | None:
    """Why ``message`` (a whole INVITE as received) must get 400, or None when it is acceptable."""
    head, separator, body = message.partition("\r\n\r\n")
    if not separator:
        head, separator, body = message.partition("\n\n")
    lines = head.replace("\r\n", "\n").split("\n")
    request = _REQUEST_LINE.match(lines[0])
    if request is None:
        return "malformed request line"
    uri = request.group(1)
    if uri.startswith("<"):
        return "Request-URI in angle brackets"
    if uri.lower().startswith(("sip:", "sips:")) and "?" in uri:
        return "headers in the Request-URI"
    headers = _headers(lines[1:])
    if headers is None:
        return "malformed header line"
    missing = [name for name in _REQUIRED if name not in headers]
    if missing:
        return f"missing {', '.join(missing)}"
    for name, check in _CHECKS.items():
        for value in headers.get(name, ()):
            problem = check(value)
            if problem is not None:
                return f"{name}: {problem}"
    lengths = headers.get("content-length", ())
    if lengths and len(body.encode("utf-8", "replace")) < int(lengths[0]):
        return "Content-Length larger than the body"
    return None


def _headers(lines: list[str]) -> dict[str, list[str]] | None:
    """Header name (lower case, compact forms expanded) -> values, with folded lines joined."""
    headers: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in lines:
        if line[:1] in (" ", "\t"):
            if last is None:
                return None
            last[-1] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name or " " in name:
            return None
        last = headers.setdefault(_COMPACT.get(name, name), [])
        last.append(value.strip())
    return headers


def _length(value: str) -> str | None:
    return None if value.isdigit() and len(value) <= 10 else "not a non-negative number"


def _date(value: str) -> str | None:
    return None if _DATE.match(value) else "not an RFC 1123 date in GMT"


def _address(value: str) -> str | None:
    """From and To: a name-addr with a well-formed display name, or a bare addr-spec."""
    if "<" in value:
        display, _, rest = value.partition("<")
        spec, closed, _ = rest.partition(">")
        display = display.strip()
        if not closed or re.search(r"\s", spec):
            return "malformed <addr-spec>"
        if display and not (_QUOTED.match(display) or _TOKENS.match(display)):
            return "display name must be quoted"
        return None
    spec = value.split(";", 1)[0].strip()
    if not spec or re.search(r"[\s,?]", spec):
        return "addr-spec with spaces, commas or headers must be in <>"
    return None


_CHECKS = {"content-length": _length, "date": _date, "from": _address, "to": _address}
