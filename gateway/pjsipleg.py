"""The real SIP leg: pjsua2's user agent on its own thread, behind :class:`~gateway.sipapi.SipLeg`.

Each method queues the user agent's own method on the SIP thread and waits
for it; pjsua2's errors come back as :class:`~gateway.sipapi.SipError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import SipConfig
from .dialplan import Trunk
from .engineapi import SipRole
from .sipapi import CallAudio, Caller, Quality, SipEventSink
from .sipthread import SipThread
from .sipua import SipUserAgent


class PjsipLeg:
    """One pjsua2 endpoint with its accounts, carrying every SIP dialog of one engine."""

    def __init__(
        self,
        config: SipConfig,
        role: SipRole,
        trunks: Sequence[Trunk],
        native: bool = False,
    ) -> None:
        self._thread = SipThread()
        self._config, self._role, self._trunks, self._native = config, role, trunks, native
        self._ua: SipUserAgent | None = None

    @property
    def address(self) -> str:
        return self._ua.address if self._ua is not None else ""

    async def start(self, events: SipEventSink) -> None:
        self._ua = SipUserAgent(self._thread, events, self._config, self._role, self._trunks, self._native)
        await self._thread.start(self._ua.create)

    async def stop(self) -> None:
        if self._ua is not None:
            await self._thread.stop(self._ua.destroy)

    async def make_call(self, call_id: str, trunk: str, target: str, caller: Caller, audio: CallAudio) -> None:
        await self._thread.run(self._user_agent().make_call, call_id, trunk, target, caller, audio)

    async def ring(self, call_id: str) -> None:
        await self._thread.run(self._user_agent().ring, call_id)

    async def answer(self, call_id: str, audio: CallAudio) -> None:
        await self._thread.run(self._user_agent().answer, call_id, audio)

    async def serve(self, call_id: str, app: str, audio: CallAudio | None) -> None:
        await self._thread.run(self._user_agent().serve, call_id, app, audio)

    async def reject(self, call_id: str, code: int, reason: str, users: Sequence[str]) -> None:
        await self._thread.run(self._user_agent().reject, call_id, code, reason, users)

    async def hangup(self, call_id: str) -> None:
        await self._thread.run(self._user_agent().hangup, call_id)

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        await self._thread.run(self._user_agent().send_dtmf, call_id, digits)

    async def hold(self, call_id: str, hold: bool) -> None:
        await self._thread.run(self._user_agent().hold, call_id, hold)

    async def transfer(self, call_id: str, trunk: str, target: str, replacing: str) -> None:
        await self._thread.run(self._user_agent().transfer, call_id, trunk, target, replacing)

    async def quality(self, call_id: str) -> Quality:
        return await self._thread.run(self._user_agent().quality, call_id)

    async def tick(self) -> None:
        await self._thread.run(self._user_agent().tick)

    def _user_agent(self) -> SipUserAgent:
        if self._ua is None:
            raise RuntimeError("the SIP leg is not started")
        return self._ua
