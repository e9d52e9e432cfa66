"""The error a page's or an operator's request ends in when it cannot be carried out."""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """A request that cannot be carried out; nothing changed."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        """Extra fields for the page's ``error`` message (``retry_after``, ``field``)."""
