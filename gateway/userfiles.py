"""One JSON file per web user in ``state_dir/users``: written whole, atomically, off the event loop.

Why files and not sqlite3: a user's data is small (at most 200 contacts and
200 calls, tens of kB), always read and written whole, and only call control
(one process, one event loop) writes it.  A file per user keeps one damaged
file from costing anyone else their data, an operator can read, back up or
delete one user's data with ordinary tools, and there is no schema to migrate.

A write takes a snapshot of the data on the loop, then a thread writes it to
a temporary file, fsyncs it and renames it over the old one, so a crash
leaves the old file or the new one, never half of one.  Each user has a lock
and a version: writes of one user never interleave, and a snapshot older
than one already written is dropped.  Until the newest snapshot is on disk,
reading the user's data again returns that snapshot, not the older file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .background import Background

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Far above what 200 contacts and 200 calls take; a larger file is not one this gateway wrote."""


class UserFiles:
    """``folder`` None keeps nothing on disk (tests of call control alone)."""

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder
        self._locks: dict[str, threading.Lock] = {}
        self._versions: dict[str, int] = {}
        self._written: dict[str, int] = {}
        self._unwritten: dict[str, tuple[int, str]] = {}
        """User -> (version, text) of the newest snapshot not yet on disk."""
        self._writes = Background(log, "writing a user's file")

    def path(self, user: str) -> Path | None:
        return None if self._folder is None else self._folder / f"{user}.json"

    def load(self, user: str) -> dict[str, Any] | None:
        """The user's data as last saved; None when there is none, or when the file was unreadable and moved aside."""
        unwritten = self._unwritten.get(user)
        if unwritten is not None:
            return json.loads(unwritten[1])
        path = self.path(user)
        if path is None or not path.exists():
            return None
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            self.move_aside(user, str(exc))
            return None
        return data

    def move_aside(self, user: str, why: str) -> None:
        """Keep a damaged file for the operator under another name; the user starts afresh."""
        path = self.path(user)
        if path is None or not path.exists():
            return
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            path.replace(aside)
        except OSError as exc:
            log.error("%s is unreadable (%s) and could not be moved aside: %s", path, why, exc.strerror)
            return
        log.warning("%s is unreadable (%s): moved to %s; %s starts with no contacts and no history", path, why, aside.name, user)

    def save(self, user: str, data: dict[str, Any]) -> None:
        """Write ``data`` (as it is now) in the background."""
        if self._folder is None:
            return
        version = self._versions[user] = self._versions.get(user, 0) + 1
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        self._unwritten[user] = (version, text)
        lock = self._locks.setdefault(user, threading.Lock())
        self._writes.spawn(self._save(user, version, text, lock))

    async def flush(self) -> None:
        """Until every write started has finished (at shutdown)."""
        await self._writes.wait()

    async def _save(self, user: str, version: int, text: str, lock: threading.Lock) -> None:
        await asyncio.to_thread(self._write, user, version, text, lock)
        if self._unwritten.get(user, (0, ""))[0] == version:  # on the loop, where save() sets it: no newer one came meanwhile
            del self._unwritten[user]

    def _write(self, user: str, version: int, text: str, lock: threading.Lock) -> None:
        path = self.path(user)
        assert path is not None
        with lock:
            if version <= self._written.get(user, 0):
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=f".{user}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.write(text)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            self._written[user] = version
