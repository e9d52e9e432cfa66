"""Each web user's missed calls and voicemail messages, kept in ``state_dir/voicemail/<user>/``.

``index.json`` lists the entries, newest first; a message is ``<entry>.wav``
beside it, written by the media engine that recorded it (a worker process,
perhaps: the directory is shared) and ``greeting.wav`` is the user's own
greeting, if any.  Only call control writes ``index.json``, so processes
need no lock.  A page plays a message over HTTP with a URL signed for its
user that expires (:meth:`Mailboxes.url`): only a WebSocket signed in as
that user is given one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_ENTRIES = 100
"""Per user; the oldest entry (and its message) goes when a new one comes."""
URL_SECONDS = 900
"""How long a page's URL for a message works: long enough to listen and seek, not to be shared for long."""
_BYTES_PER_SECOND = 16000
"""What a second of message takes on disk (8 kHz, 16 bits)."""
_SPARE_BYTES = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_ENTRY = re.compile(r"[0-9a-f]{16}")


@dataclasses.dataclass
class Entry:
    """One missed call: who, when, and the message they left (``seconds`` 0: none)."""

    id: str
    time: float
    caller: str
    caller_name: str = ""
    seconds: float = 0.0
    new: bool = True

    def for_page(self) -> dict[str, Any]:
        return {
            "id": self.id, "time": self.time, "from": self.caller, "from_name": self.caller_name,
            "voicemail": self.seconds, "new": self.new,
        }


class Mailboxes:
    """Every user's entries under ``root``; ``users`` are the configured ones (None: open sign-in)."""

    def __init__(self, root: Path, users: Collection[str] | None, max_seconds: float, greeting: str = "") -> None:
        self._root = root.resolve()
        self._users = users
        self._max_seconds = max_seconds
        self._greeting = greeting
        self._key = secrets.token_bytes(32)
        """Signs message URLs; a restart makes the pages ask again."""
        self._entries: dict[str, list[Entry]] = {}
        self._signed_in: set[str] = set()

    def known(self, user: str) -> bool:
        """Whether ``user`` has a mailbox: a configured user or, with open sign-in, one who has signed in
        since the start or has entries from before (so a SIP caller cannot make mailboxes for any name)."""
        if not _NAME.fullmatch(user):
            return False
        if self._users is not None:
            return user in self._users
        return user in self._signed_in or self._dir(user).is_dir()

    def signed_in(self, user: str) -> None:
        self._signed_in.add(user)

    @staticmethod
    def new_id() -> str:
        """An entry's id, and its message's file name: call ids may repeat after a restart."""
        return secrets.token_hex(8)

    def record_to(self, user: str, entry_id: str) -> tuple[Path, str] | None:
        """Where entry ``entry_id``'s message goes and the greeting to play first; None (and a log line)
        when the mailbox cannot take a message: not writable, or too little space left for the longest one."""
        folder = self._dir(user)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            log.warning("voicemail for %s cannot be stored in %s: %s", user, folder, exc)
            return None
        if not os.access(folder, os.W_OK | os.X_OK):
            log.warning("voicemail for %s cannot be stored: %s is not writable", user, folder)
            return None
        if free < self._max_seconds * _BYTES_PER_SECOND + _SPARE_BYTES:
            log.warning("voicemail for %s cannot be stored: only %d bytes free in %s", user, free, folder)
            return None
        own = folder / "greeting.wav"
        return folder / f"{entry_id}.wav", str(own) if own.is_file() else self._greeting

    def add(self, user: str, entry: Entry) -> None:
        """A new missed call, newest first; the oldest beyond MAX_ENTRIES goes, with its message."""
        entries = [entry, *self.entries(user)]
        for old in entries[MAX_ENTRIES:]:
            self._remove_message(user, old.id)
        self._save(user, entries[:MAX_ENTRIES])

    def entries(self, user: str) -> list[Entry]:
        if user not in self._entries:
            self._entries[user] = self._load(user)
        return list(self._entries[user])

    def mark_heard(self, user: str, entry_id: str) -> bool:
        """False when the user has no such entry."""
        entries = self.entries(user)
        entry = next((entry for entry in entries if entry.id == entry_id), None)
        if entry is None:
            return False
        if entry.new:
            entry.new = False
            self._save(user, entries)
        return True

    def delete(self, user: str, entry_id: str) -> bool:
        entries = self.entries(user)
        kept = [entry for entry in entries if entry.id != entry_id]
        if len(kept) == len(entries):
            return False
        self._remove_message(user, entry_id)
        self._save(user, kept)
        return True

    # -- playing a message over HTTP ------------------------------------------------

    def url(self, user: str, entry_id: str, now: float) -> str:
        """A path that plays the message for URL_SECONDS, without the WebSocket's session."""
        expires = int(now) + URL_SECONDS
        return f"/voicemail/{user}/{entry_id}.wav?expires={expires}&sig={self._sign(user, entry_id, expires)}"

    def message_file(self, user: str, entry_id: str, expires: str, signature: str, now: float) -> Path | None:
        """The message a signed URL names, while it is valid and the message exists; else None."""
        if not (_NAME.fullmatch(user) and _ENTRY.fullmatch(entry_id) and expires.isdigit()):
            return None
        if int(expires) < now or not hmac.compare_digest(signature, self._sign(user, entry_id, int(expires))):
            return None
        path = self._dir(user) / f"{entry_id}.wav"
        return path if path.is_file() else None

    def _sign(self, user: str, entry_id: str, expires: int) -> str:
        return hmac.new(self._key, f"{user}/{entry_id}/{expires}".encode(), hashlib.sha256).hexdigest()

    # -- files ---------------------------------------------------------------------

    def _dir(self, user: str) -> Path:
        return self._root / user

    def _load(self, user: str) -> list[Entry]:
        path = self._dir(user) / "index.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return [Entry(**item) for item in data["entries"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("mailbox of %s: %s is unreadable (%s); starting it empty", user, path, exc)
            return []

    def _save(self, user: str, entries: list[Entry]) -> None:
        """Write index.json whole (a new file, then renamed), so a crash leaves the old one or the new."""
        self._entries[user] = entries
        path = self._dir(user) / "index.json"
        partial = path.with_name("index.json.part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"entries": [dataclasses.asdict(entry) for entry in entries]}), encoding="utf-8")
            partial.replace(path)
        except OSError as exc:
            log.warning("mailbox of %s cannot be written to %s: %s", user, path, exc)

    def _remove_message(self, user: str, entry_id: str) -> None:
        try:
            (self._dir(user) / f"{entry_id}.wav").unlink(missing_ok=True)
        except OSError as exc:
            log.warning("voicemail message %s of %s cannot be removed: %s", entry_id, user, exc)
