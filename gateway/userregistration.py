"""Each signed-in web user as a phone of their own at the PBX: one REGISTER per user.

A trunk with ``register_users`` is a PBX that knows the web users as its
extensions (``users.NAME.extension`` with ``sip_password``).  While a user
has a page signed in, the gateway keeps a registration there for them,
Contact ``sip:EXTENSION@front``, so the PBX shows them reachable and sends
their calls to the front, where the dialplan's extension rule rings their
pages.  Once their last page signs out or closes, it sends REGISTER with
Expires: 0 and forgets the registration.

pjsua2 holds at most eight accounts and aborts the process on a ninth, so
these are not pjsua accounts: the SIP front's Kamailio keeps them (the uac
module's remote registrations, uac_reg), added and removed over its
JSON-RPC.  uac_reg disables a registration the PBX refuses (a wrong secret)
or does not answer; the gateway enables it again ``sip.register_retry``
seconds later, doubling each time up to ten minutes, so a refused user
costs the PBX a few REGISTERs and holds up nobody else's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .background import Background
from .config import Config, user_registrar

log = logging.getLogger(__name__)

Rpc = Callable[..., Awaitable[Any]]
_DISABLED, _ONGOING, _ONLINE = 1, 2, 4
"""uac_reg's flags: refused or unanswered (and not tried again until enabled), REGISTER under way, registered."""
_MAX_DELAY = 600.0
_POLL_SECONDS = 1.0
_UNREGISTER_SECONDS = 12.0
"""Long enough for a challenged REGISTER (two transactions of at most 5 s each, the front's fr_timer)."""


@dataclasses.dataclass
class _State:
    failures: int = 0
    retry_at: float = 0.0
    """When a refused registration is enabled again; 0 while none is refused."""
    registered: bool = False


class UserRegistrations:
    """The registrations of the users signed in on this host, kept by the front's uac module."""

    def __init__(self, config: Config, rpc: Rpc, contact: str, clock: Callable[[], float] = time.monotonic) -> None:
        """``contact``: host:port (and parameters) of the front where the PBX sends the users' calls."""
        trunk = user_registrar(config)
        assert trunk is not None
        self._trunk = trunk
        self._secrets = config.sip_passwords
        self._extensions = {user: config.plan.extension(user) or "" for user in self._secrets}
        self._rpc = rpc
        self._contact = contact
        self._first_delay = config.sip.register_retry
        self._clock = clock
        self._states: dict[str, _State] = {}
        """Users who should be registered now (signed in, with a secret)."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._background = Background(log, "user registration")
        self._watcher: asyncio.Task[None] | None = None

    def signed_in(self, user: str) -> None:
        """The user's first page here signed in."""
        if user not in self._secrets or user in self._states:
            return
        self._states[user] = _State()
        self._background.spawn(self._in_turn(user, self._add(user)))
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def signed_out(self, user: str) -> None:
        """The user's last page here signed out or closed."""
        if self._states.pop(user, None) is not None:
            self._background.spawn(self._in_turn(user, self._remove(user)))

    async def close(self) -> None:
        """Unregister everyone (the gateway is stopping)."""
        for user in list(self._states):
            self.signed_out(user)
        if self._watcher is not None:
            self._watcher.cancel()
        await self._background.wait()

    def status(self) -> dict[str, dict[str, Any]]:
        """Per signed-in user: their extension, whether the PBX has them, refusals in a row."""
        return {
            user: {"extension": self._extensions[user], "registered": state.registered, "failures": state.failures}
            for user, state in self._states.items()
        }

    # -- inside -----------------------------------------------------------------

    async def _in_turn(self, user: str, work: Awaitable[None]) -> None:
        """One user's adds and removes happen in the order they were asked for."""
        async with self._locks.setdefault(user, asyncio.Lock()):
            await work

    async def _add(self, user: str) -> None:
        extension, trunk = self._extensions[user], self._trunk
        contact_host = self._contact.split(";", 1)[0].rsplit(":", 1)[0]
        record = (
            extension, user, contact_host, extension, trunk.host, "", extension, self._secrets[user], ".",
            f"sip:{trunk.host};transport={trunk.transport}", trunk.expires, 0, 0, ".", self._contact,
        )
        try:
            await self._rpc("uac.reg_add", *record)
        except OSError:  # a record left by a removal that failed: start afresh
            await self._rpc("uac.reg_remove", extension)
            await self._rpc("uac.reg_add", *record)
        log.info("registering %s at %s as extension %s", user, trunk.name, extension)

    async def _remove(self, user: str) -> None:
        """REGISTER with Expires: 0 (unless the PBX refused the last one), then forget the record."""
        extension = self._extensions[user]
        if not await self._flags(extension) & _DISABLED:
            await self._rpc("uac.reg_unregister", "l_uuid", extension)
            deadline = self._clock() + _UNREGISTER_SECONDS
            while await self._flags(extension) & _ONGOING and self._clock() < deadline:
                await asyncio.sleep(0.05)
        await self._rpc("uac.reg_remove", extension)
        log.info("unregistered %s (extension %s) at %s", user, extension, self._trunk.name)

    async def _flags(self, extension: str) -> int:
        info = await self._rpc("uac.reg_info", "l_uuid", extension)
        return int(info.get("flags", 0)) if isinstance(info, dict) else 0

    async def _watch(self) -> None:
        """Follow the registrations' states; enable refused ones again with back-off."""
        while self._states:
            await asyncio.sleep(_POLL_SECONDS)
            try:
                records = await self._rpc("uac.reg_dump")
                flags = {str(record.get("l_uuid")): int(record.get("flags", 0)) for record in records or []}
                for user, state in list(self._states.items()):
                    extension = self._extensions[user]
                    if extension in flags:
                        await self._follow(user, extension, state, flags[extension])
            except OSError as exc:
                log.warning("cannot follow the users' registrations at the front: %s", exc)

    async def _follow(self, user: str, extension: str, state: _State, flags: int) -> None:
        now = self._clock()
        if flags & _ONLINE and not state.registered:
            log.info("%s is registered at %s as extension %s", user, self._trunk.name, extension)
            state.failures = 0
        state.registered = bool(flags & _ONLINE)
        if flags & _DISABLED and not state.retry_at:
            state.failures += 1
            delay = min(_MAX_DELAY, self._first_delay * 2 ** (state.failures - 1))
            state.retry_at = now + delay
            log.warning(
                "%s at %s refused or did not answer the REGISTER of %s (extension %s; a wrong sip_password?); "
                "trying again in %.3g s", self._trunk.name, self._trunk.host, user, extension, delay,
            )
        elif state.retry_at and now >= state.retry_at:
            state.retry_at = 0.0
            await self._rpc("uac.reg_enable", "l_uuid", extension)
