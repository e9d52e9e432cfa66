"""Each web user's contacts and call history, as call control keeps them for the user's pages.

Read from the user's file (:mod:`gateway.userfiles`) when first needed,
kept in memory while the user has a page open, written back after every
change.  Each change returns the message every page of the user is sent
(``contacts`` or ``history``, docs/protocol.md).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from . import contacts
from .callhistory import MAX_ENTRIES, HistoryEntry
from .contacts import MAX_CONTACTS, Contact, ContactError, ContactIndex
from .userfiles import UserFiles

log = logging.getLogger(__name__)

REQUESTS = frozenset({"save_contact", "delete_contact", "clear_history"})
"""The page's requests that change the user's data."""


@dataclasses.dataclass
class _Data:
    contacts: list[Contact] = dataclasses.field(default_factory=list)
    history: list[HistoryEntry] = dataclasses.field(default_factory=list)
    """Newest first."""

    def stored(self) -> dict[str, Any]:
        return {
            "version": 1,
            "contacts": [entry.stored() for entry in self.contacts],
            "history": [entry.stored() for entry in self.history],
        }


class UserData:
    """``country`` reads numbers for matching (the dialplan's); ``shared`` are the operator's contacts."""

    def __init__(self, country: str, shared: Sequence[Contact], files: UserFiles) -> None:
        self._country = country
        self._shared = list(shared)
        self._files = files
        self._loaded: dict[str, _Data] = {}

    # -- what pages are told -------------------------------------------------

    def welcome(self, user: str) -> list[dict[str, Any]]:
        """What a page gets after ``signed_in``: the contacts, then the history."""
        return [self.contacts_message(user), self.history_message(user)]

    def contacts_message(self, user: str) -> dict[str, Any]:
        return {"type": "contacts", "contacts": [entry.for_page() for entry in self._all_contacts(user)]}

    def history_message(self, user: str) -> dict[str, Any]:
        """The whole history, each entry with the user's current name for its peer."""
        known = self._index(user)
        return {"type": "history", "entries": [_for_page(entry, known) for entry in self._data(user).history]}

    def caller_name(self, user: str, address: str) -> tuple[str, str] | None:
        """(name, contact id) of ``user``'s contact for the party at ``address``, if there is one."""
        found = self._index(user).find(address)
        return None if found is None else (found.name, found.id)

    # -- changes -------------------------------------------------------------

    def record(self, user: str, entry: HistoryEntry) -> dict[str, Any]:
        """Keep a call that ended; returns the ``history_entry`` message for the user's pages."""
        data = self._data(user)
        data.history.insert(0, entry)
        del data.history[MAX_ENTRIES:]
        self._files.save(user, data.stored())
        return {"type": "history_entry", "entry": _for_page(entry, self._index(user))}

    def request(self, user: str, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Carry out one of REQUESTS (fields checked by :mod:`gateway.protocol`); ContactError when refused."""
        if kind == "save_contact":
            self._save_contact(user, fields)
        elif kind == "delete_contact":
            self._delete_contact(user, contacts.check_id(fields["contact"]))
        else:
            self._data(user).history.clear()
            self._files.save(user, self._data(user).stored())
            log.info("%s cleared their call history", user)
            return self.history_message(user)
        self._files.save(user, self._data(user).stored())
        # Names in the history follow the contacts: the pages get both again.
        return self.contacts_message(user)

    def forget(self, user: str) -> None:
        """Drop the user's data from memory (their last page has gone); the file keeps it."""
        self._loaded.pop(user, None)

    async def flush(self) -> None:
        await self._files.flush()

    # -- inside --------------------------------------------------------------

    def _save_contact(self, user: str, fields: Mapping[str, Any]) -> None:
        own = self._data(user).contacts
        contact_id = fields.get("contact")
        if contact_id is None:
            if len(own) >= MAX_CONTACTS:
                raise ContactError(f"You have {MAX_CONTACTS} contacts already: delete one first")
            own.append(contacts.contact(fields, secrets.token_hex(6)))
            return
        index = self._own_index(user, contacts.check_id(contact_id))
        own[index] = contacts.contact(fields, own[index].id)

    def _delete_contact(self, user: str, contact_id: str) -> None:
        del self._data(user).contacts[self._own_index(user, contact_id)]

    def _own_index(self, user: str, contact_id: str) -> int:
        for index, entry in enumerate(self._data(user).contacts):
            if entry.id == contact_id:
                return index
        if any(entry.id == contact_id for entry in self._shared):
            raise ContactError("Shared contacts are set by the operator and cannot be changed here", "contact", "read_only")
        raise ContactError("No such contact (deleted on another page?)", "contact", "no_such_contact")

    def _all_contacts(self, user: str) -> list[Contact]:
        """The user's own contacts, then the shared ones: a user's own name for a number wins."""
        return [*self._data(user).contacts, *self._shared]

    def _index(self, user: str) -> ContactIndex:
        return ContactIndex(self._all_contacts(user), self._country)

    def _data(self, user: str) -> _Data:
        data = self._loaded.get(user)
        if data is None:
            data = self._loaded[user] = self._read(user)
        return data

    def _read(self, user: str) -> _Data:
        stored = self._files.load(user)
        if stored is None:
            return _Data()
        try:
            lists = isinstance(stored.get("contacts"), list) and isinstance(stored.get("history"), list)
            if stored.get("version") != 1 or not lists:
                raise ValueError("not version 1 with lists of contacts and history")
            own = [contacts.contact(entry, entry.get("id")) for entry in stored["contacts"]]
            history = [HistoryEntry.from_stored(entry) for entry in stored["history"]]
        except (ValueError, AttributeError, TypeError) as exc:  # ContactError is a ValueError
            self._files.move_aside(user, str(exc))
            return _Data()
        return _Data(own[:MAX_CONTACTS], history[:MAX_ENTRIES])


def _for_page(entry: HistoryEntry, known: ContactIndex) -> dict[str, Any]:
    found = known.find(entry.peer)
    return entry.for_page("" if found is None else found.name)
