"""A media engine: one pjsua2 endpoint plus the peer connections of its calls.

It carries out :mod:`gateway.engineapi` commands and reports events; it makes
no decisions of its own except ending calls whose media died.  Each call is
an :class:`EngineCall` that owns a WebRTC leg, a SIP leg (by id) and the
bridge between them, and ends exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Any, Awaitable, Callable

import pjsua2 as pj
from aiortc.mediastreams import MediaStreamTrack

from . import endcause, engineapi as api
from .background import Background
from .bridge import Bridge
from .config import Config
from .endcause import EndCause
from .sipthread import SipThread
from .sipua import SipUserAgent
from .webrtcleg import WebRtcLeg

log = logging.getLogger(__name__)

_PJ_ETOOMANY = 70010
_TICK_SECONDS = 1.0
_SIP_GONE_SECONDS = 5.0
FAILOVER_CODES = frozenset({0, 408, 500, 502, 503, 504})
"""A target that answers these (or nothing) is skipped for the next one."""


class EngineCall:
    """One call as the engine carries it."""

    def __init__(self, call_id: str, has_sip: bool, targets: tuple[tuple[str, str], ...] = (), caller: str = "") -> None:
        self.call_id = call_id
        self.has_sip = has_sip
        self.targets = list(targets)
        self.caller = caller
        self.attempt = 0
        self.progressed = False
        self.abandoned = False
        self.answered = False
        self.bridge = Bridge()
        self.webrtc: WebRtcLeg | None = None
        self.local_cause: EndCause | None = None
        self.ending = False
        self.ended = asyncio.Event()


class MediaEngine:
    """Executes commands from call control; reports through ``emit``."""

    def __init__(self, config: Config, emit: api.EventSink, role: api.SipRole = api.SipRole()) -> None:
        self._config = config
        self._emit = emit
        self._sip = SipThread()
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}"
        trunks = list(config.plan.trunks.values())
        self._ua = SipUserAgent(self._sip, self, config.sip, role, trunks, self._new_call_id)
        self._calls: dict[str, EngineCall] = {}
        self._background = Background(log, "engine task")
        self._ticker: asyncio.Task[None] | None = None

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> None:
        await self._sip.start(self._ua.create)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        self._emit(api.EngineReady(self._ua.address, self._config.sip.max_calls))

    async def stop(self) -> None:
        """Hang up every call with BYE, close every leg, then destroy pjsua2."""
        if self._ticker is not None:
            self._ticker.cancel()
        for call in list(self._calls.values()):
            call.local_cause = call.local_cause or endcause.SHUTDOWN
            self._spawn(self._hangup(call))
        await self._background.wait()
        await self._sip.stop(self._ua.destroy)
        for call in list(self._calls.values()):
            await self._finish(call, call.local_cause or endcause.SHUTDOWN)

    @property
    def sip_address(self) -> str:
        return self._ua.address

    # -- commands -----------------------------------------------------------

    def send(self, command: api.Command) -> None:
        """Take one command; work that waits runs as a task so commands never block."""
        if isinstance(command, api.Dial):
            call = self._calls[command.call_id] = EngineCall(command.call_id, False, command.targets, command.caller)
            self._spawn(self._dial(call, command))
            return
        call = self._calls.get(command.call_id)
        if call is None or call.ending:
            log.debug("engine: %s for a call that is gone", type(command).__name__)
            return
        if isinstance(command, api.Accept):
            self._spawn(self._accept(call, command.offer))
        elif isinstance(command, api.Serve):
            self._spawn(self._sip.run(self._ua.serve, call.call_id, command.app))
        elif isinstance(command, api.Ring):
            self._spawn(self._sip.run(self._ua.ring, call.call_id))
        elif isinstance(command, api.Reject):
            call.local_cause = endcause.from_sip(command.code, command.reason)
            call.ending = True
            self._spawn(self._sip.run(self._ua.reject, call.call_id, command.code, command.reason, command.users))
        elif isinstance(command, api.Hangup):
            self._spawn(self._hangup(call))
        elif isinstance(command, api.SendDtmf):
            self._spawn(self._sip.run(self._ua.send_dtmf, call.call_id, command.digits))
        elif isinstance(command, api.Hold):
            self._spawn(self._sip.run(self._ua.hold, call.call_id, command.hold))
        elif isinstance(command, api.GetStats):
            self._spawn(self._report_stats(call, command.request))

    async def _dial(self, call: EngineCall, command: api.Dial) -> None:
        if await self._answer_browser(call, command.offer):
            await self._next_target(call)

    async def _next_target(self, call: EngineCall) -> None:
        """INVITE the next target; the call ends when none is left."""
        cause = endcause.EndCause("failed", 500, "No target to call")
        while call.targets and not call.ending:
            trunk, target = call.targets.pop(0)
            try:
                await self._sip.run(self._ua.make_call, call.call_id, trunk, target, call.caller, call.bridge.audio)
            except pj.Error as exc:
                too_many = exc.status == _PJ_ETOOMANY
                cause = endcause.NO_FREE_LINE if too_many else endcause.EndCause("failed", 500, f"Cannot call: {exc.reason}")
                log.warning("call %s: INVITE to %s %s failed: %s", call.call_id, trunk, target, exc.reason)
                continue
            call.has_sip = True
            call.attempt += 1
            call.progressed = call.abandoned = False
            if call.ending:
                await self._hangup(call)
            elif call.targets:
                self._spawn(self._abandon_if_silent(call, call.attempt))
            return
        await self._finish(call, call.local_cause or cause)

    async def _abandon_if_silent(self, call: EngineCall, attempt: int) -> None:
        """A target that says nothing (not even 180) within ``sip.failover_timeout`` is given up.

        SIP's own INVITE timeout is 32 seconds: far too long for a caller
        waiting while another trunk could carry the call.
        """
        await asyncio.sleep(self._config.sip.failover_timeout)
        if call.attempt == attempt and not call.progressed and not call.ending:
            log.info("call %s: no answer from the target within %.0f s, trying the next", call.call_id, self._config.sip.failover_timeout)
            call.abandoned = True
            await self._sip.run(self._ua.hangup, call.call_id)

    async def _report_stats(self, call: EngineCall, request: str) -> None:
        codec, jitter, loss, rtt = await self._sip.run(self._ua.quality, call.call_id)
        self._emit(api.CallStats(call.call_id, request, codec, jitter, loss, rtt))

    async def _accept(self, call: EngineCall, offer: str) -> None:
        if await self._answer_browser(call, offer):
            await self._sip.run(self._ua.answer, call.call_id, call.bridge.audio)

    async def _answer_browser(self, call: EngineCall, offer: str) -> bool:
        """Answer the browser's offer; False (and the call ended) when that fails."""
        webrtc = self._config.webrtc
        call.webrtc = WebRtcLeg(webrtc.ice_servers, webrtc.jitter_ms, lambda: self._media_failed(call, endcause.ICE_FAILED))
        try:
            answer = await call.webrtc.answer(offer, call.bridge.to_browser, self._browser_track(call))
        except Exception as exc:  # noqa: BLE001 - any bad SDP ends this call only
            log.warning("call %s: cannot answer the browser's offer: %s", call.call_id, exc)
            call.local_cause = EndCause("failed", 488, f"Cannot use the browser's offer: {exc}")
            await self._hangup(call)
            return False
        if call.ending:
            await self._hangup(call)
            return False
        self._emit(api.WebrtcAnswer(call.call_id, answer))
        return True

    @staticmethod
    def _browser_track(call: EngineCall) -> Callable[[MediaStreamTrack], None]:
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                call.bridge.attach(track)

        return on_track

    async def _hangup(self, call: EngineCall) -> None:
        """End the SIP leg if there is one; its DISCONNECTED finishes the call."""
        call.ending = True
        if not call.has_sip:
            await self._finish(call, call.local_cause or endcause.NORMAL)
            return
        await self._sip.run(self._ua.hangup, call.call_id)
        try:
            await asyncio.wait_for(call.ended.wait(), _SIP_GONE_SECONDS)
        except asyncio.TimeoutError:
            log.warning("call %s: SIP leg did not confirm the hang-up; ending it anyway", call.call_id)
            await self._finish(call, call.local_cause or endcause.NORMAL)

    def _media_failed(self, call: EngineCall, cause: EndCause) -> None:
        if not call.ending:
            log.info("call %s: %s", call.call_id, cause.reason)
            call.local_cause = cause
            self._spawn(self._hangup(call))

    async def _finish(self, call: EngineCall, cause: EndCause) -> None:
        """Close the browser leg and report the end; runs once per call."""
        if call.ended.is_set():
            return
        call.ended.set()
        call.ending = True
        self._calls.pop(call.call_id, None)
        await call.bridge.close()
        if call.webrtc is not None:
            await call.webrtc.close()
        log.debug("engine call %s closed: %s", call.call_id, cause.cause)
        self._emit(api.Ended(call.call_id, cause.cause, cause.code, cause.reason))

    # -- SIP events (SipEvents), on the loop -------------------------------

    def on_incoming(self, call_id: str, to_user: str, from_uri: str, from_name: str, trunk: str) -> None:
        self._calls[call_id] = EngineCall(call_id, has_sip=True)
        self._emit(api.Incoming(call_id, to_user, from_uri, from_name, trunk))

    def on_trunk_state(self, trunk: str, code: int, reason: str, expires: int) -> None:
        registered = 200 <= code < 300 and expires > 0
        log.info("trunk %s: %s (%s %s)", trunk, "registered" if registered else "not registered", code, reason)
        self._emit(api.TrunkState(trunk, registered, code, reason))

    def on_progress(self, call_id: str, code: int, early_media: bool) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.progressed = True
            self._emit(api.Progress(call_id, code, early_media))

    def on_answered(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.answered = call.progressed = True
            self._emit(api.Answered(call_id))

    def on_dtmf(self, call_id: str, digit: str) -> None:
        if call_id in self._calls:
            self._emit(api.DtmfReceived(call_id, digit))

    def on_hold(self, call_id: str, local: bool, remote: bool) -> None:
        if call_id in self._calls:
            self._emit(api.HoldChanged(call_id, local, remote))

    def on_media_timeout(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            self._media_failed(call, endcause.MEDIA_TIMEOUT)

    def on_disconnected(self, call_id: str, code: int, reason: str) -> None:
        call = self._calls.get(call_id)
        if call is None:
            return
        if call.targets and not call.answered and not call.ending and (code in FAILOVER_CODES or call.abandoned):
            log.info("call %s: %s %s, failing over to %s", call_id, code, reason, call.targets[0][0] or call.targets[0][1])
            call.has_sip = False
            self._spawn(self._next_target(call))
            return
        self._spawn(self._finish(call, call.local_cause or endcause.from_sip(code, reason)))

    # -- inside ---------------------------------------------------------------

    def _new_call_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def _spawn(self, work: Awaitable[Any]) -> None:
        self._background.spawn(work)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK_SECONDS)
            try:
                await self._sip.run(self._ua.tick)
            except pj.Error as exc:
                log.warning("media check failed: %s", exc.info())
