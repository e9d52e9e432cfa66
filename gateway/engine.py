"""A media engine: a SIP leg plus the browser legs of its calls.

It carries out :mod:`gateway.engineapi` commands and reports events; it makes
no decisions of its own except ending calls whose media died.  Each call is
an :class:`~gateway.enginecall.EngineCall` that owns a browser leg, a SIP
dialog (by id) and the bridge between them, and ends exactly once.  The SIP
side is reached only through :class:`~gateway.sipapi.SipLeg`, so this module
never touches pjsua2 and its logic is tested with a fake leg.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Awaitable, Callable, Protocol

from aiortc.mediastreams import MediaStreamTrack
from .dialplan import CallerId

from . import audioformat, endcause, engineapi as api, g711, logs
from .background import Background
from .config import Config
from .endcause import EndCause
from .enginecall import EngineCall, Phase
from .nativemedia import NativeMedia
from .recorder import Recorders, Tap
from .sipapi import (
    AudioIO, CallAudio, Caller, Disconnected, MediaReady, MediaTimeout, NativeSocket, Responded, SipError, SipEvent,
    SipLeg, TransferRequest,
)
from .voicemail import Recording, load_greeting

log = logging.getLogger(__name__)

_TICK_SECONDS = 1.0
_SIP_GONE_SECONDS = 5.0
_SIP_RESTART_MAX_SECONDS = 30.0
_MEDIA_START_SECONDS = 1.0
"""Voicemail: how much later than the answer the caller's audio may start; the message may still be whole."""
ROOMS_NEED_NATIVE = "Conference rooms need the native media relay (engines.media)"
SIP_LOST = EndCause("failed", 500, "The SIP side of this call's media engine stopped")
FAILOVER_CODES = frozenset({0, 408, 500, 502, 503, 504})
"""A target that answers these (or nothing) is skipped for the next one."""


class BrowserLeg(Protocol):
    """The browser's side of a call (:class:`gateway.webrtcleg.WebRtcLeg`)."""

    async def answer(self, offer: str, outgoing: MediaStreamTrack, on_track: Callable[[MediaStreamTrack], None]) -> str: ...
    async def take_media_path(self) -> object:
        """Once connected: the media path for the native relay (:class:`gateway.webrtchandoff.MediaPath`)."""
    async def close(self) -> None: ...


BrowserLegFactory = Callable[[Callable[[], None], "Callable[[], None] | None"], BrowserLeg]
"""Makes a browser leg that calls its first argument when the connection fails, its second once it is up."""


def webrtc_legs(config: Config) -> BrowserLegFactory:
    """Browser legs as aiortc peer connections, with the configured ICE servers and jitter."""
    from .webrtcleg import WebRtcLeg

    webrtc = config.webrtc
    return lambda on_failed, on_connected: WebRtcLeg(webrtc.ice_servers, webrtc.jitter_ms, on_failed, on_connected)


class MediaEngine:
    """Executes commands from call control; reports through ``emit``."""

    def __init__(
        self,
        config: Config,
        emit: api.EventSink,
        sip: SipLeg,
        browser_legs: BrowserLegFactory | None = None,
        native: NativeMedia | None = None,
    ) -> None:
        self._config = config
        self._emit = emit
        self._sip = sip
        self._browser_legs = browser_legs or webrtc_legs(config)
        self._native = native
        """Calls' media carried by the native relay; None: through Python (:mod:`gateway.bridge`)."""
        self._calls: dict[str, EngineCall] = {}
        self._recorders = Recorders(config.recording, emit)
        self._background = Background(log, "engine task")
        self._ticker: asyncio.Task[None] | None = None
        self._sip_restart: asyncio.Task[None] | None = None
        """While the SIP leg is being started again after its process died."""

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> None:
        if self._native is not None:
            self._native.start(self._on_sip_event)
        await self._sip.start(self._on_sip_event)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        self._ready()

    def _ready(self) -> None:
        media = "python" if self._native is None else "native"
        self._emit(api.EngineReady(self._sip.address, self._config.sip.max_calls, media))

    async def stop(self) -> None:
        """Hang up every call with BYE, close every leg, then stop the SIP leg."""
        for task in (self._ticker, self._sip_restart):
            if task is not None:
                task.cancel()
        for call in list(self._calls.values()):
            call.cause = call.cause or endcause.SHUTDOWN
            self._background.spawn(self._hangup(call))
        await self._background.wait()
        await self._sip.stop()
        for call in list(self._calls.values()):
            await self._finish(call, call.cause or endcause.SHUTDOWN)
        await self._recorders.close()
        if self._native is not None:
            self._native.close()

    def sip_lost(self) -> None:
        """The SIP leg is gone with its process, and every dialog with it: each call ends now, not after a
        BYE, and the engine is down (the front ends the dialogs) until a new SIP leg is up."""
        for call in list(self._calls.values()):
            call.dialog = False
            call.cause = call.cause or SIP_LOST
            self._background.spawn(self._finish(call, call.cause))
        self._emit(api.EngineDown(SIP_LOST.reason))
        if self._sip_restart is None:
            self._sip_restart = asyncio.get_running_loop().create_task(self._restart_sip())

    async def _restart_sip(self) -> None:
        """Start the SIP leg again: at once, then later each time it fails, as the supervisor does a worker."""
        delay = 0.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self._sip.start(self._on_sip_event)
                break
            except OSError as exc:
                delay = min(max(delay * 2, self._config.engines.restart_delay), _SIP_RESTART_MAX_SECONDS)
                log.error("the SIP leg did not start again (%s); trying in %.1f s", exc, delay)
        self._sip_restart = None
        log.info("the SIP leg is back on %s", self._sip.address)
        self._ready()

    @property
    def sip_address(self) -> str:
        return self._sip.address

    # -- commands -----------------------------------------------------------

    def send(self, command: api.Command) -> None:
        """Take one command; work that waits runs as a task so commands never block."""
        with logs.for_call(command.call_id):
            self._command(command)

    def _command(self, command: api.Command) -> None:
        spawn = self._background.spawn
        if isinstance(command, api.Dial):
            if command.call_id in self._calls:
                log.warning("engine: Dial for call %s, which exists already", command.call_id)
                return
            caller = Caller(command.caller, CallerId(command.caller_user, command.caller_name))
            call = self._calls[command.call_id] = EngineCall(command.call_id, Phase.DIALLING, command.targets, caller)
            call.audio = self._audio(call)
            spawn(self._dial(call, command.offer))
            return
        if isinstance(command, api.Join) and command.offer:  # a web participant: a call of its own
            if command.call_id not in self._calls:
                call = self._calls[command.call_id] = EngineCall(command.call_id, Phase.JOINING)
                spawn(self._join(call, command))
            return
        call = self._calls.get(command.call_id)
        if isinstance(command, api.TransferVerdict):
            self._verdict(call, command)
            return
        if call is None or call.ending:
            log.debug("engine: %s for a call that is gone", type(command).__name__)
            return
        if isinstance(command, api.Accept):
            if call.move(Phase.ACCEPTING):
                spawn(self._accept(call, command.offer))
        elif isinstance(command, api.Serve):
            if call.move(Phase.SERVING):
                spawn(self._or_end(call, self._serve(call, command)))
        elif isinstance(command, api.Join):
            if call.move(Phase.JOINING):
                spawn(self._or_end(call, self._join(call, command)))
        elif isinstance(command, api.Ring):
            if call.move(Phase.RINGING):
                spawn(self._or_end(call, self._sip.ring(call.call_id)))
        elif isinstance(command, api.Reject):
            call.cause = endcause.from_sip(command.code, command.reason)
            spawn(self._hangup(call, lambda: self._sip.reject(call.call_id, command.code, command.reason, command.users)))
        elif isinstance(command, api.Hangup):
            spawn(self._hangup(call))
        elif isinstance(command, api.SendDtmf):
            if self._native is None or not self._native.send_dtmf(call.call_id, command.digits):
                spawn(self._sip.send_dtmf(call.call_id, command.digits))
        elif isinstance(command, api.Hold):
            spawn(self._sip.hold(call.call_id, command.hold))
        elif isinstance(command, api.GetStats):
            spawn(self._report_stats(call, command.request))
        elif isinstance(command, api.Record):
            self._recorders.record(command, lambda: self._tap(call))
        elif isinstance(command, api.Transfer):
            spawn(self._transfer(call, command))

    async def _transfer(self, call: EngineCall, command: api.Transfer) -> None:
        """REFER the far end; a REFER pjsua2 cannot send is a failed transfer, the call goes on."""
        try:
            await self._sip.transfer(call.call_id, command.trunk, command.target, command.replacing)
        except SipError as exc:
            log.warning("call %s: cannot transfer: %s", call.call_id, exc.reason)
            self._emit(api.TransferStatus(call.call_id, 500, f"Cannot transfer: {exc.reason}"))

    def _asked_to_transfer(self, call: EngineCall | None, event: TransferRequest) -> None:
        """The far end REFERs an answered call: call control decides, the SIP side waits for it."""
        if call is None or call.phase is not Phase.ANSWERED or call.verdict is not None:
            event.answer((False, "the call is not answered"))
            return
        call.verdict = event.answer
        self._emit(api.TransferAsked(call.call_id, event.target))

    def _verdict(self, call: EngineCall | None, command: api.TransferVerdict) -> None:
        if call is None or call.verdict is None:
            return
        answer, call.verdict = call.verdict, None
        if command.allowed and not call.move(Phase.TRANSFERRING):
            answer((False, "the call is ending"))
            return
        answer((command.allowed, command.reason))

    async def _dial(self, call: EngineCall, offer: str) -> None:
        if await self._answer_browser(call, offer):
            await self._next_target(call)

    async def _next_target(self, call: EngineCall) -> None:
        """INVITE the next target; the call ends when none is left."""
        cause = EndCause("failed", 500, "No target to call")
        while call.targets and call.phase is Phase.DIALLING:
            trunk, target = call.targets.pop(0)
            # Inviting before the INVITE leaves: its 180, 183 or 200 may reach the loop before make_call returns.
            call.attempt += 1
            call.dialog = True
            call.move(Phase.INVITING)
            try:
                await self._sip.make_call(call.call_id, trunk, target, call.caller, call.audio)
            except SipError as exc:
                call.dialog = False
                cause = endcause.NO_FREE_LINE if exc.no_free_line else EndCause("failed", 500, f"Cannot call: {exc.reason}")
                log.warning("call %s: INVITE to %s %s failed: %s", call.call_id, trunk, target, exc.reason)
                if not call.move(Phase.DIALLING):
                    break  # hung up meanwhile
                continue
            self._watch(call)
            return
        await self._finish(call, call.cause or cause)

    def _watch(self, call: EngineCall) -> None:
        """Give up the INVITE just sent if its target stays silent.

        SIP's own INVITE timeout is 32 seconds, with the page saying "Calling"
        all along: a target that sends nothing back, not even 100 Trying,
        within ``sip.no_response_timeout`` is not responding; one that does not
        ring within ``sip.failover_timeout`` while another target could carry
        the call is skipped for it.
        """
        if call.ending:
            return
        loop, sip = asyncio.get_running_loop(), self._config.sip
        call.stop_timers()
        call.timers.append(loop.call_later(sip.no_response_timeout, self._not_responding, call, call.attempt))
        if call.targets:
            call.timers.append(loop.call_later(sip.failover_timeout, self._not_ringing, call, call.attempt))

    def _not_responding(self, call: EngineCall, attempt: int) -> None:
        if call.attempt != attempt or call.phase is not Phase.INVITING or call.responded == attempt:
            return
        log.info("call %s: no response at all within %.0f s", call.call_id, self._config.sip.no_response_timeout)
        if call.targets:
            self._give_up(call, attempt)
        else:
            call.cause = endcause.NOT_RESPONDING
            self._background.spawn(self._hangup(call))

    def _not_ringing(self, call: EngineCall, attempt: int) -> None:
        if call.attempt == attempt and call.phase is Phase.INVITING:
            log.info("call %s: the target did not ring within %.0f s", call.call_id, self._config.sip.failover_timeout)
            self._give_up(call, attempt)

    def _give_up(self, call: EngineCall, attempt: int) -> None:
        """End this attempt; its end fails over to the next target (see :meth:`_disconnected`)."""
        call.abandoned = attempt
        self._background.spawn(self._sip.hangup(call.call_id))

    async def _report_stats(self, call: EngineCall, request: str) -> None:
        if self._native is None:
            codec, jitter, loss, rtt = await self._sip.quality(call.call_id)
        else:
            codec, jitter, loss, rtt = self._native.quality(call.call_id)
        self._emit(api.CallStats(call.call_id, request, codec, jitter, loss, rtt))

    async def _accept(self, call: EngineCall, offer: str) -> None:
        call.audio = self._audio(call)
        if await self._answer_browser(call, offer):
            await self._or_end(call, self._sip.answer(call.call_id, call.audio))

    async def _serve(self, call: EngineCall, command: api.Serve) -> None:
        recording = await self._record(call, command) if command.app == "voicemail" else None
        audio: CallAudio | None = None
        if self._native is not None:
            audio = await self._native.serve(call.call_id, command.app, recording)
        elif recording is not None:
            audio = AudioIO(recording, recording.receive)
        await self._sip.serve(call.call_id, command.app, audio)

    async def _join(self, call: EngineCall, command: api.Join) -> None:
        """A conference room's participant: its one leg goes into the room's mix in the native relay
        (the browser's once ICE and DTLS are up, see :meth:`_hand_off`)."""
        if self._native is None:
            log.warning("call %s: conference room %s refused: %s", call.call_id, command.room, ROOMS_NEED_NATIVE)
            call.cause = EndCause("failed", 488 if call.dialog else 503, ROOMS_NEED_NATIVE)
            await self._hangup(call, lambda: self._sip.reject(call.call_id, 488, ROOMS_NEED_NATIVE, ()))
            return
        self._native.join(call.call_id, command.room)
        if command.offer:
            await self._answer_browser(call, command.offer)
        else:
            await self._sip.answer(call.call_id, self._native.open_call(call.call_id))

    async def _record(self, call: EngineCall, command: api.Serve) -> Recording:
        """Voicemail: the greeting to play and the message to keep, ended by a hang-up once it is full."""
        greeting = await asyncio.to_thread(load_greeting, command.greeting)
        rate = audioformat.RATE if self._native is None else g711.RATE
        limit = self._config.voicemail.max_seconds
        call.recording = recording = Recording(greeting, rate, limit)
        call.record_to = Path(command.record)
        seconds = recording.prompt_seconds + limit + _MEDIA_START_SECONDS
        call.timers.append(asyncio.get_running_loop().call_later(seconds, self._message_full, call))
        return recording

    def _message_full(self, call: EngineCall) -> None:
        if not call.ending:
            log.info("call %s: the voicemail message is %.0f s long, the most it may be", call.call_id, self._config.voicemail.max_seconds)
            self._background.spawn(self._hangup(call))

    async def _save_message(self, call: EngineCall) -> None:
        """Write the caller's message (if it is one: not silence) and tell call control."""
        assert call.recording is not None and call.record_to is not None
        try:
            seconds = await asyncio.to_thread(call.recording.save, call.record_to)
        except OSError as exc:
            log.warning("call %s: the voicemail message cannot be written to %s: %s", call.call_id, call.record_to, exc)
            return
        if seconds:
            log.info("call %s: voicemail message of %.1f s saved in %s", call.call_id, seconds, call.record_to)
            self._emit(api.VoicemailSaved(call.call_id, seconds))

    def _audio(self, call: EngineCall) -> CallAudio:
        """Where the SIP leg's audio goes: the native relay's socket, or the Python bridge."""
        return call.bridge.audio if self._native is None else self._native.open_call(call.call_id)

    def _tap(self, call: EngineCall) -> Tap:
        """Where a recording takes the call's audio: the native relay, or the Python bridge."""
        return call.bridge.tap if self._native is None else self._native.tap(call.call_id)

    async def _hand_off(self, call: EngineCall) -> None:
        """The browser's ICE and DTLS are up: from now on the native relay carries the packets."""
        assert self._native is not None and call.browser is not None
        try:
            path = await call.browser.take_media_path()
        except Exception as exc:  # noqa: BLE001 - this call only: aiortc's internals or the pair were not as expected
            log.warning("call %s: cannot carry the audio natively: %r", call.call_id, exc)
            self._media_failed(call, EndCause("failed", 500, "The gateway could not carry this call's audio"))
            return
        if not call.ending:
            self._native.browser_ready(call.call_id, path)

    async def _answer_browser(self, call: EngineCall, offer: str) -> bool:
        """Answer the browser's offer; False (and the call ended) when that fails."""
        on_connected = None if self._native is None else (lambda: self._background.spawn(self._hand_off(call)))
        call.browser = self._browser_legs(lambda: self._media_failed(call, endcause.ICE_FAILED), on_connected)
        try:
            answer = await call.browser.answer(offer, call.bridge.to_browser, self._browser_track(call))
        except Exception as exc:  # noqa: BLE001 - any bad SDP ends this call only
            log.warning("call %s: cannot answer the browser's offer: %s", call.call_id, exc)
            call.cause = EndCause("failed", 488, f"Cannot use the browser's offer: {exc}")
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

    async def _or_end(self, call: EngineCall, operation: Awaitable[None]) -> None:
        """Run a SIP operation the call cannot go on without; if pjsua2 refuses it, end the call."""
        try:
            await operation
        except SipError as exc:
            log.warning("call %s: SIP leg refused: %s", call.call_id, exc.reason)
            call.cause = call.cause or EndCause("failed", 500, f"SIP error: {exc.reason}")
            await self._hangup(call)

    async def _hangup(self, call: EngineCall, ending: Callable[[], Awaitable[None]] | None = None) -> None:
        """End the SIP dialog if there is one (its end finishes the call), else finish at once.

        ``ending`` is how the dialog is ended (a rejection); by default a
        hang-up: BYE, CANCEL or a final response as its state needs.  The
        browser leg and the bridge close only after the dialog has ended.
        """
        call.move(Phase.ENDING)
        if not call.dialog:
            await self._finish(call, call.cause or endcause.NORMAL)
            return
        try:
            await (ending or (lambda: self._sip.hangup(call.call_id)))()
        except SipError as exc:
            log.warning("call %s: hang-up refused by the SIP leg: %s", call.call_id, exc.reason)
        try:
            await asyncio.wait_for(call.ended.wait(), _SIP_GONE_SECONDS)
        except asyncio.TimeoutError:
            log.warning("call %s: SIP leg did not confirm the hang-up; ending it anyway", call.call_id)
            await self._finish(call, call.cause or endcause.NORMAL)

    def _media_failed(self, call: EngineCall, cause: EndCause) -> None:
        if not call.ending:
            log.info("call %s: %s", call.call_id, cause.reason)
            call.cause = cause
            self._background.spawn(self._hangup(call))

    async def _finish(self, call: EngineCall, cause: EndCause) -> None:
        """Close the browser leg and report the end; runs once per call."""
        if not call.move(Phase.ENDED):
            return
        if call.verdict is not None:
            call.verdict((False, "the call ended"))
            call.verdict = None
        call.stop_timers()
        call.ended.set()
        self._calls.pop(call.call_id, None)
        self._recorders.ended(call.call_id)  # its last audio, before the media path closes
        if self._native is not None:
            self._native.close_call(call.call_id)  # before aiortc closes the browser's socket under the relay
        await call.bridge.close()
        if call.browser is not None:
            await call.browser.close()
        if call.recording is not None:
            await self._save_message(call)
        self._emit(api.Ended(call.call_id, cause.cause, cause.code, cause.reason))

    # -- SIP events, on the loop ----------------------------------------------

    def _on_sip_event(self, event: SipEvent) -> None:
        with logs.for_call(getattr(event, "call_id", "")):
            self._sip_event(event)

    def _sip_event(self, event: SipEvent) -> None:
        if isinstance(event, NativeSocket):
            if self._native is not None:
                self._native.adopt(event.call_id, event.sock, event.rtcp)
            else:
                event.sock.close()
                event.rtcp.close()
            return
        if isinstance(event, api.Incoming):
            self._calls[event.call_id] = EngineCall(event.call_id, Phase.INCOMING)
            self._emit(event)
            return
        if isinstance(event, api.TrunkState):
            log.info("trunk %s: %s (%s %s)", event.trunk, "registered" if event.registered else "not registered", event.code, event.reason)
            self._emit(event)
            return
        if isinstance(event, api.SipRefused):
            self._emit(event)
            return
        call = self._calls.get(event.call_id)
        if isinstance(event, TransferRequest):
            self._asked_to_transfer(call, event)
            return
        if call is None:
            return
        if isinstance(event, Disconnected):
            self._disconnected(call, event)
        elif isinstance(event, MediaTimeout):
            self._media_failed(call, endcause.MEDIA_TIMEOUT)
        elif call.ending:
            return
        elif isinstance(event, Responded):
            call.responded = call.attempt
        elif isinstance(event, MediaReady):
            if self._native is not None:
                self._native.sip_ready(event)
        elif isinstance(event, api.Progress):
            if call.phase is Phase.EARLY or call.move(Phase.EARLY):
                self._emit(event)
        elif isinstance(event, api.Answered):
            if call.move(Phase.ANSWERED):
                self._emit(event)
        elif isinstance(event, (api.Transferred, api.TransferStatus)):
            if call.phase is Phase.TRANSFERRING:
                call.move(Phase.ANSWERED)
            self._emit(event)
        else:
            self._emit(event)

    def _disconnected(self, call: EngineCall, event: Disconnected) -> None:
        call.dialog = False
        silent = call.abandoned == call.attempt
        if call.targets and call.phase in (Phase.INVITING, Phase.EARLY) and (event.code in FAILOVER_CODES or silent):
            call.move(Phase.DIALLING)
            log.info("call %s: %s %s, failing over to %s", call.call_id, event.code, event.reason, call.targets[0][0] or call.targets[0][1])
            self._background.spawn(self._next_target(call))
            return
        self._background.spawn(self._finish(call, call.cause or endcause.from_sip(event.code, event.reason)))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK_SECONDS)
            if self._native is not None:
                self._native.report_timeouts()
            self._recorders.tick()
            try:
                await self._sip.tick()
            except SipError as exc:
                log.warning("media check failed: %s", exc.reason)
