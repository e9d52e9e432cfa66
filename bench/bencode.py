"""Bencode, the encoding of rtpengine's ng control protocol: integers, strings, lists and dictionaries.

Strings are text here (SDP, flags, call ids); they go out as UTF-8 and come back as ``str``.
"""

from __future__ import annotations

from typing import Any


def encode(value: Any) -> bytes:
    """``value`` (int, str, bytes, list, tuple or dict with str keys) in bencode; dict keys sorted as the format wants."""
    if isinstance(value, bool) or not isinstance(value, (int, str, bytes, list, tuple, dict)):
        raise TypeError(f"bencode has no {type(value).__name__}")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, dict):
        return b"d" + b"".join(encode(key) + encode(value[key]) for key in sorted(value)) + b"e"
    return b"l" + b"".join(encode(item) for item in value) + b"e"


def decode(data: bytes) -> Any:
    """The one value ``data`` holds; ValueError if it is not exactly that."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"{len(data) - end} bytes after the bencoded value")
    return value


def _decode(data: bytes, at: int) -> tuple[Any, int]:
    kind = data[at : at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1 : end]), end + 1
    if kind in (b"l", b"d"):
        items, at = [], at + 1
        while data[at : at + 1] != b"e":
            if at >= len(data):
                raise ValueError("bencoded list or dictionary not closed")
            item, at = _decode(data, at)
            items.append(item)
        return (dict(zip(items[::2], items[1::2])) if kind == b"d" else items), at + 1
    if kind.isdigit():
        colon = data.index(b":", at)
        end = colon + 1 + int(data[at:colon])
        if end > len(data):
            raise ValueError("bencoded string runs past the end")
        return data[colon + 1 : end].decode(errors="surrogateescape"), end
    raise ValueError(f"not bencode at byte {at}: {data[at : at + 10]!r}")
