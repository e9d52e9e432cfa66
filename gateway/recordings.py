"""Recordings as their users see them: files under ``[recording] dir``, one folder per user.

A call's recording is ``<dir>/<user>/<id>.wav`` (and ``.mp3``/``.opus`` when configured) with
``<id>.json``, its metadata, both written by the media engine that recorded it
(:mod:`gateway.recorder`); an operator finds them there. Call control names the files
(:meth:`RecordingStore.new_path`) and serves them to their user alone: the page signs in over its
WebSocket, so it gets a short-lived token there (the ``recordings`` request) and shows it to
``GET /recordings`` (the list) and ``GET /recordings/{id}.{ext}`` (a file, with ranges, so it
plays and seeks in an ``<audio>`` element, which cannot send headers: hence ``?token=`` too).
A token names one user; another user's recording is simply not found (404).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

TOKEN_SECONDS = 600
"""How long a page's token opens its recordings; the page asks again for a new list."""
_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{8}")
_CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "opus": "audio/ogg"}


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """The recording's metadata next to its audio (``path`` without extension), replaced whole."""
    part = path.parent / f"{path.name}.json.part"
    part.write_text(json.dumps(meta, indent=1))
    os.replace(part, path.parent / f"{path.name}.json")


class RecordingStore:
    """The recordings directory, and the tokens that open one user's part of it."""

    def __init__(self, directory: Path, token_seconds: float = TOKEN_SECONDS) -> None:
        self.directory = directory
        self._token_seconds = token_seconds
        self._tokens: dict[str, tuple[str, float]] = {}

    def new_path(self, user: str) -> Path:
        """Where a new recording of ``user``'s goes, without extension: a fresh id in the user's folder.

        User names are a-z 0-9 . _ - and start with a letter or digit (the dialplan checks), so they
        are safe as folder names."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        return self.directory / user / f"{stamp}-{secrets.token_hex(4)}"

    def issue_token(self, user: str) -> tuple[str, float]:
        """A new token for ``user``'s recordings, and how many seconds it lasts."""
        now = time.monotonic()
        self._tokens = {token: entry for token, entry in self._tokens.items() if entry[1] > now}
        token = secrets.token_urlsafe(24)
        self._tokens[token] = (user, now + self._token_seconds)
        return token, self._token_seconds

    def user_of(self, token: str) -> str | None:
        entry = self._tokens.get(token)
        return entry[0] if entry is not None and entry[1] > time.monotonic() else None

    def list(self, user: str) -> list[dict[str, Any]]:
        """The user's saved recordings, newest first, as their metadata says."""
        folder = self.directory / user
        found = []
        for meta_file in folder.glob("*.json") if folder.is_dir() else ():
            if not _ID.fullmatch(meta_file.stem):
                continue
            try:
                found.append(json.loads(meta_file.read_text()))
            except (OSError, ValueError) as exc:
                log.warning("recording %s: unreadable metadata: %s", meta_file, exc)
        return sorted(found, key=lambda meta: str(meta.get("start", "")), reverse=True)

    def file(self, user: str, name: str) -> Path | None:
        """``<id>.<format>`` of the user's own recordings, if it exists."""
        stem, _, ext = name.partition(".")
        if not _ID.fullmatch(stem) or ext not in _CONTENT_TYPES:
            return None
        path = self.directory / user / name
        return path if path.is_file() else None


class RecordingsApi:
    """``/recordings``: a signed-in page's own recordings, by the token its WebSocket gave it."""

    def __init__(self, store: RecordingStore) -> None:
        self._store = store

    def _user(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else request.query.get("token", "")
        user = self._store.user_of(token) if token else None
        if user is None:
            raise web.HTTPUnauthorized(
                text="a token from the page's `recordings` request is needed (Bearer, or ?token=)\n",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return user

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response({"recordings": self._store.list(self._user(request))})

    async def file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = self._store.file(self._user(request), name)
        if path is None:
            raise web.HTTPNotFound(text="no such recording of yours\n")
        content_type = _CONTENT_TYPES[name.rpartition(".")[2]]
        return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "private, no-store"})
