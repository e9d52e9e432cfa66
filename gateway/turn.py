"""Short-lived TURN credentials from a shared secret (coturn's ``use-auth-secret``).

The page gets a user name that carries its own expiry time and a password
derived from it with HMAC-SHA1, so no long-lived TURN password ever reaches
a browser (draft-uberti-behave-turn-rest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any


def turn_server(urls: list[str], secret: str, ttl: int, user: str, now: float) -> dict[str, Any]:
    """An RTCIceServer entry valid for ``ttl`` seconds from ``now``."""
    username = f"{int(now) + ttl}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return {"urls": urls, "username": username, "credential": base64.b64encode(digest).decode()}
