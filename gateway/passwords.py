"""Salted scrypt password hashes, so no password is ever stored in plain text."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
from typing import Callable

_N, _R, _P = 2**14, 8, 1
_MAX_MEMORY = 32 * 1024 * 1024
"""hashlib.scrypt's default ``maxmem``: a hash needing more could never be checked."""


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash``, both base64; what goes in the configuration file."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def is_password_hash(stored: str) -> bool:
    """Whether ``stored`` is a hash :func:`verify_password` can check, so a placeholder such as
    ``scrypt$16384$8$1$REPLACE$REPLACE`` stops the gateway at start instead of failing every sign-in."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(part.isdigit() for part in parts[1:4]):
        return False
    n, r, p = (int(part) for part in parts[1:4])
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * n * r > _MAX_MEMORY:
        return False
    try:
        return bool(base64.b64decode(parts[4], validate=True)) and bool(base64.b64decode(parts[5], validate=True))
    except binascii.Error:
        return False


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False for any malformed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class PasswordChecker:
    """Checks sign-in passwords off the event loop, at most ``limit`` at a time.

    An unknown name is checked against a dummy hash, so it costs what a known
    one does and answer times do not tell which names exist.  The cap keeps
    password guessing from taking every core away from calls.
    """

    def __init__(self, hashes: dict[str, str], limit: int, verify: Callable[[str, str], bool] = verify_password) -> None:
        self._hashes = hashes
        self._slots = asyncio.Semaphore(limit)
        self._verify = verify
        self._dummy = hash_password(os.urandom(16).hex())

    async def check(self, user: str, password: str | None) -> bool:
        stored = self._hashes.get(user)
        async with self._slots:
            loop = asyncio.get_running_loop()
            matches = await loop.run_in_executor(None, self._verify, password or "", stored or self._dummy)
        return matches and stored is not None and password is not None
