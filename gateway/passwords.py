"""Salted scrypt password hashes, so no password is ever stored in plain text."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from typing import Callable

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash``, both base64; what goes in the configuration file."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


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
