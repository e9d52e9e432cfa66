"""REST API tokens: made here, stored as a SHA-256 hash, checked in constant time.

Not scrypt, as passwords are: scrypt is slow on purpose (tens of ms and
16 MiB per check) so that a stolen hash of a guessable password stays
expensive to guess.  A token is 256 random bits, which no one guesses
however fast the hash; and unlike a sign-in it is checked on every request,
where scrypt would let anyone with bogus tokens take the gateway's cores
away from calls.  So one SHA-256 (microseconds), as API keys commonly are.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

HASH = re.compile(r"sha256\$[0-9a-f]{64}")
"""What ``[[api.tokens]] hash`` holds."""
_PREFIX = "gw_"


def new_token() -> str:
    """A fresh token (256 bits, URL-safe), marked so it is recognised when it leaks into a log or a repository."""
    return _PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode()).hexdigest()


class TokenChecker:
    """Finds the operator whose token an ``Authorization: Bearer`` header carries."""

    def __init__(self, hashes: dict[str, str]) -> None:
        """``hashes``: operator name -> :func:`hash_token` of its token."""
        self._hashes = [(name, stored.encode()) for name, stored in hashes.items()]

    def operator(self, authorization: str) -> str | None:
        """The operator's name, or None for a missing, malformed or unknown token.

        Every stored hash is compared, each in constant time, so the answer
        time says nothing about how close a guess came or which operator matched.
        """
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = hash_token(token.strip()).encode()
        found = None
        for name, stored in self._hashes:
            if hmac.compare_digest(presented, stored):
                found = name
        return found
