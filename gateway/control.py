"""Call control: who is signed in, which calls exist, and what each page is told.

It asks :mod:`dialplan` what to do, tells the media engine through
:mod:`gateway.engineapi` commands, and turns engine events into page
messages.  It holds no pjsua2 or aiortc object.  A call for a user that
nobody answers goes to the engine's voicemail when it may, and is noted in
the user's mailbox (:mod:`gateway.mailbox`) as missed.  The REST API asks it for
click-to-call and for the calls in progress; it reports each call ringing,
answered and ended to one listener (the webhooks).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any, Callable, Protocol

from . import callhistory, endcause, engineapi as api, logs
from .backoff import SignInBackoff
from .callquality import LegQuality
from .callstate import CallState, can_move, log_move
from .config import Config
from .controlcall import ControlCall, Engine, Session
from .dialplan import Route
from .directcalls import DIRECT, DirectCalls
from .endcause import EndCause
from .mailbox import Entry, Mailboxes
from .metrics import Metrics
from .passwords import PasswordChecker
from .requesterror import RequestError
from .recordings import RecordingStore
from .rooms import RoomRouter, Rooms
from .transfer import Transfers, far_end_of_incoming, far_end_of_route
from .turn import turn_server
from .userdata import UserData
from .userfiles import UserFiles

log = logging.getLogger(__name__)

CALLS_PER_PAGE = 2
"""A page's calls at once (ringing at it, placed or answered by it): one to talk on, one on hold or waiting."""


class Presence(Protocol):
    """Shares who is signed in here with other gateway hosts (through the SIP front)."""

    def signed_in(self, user: str) -> None: ...
    def signed_out(self, user: str) -> None: ...


LoadListener = Callable[[api.EngineLink, bool], None]
"""Told when an engine becomes full (True) or has room again (False)."""


class CallListener(Protocol):
    """Told ``ringing``, ``answered`` and ``ended`` for every call; must not block."""

    def __call__(self, event: str, call: ControlCall) -> None: ...


class CallControl:
    """Knows every engine; places each new call on one with room.

    ``sip_host`` is the gateway's public SIP address when a front stands
    before the engines; without one it is the (single) engine's own.
    """

    def __init__(
        self,
        config: Config,
        *,
        sip_host: str = "",
        presence: Presence | None = None,
        metrics: Metrics | None = None,
        userdata: UserData | None = None,
        recordings: RecordingStore | None = None,
        room_router: RoomRouter | None = None,
    ) -> None:
        self._config = config
        self.userdata = userdata or UserData(config.plan.country, config.contacts, UserFiles(None))
        """Each user's contacts and call history (without one given: kept in memory only)."""
        self.metrics = metrics or Metrics()
        """Counted where the events happen: here, and in the supervisor (restarts)."""
        self.dialplan = config.plan
        self._public_sip = sip_host
        self._sip_host = ""
        self._presence = presence
        self.on_load: LoadListener | None = None
        """Told when an engine fills up or has room again (the supervisor tells the front)."""
        self.on_call: CallListener | None = None
        self._engines: dict[api.EngineLink, Engine] = {}
        self._direct = Engine(DirectCalls(self._direct_event), media=DIRECT) if config.calls.direct else None
        """Carries calls between two pages of this gateway; never chosen for any other call, never counted as an engine."""
        self._trunks: dict[str, api.TrunkState] = {}
        self._signed_in: dict[str, set[Session]] = {}
        self._calls: dict[str, ControlCall] = {}
        self.rooms = Rooms(config.plan, room_router)
        self.transfers = Transfers(self)
        """The page's transfers, and the far end's REFERs (:mod:`gateway.transfer`)."""
        self._recordings = recordings if config.recording.enabled else None
        self._saving: dict[str, Session] = {}
        """Calls that ended while recording: the page told when the last save is done."""
        http = config.http
        self._backoff = SignInBackoff(http.sign_in_delay, http.sign_in_lockout_after, http.sign_in_lockout)
        self._passwords = PasswordChecker(config.users, http.password_checks) if config.users is not None else None
        voicemail = config.voicemail
        self.mailboxes = Mailboxes(config.state_dir / "voicemail", config.users, voicemail.max_seconds, voicemail.greeting)

    @property
    def sip_host(self) -> str:
        """The gateway's SIP address as peers should use it ("" until an engine is ready)."""
        return self._sip_host

    @property
    def call_count(self) -> int:
        return len(self._calls)

    @property
    def open_sign_in(self) -> bool:
        return self._config.users is None

    # -- page requests --------------------------------------------------------

    async def sign_in(self, session: Session, user: str, password: str | None) -> dict[str, Any]:
        if self._passwords is not None:
            await self._check_password(session, user, password)
        elif self.dialplan.inbound(user).action != "user":
            self.metrics.sign_in_failures.labels("name").inc()
            raise RequestError("auth_failed", "A user name is 1-32 of a-z 0-9 . _ - (starting with a letter or digit)")
        self.sign_out(session)
        session.user = user
        if user not in self._signed_in and self._presence is not None:
            self._presence.signed_in(user)
        self._signed_in.setdefault(user, set()).add(session)
        log.info("%s signed in", user)
        self.mailboxes.signed_in(user)
        return {
            "type": "signed_in",
            "user": user,
            "ice_servers": self._ice_servers(user),
            "ice_transport_policy": self._config.webrtc.ice_transport_policy,
            "sip_uri": f"sip:{user}@{self._sip_host}",
            "recording": self._recordings is not None,
            "mailbox": [entry.for_page() for entry in self.mailboxes.entries(user)],
        }

    async def _check_password(self, session: Session, user: str, password: str | None) -> None:
        """Refused at once while the name or the address waits after failures; scrypt runs only otherwise."""
        assert self._passwords is not None
        wait = math.ceil(self._backoff.wait(user, session.source))
        if wait:
            self.metrics.sign_in_failures.labels("locked").inc()
            raise RequestError("auth_locked", f"Too many failed sign-ins: try again in {wait} s", retry_after=wait)
        if not await self._passwords.check(user, password):
            self._backoff.failed(user, session.source)
            self.metrics.sign_in_failures.labels("password").inc()
            log.info("failed sign-in as %r from %s", user, session.source)
            raise RequestError("auth_failed", "Wrong user name or password")
        self._backoff.succeeded(user)

    def _ice_servers(self, user: str) -> list[dict[str, Any]]:
        webrtc = self._config.webrtc
        servers = list(webrtc.ice_servers)
        if webrtc.turn_urls:
            servers.append(turn_server(webrtc.turn_urls, webrtc.turn_secret, webrtc.turn_ttl, user, time.time()))
        return servers

    def sign_out(self, session: Session) -> None:
        """End the session's calls and stop ringing it."""
        for call in list(self._calls.values()):
            with logs.for_call(call.call_id):
                if call.owner is session:
                    self.end(call, endcause.BROWSER_GONE)
                elif session in call.ringing:
                    call.ringing.discard(session)
                    if not call.ringing and call.owner is None:
                        self._unanswered(call, endcause.UNAVAILABLE)
        self._saving = {call_id: page for call_id, page in self._saving.items() if page is not session}
        if session.user is not None:
            sessions = self._signed_in.get(session.user, set())
            sessions.discard(session)
            if not sessions and self._signed_in.pop(session.user, None) is not None:
                self.userdata.forget(session.user)
                if self._presence is not None:
                    self._presence.signed_out(session.user)
            session.user = None

    def place_call(self, session: Session, to: str, offer: str) -> str:
        user = self._require_user(session)
        if self._calls_of(session) >= CALLS_PER_PAGE:
            raise RequestError("busy", "This page already has two calls: hang up one first")
        route = self.dialplan.outbound(to, user)
        if route.action == "reject":
            raise RequestError("rejected", route.reason)
        room = route.action == "room"
        engine = self.rooms.engine_for(route, self._free_engine) if room else self._direct_to(route) or self._free_engine()
        targets = self.targets(route)
        call = self._add_call(
            ControlCall(
                _new_id(), CallState.CALLING, engine, "outbound-dial", user, to,
                user=user, owner=session, peer=to, history=(user,), far_end=far_end_of_route(route),
            )
        )
        with logs.for_call(call.call_id):
            self.rooms.join(call, route, offer) if room else self._dial(call, targets, offer)
        return call.call_id

    def click_to_call(self, user: str, to: str, operator: str) -> ControlCall:
        """Ring ``user``'s pages; the one that answers dials ``to`` with that user's permissions.

        As Asterisk's Originate and Twilio's click-to-call do, the user's own
        phone rings first, so nobody is dialled before the user is there to
        talk, and the page makes its WebRTC offer in its ``answer`` as always.
        The dialplan decides now, so a number the user may not dial is
        refused before anything rings.
        """
        if self._config.users is not None and user not in self._config.users:
            raise RequestError("no_such_user", f"No user {user!r} is configured", field="user")
        sessions = self._signed_in.get(user)
        if not sessions:
            raise RequestError("not_signed_in", f"{user} is not signed in on any page of this gateway")
        route = self.dialplan.outbound(to, user)
        if route.action == "reject":
            raise RequestError("rejected", route.reason)
        engine = self._free_engine()
        call = self._add_call(
            ControlCall(
                _new_id(), CallState.INCOMING, engine, "outbound-api", user, to,
                user=user, operator=operator, dial=self.targets(route), ringing=set(sessions),
                peer=to, history=(user,), far_end=far_end_of_route(route),
            )
        )
        with logs.for_call(call.call_id):
            log.info("call %s: %s asks %s's pages to call %s", call.call_id, operator, user, to)
            self._ring(call, {"type": "incoming", "call": call.call_id, "from": to, "from_name": "Click-to-call", "to": user, "dial": to})
        return call

    def _dial(self, call: ControlCall, targets: tuple[tuple[str, str], ...], offer: str) -> None:
        via = "browser to browser" if call.direct else ", ".join(f"{trunk} {number}".strip() for trunk, number in targets)
        log.info("call %s: %s calls %s via %s", call.call_id, call.user, call.callee, via)
        identity = self.dialplan.caller_id(call.user)
        call.engine.link.send(api.Dial(call.call_id, targets, offer, call.user, identity.user, identity.name))

    def _direct_to(self, route: Route) -> Engine | None:
        """The direct link when ``route`` rings a user with a page here (as an INVITE to ourselves would), else None.

        A user signed in only on another host behind the front is reached through SIP.
        """
        if self._direct is None or route.action != "local":
            return None
        callee = self.dialplan.inbound(route.target)
        return self._direct if callee.action == "user" and callee.target in self._signed_in else None

    def _free_engine(self) -> Engine:
        """The ready engine with the most room."""
        ready = [engine for engine in self._engines.values() if engine.capacity and not engine.full]
        if not ready:
            if not any(engine.capacity for engine in self._engines.values()):
                raise RequestError("busy", "The gateway's SIP side is not ready yet")
            raise RequestError("busy", endcause.NO_FREE_LINE.reason)
        return min(ready, key=lambda engine: engine.calls - engine.capacity)

    def targets(self, route: Route) -> tuple[tuple[str, str], ...]:
        """What the engine dials for an outbound route, in failover order."""
        if route.action == "local":
            return (("", f"sip:{route.target}@{self._sip_host}"),)
        if route.action == "sip":
            return (("", route.target),)
        return tuple((target.trunk, target.number) for target in route.targets)

    def answer(self, session: Session, call_id: str, offer: str) -> None:
        call = self._ringing_call(session, call_id)
        others = call.ringing - {session}
        call.owner, call.ringing = session, set()
        call.user = session.user or call.user
        self._cancel_ring_timer(call)
        self._move(call, CallState.CALLING if call.dial else CallState.ANSWERING)
        for other in others:
            other.send(_ended(call, endcause.ANSWERED_ELSEWHERE))
        if call.dial:
            self._dial(call, call.dial, offer)
        else:
            call.engine.link.send(api.Accept(call_id, offer))

    def decline(self, session: Session, call_id: str) -> None:
        self._reject(self._ringing_call(session, call_id), endcause.DECLINED)

    def hangup(self, session: Session, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None or session not in call.sessions():
            raise RequestError("no_such_call", "No such call")
        self._hang_up(call, endcause.DECLINED)

    def end_call(self, call_id: str) -> ControlCall:
        """End any call (the REST API's DELETE); a click-to-call still ringing the user is cancelled."""
        call = self.call(call_id)
        with logs.for_call(call_id):
            self._hang_up(call, endcause.CANCELLED if call.dial else endcause.DECLINED)
        return call

    def call(self, call_id: str) -> ControlCall:
        call = self._calls.get(call_id)
        if call is None:
            raise RequestError("no_such_call", f"No call {call_id!r} in progress")
        return call

    def find(self, call_id: str) -> ControlCall | None:
        return self._calls.get(call_id)

    def gateway_addresses(self) -> set[str]:
        """The gateway's own SIP addresses (``host:port``): its public one and each engine's."""
        return {host for host in (self._sip_host, *(engine.sip_host for engine in self._engines.values())) if host}

    def calls(self) -> list[ControlCall]:
        """Every call in progress, oldest first."""
        return sorted(self._calls.values(), key=lambda call: call.created)

    def _hang_up(self, call: ControlCall, refuse: EndCause) -> None:
        """End ``call`` as its state allows: ``refuse`` a call still ringing a page, else BYE or CANCEL."""
        if call.state is CallState.INCOMING:
            self._reject(call, refuse)
        else:
            self.end(call, endcause.NORMAL if call.state is CallState.ANSWERED else endcause.CANCELLED)

    def send_dtmf(self, session: Session, call_id: str, digits: str) -> None:
        call = self.answered_call(session, call_id, "DTMF needs an answered call")
        call.engine.link.send(api.SendDtmf(call_id, digits))

    def request_stats(self, session: Session, call_id: str, request: str | None, browser: LegQuality | None = None) -> None:
        """Ask the engine for the SIP leg's quality; the answer comes as a ``stats`` message.

        ``browser`` is the page's own measure of its leg (from ``getStats()``), kept for the metrics.
        """
        call = self.answered_call(session, call_id, "Quality is measured on answered calls")
        if browser is not None:
            call.quality[DIRECT if call.direct else "browser"] = browser
        if not call.direct:
            call.engine.link.send(api.GetStats(call_id, request or ""))
            return
        reply: dict[str, Any] = {"type": "stats", "call": call_id, "direct": True}  # no SIP leg: the page's figures are all
        if request:
            reply["id"] = request
        session.send(reply)

    def hold(self, session: Session, call_id: str, hold: bool) -> None:
        call = self.answered_call(session, call_id, "Only an answered call can be held")
        self.rooms.refuse(call, "held")
        call.engine.link.send(api.Hold(call_id, hold))

    def record(self, session: Session, call_id: str, on: bool) -> None:
        """Start or stop recording the page's call; the engine's answer comes as a ``recording`` message."""
        store = self._require_recording()
        call = self.answered_call(session, call_id, "Only an answered call can be recorded")
        self.rooms.refuse(call, "recorded")
        if call.direct:
            raise RequestError("not_possible", "A call straight between two browsers does not pass the gateway: it cannot record it")
        if on and not call.recording:
            call.recording = str(store.new_path(call.user))
        meta = (
            ("call", call.call_id), ("user", call.user), ("started_by", session.user or call.user),
            ("caller", call.caller), ("callee", call.callee), ("direction", call.direction),
        )
        call.engine.link.send(api.Record(call_id, on, call.recording, meta if on else ()))

    def recordings(self, session: Session) -> dict[str, Any]:
        """The user's recordings, and a token that opens them over HTTP (``/recordings``)."""
        store = self._require_recording()
        user = self._require_user(session)
        token, seconds = store.issue_token(user)
        return {"type": "recordings", "token": token, "expires_in": seconds, "recordings": store.list(user)}

    def _require_recording(self) -> RecordingStore:
        if self._recordings is None:
            raise RequestError("not_enabled", "Recording is not enabled on this gateway")
        return self._recordings
    def play_message(self, session: Session, entry_id: str) -> dict[str, Any]:
        """A URL that plays a voicemail message of the session's user for a while (see :mod:`gateway.mailbox`)."""
        user = self._require_user(session)
        if not any(entry.id == entry_id and entry.seconds for entry in self.mailboxes.entries(user)):
            raise RequestError("no_such_entry", "No such voicemail message")
        return {"type": "mailbox_play", "entry": entry_id, "url": self.mailboxes.url(user, entry_id, time.time())}

    def mark_heard(self, session: Session, entry_id: str) -> None:
        user = self._require_user(session)
        if not self.mailboxes.mark_heard(user, entry_id):
            raise RequestError("no_such_entry", "No such missed call or message")
        self._tell_mailbox(user)

    def delete_entry(self, session: Session, entry_id: str) -> None:
        user = self._require_user(session)
        if not self.mailboxes.delete(user, entry_id):
            raise RequestError("no_such_entry", "No such missed call or message")
        self._tell_mailbox(user)

    def answered_call(self, session: Session, call_id: str, otherwise: str) -> ControlCall:
        call = self._calls.get(call_id)
        if call is None or call.owner is not session:
            raise RequestError("no_such_call", "No such call")
        if call.state is not CallState.ANSWERED:
            raise RequestError("wrong_state", otherwise)
        return call

    # -- engine events ----------------------------------------------------------

    def attach(self, link: api.EngineLink) -> None:
        """A new engine; calls go to it once it reports ``EngineReady``."""
        self._engines[link] = Engine(link)

    def detach(self, link: api.EngineLink, cause: EndCause) -> None:
        """An engine is gone (its process died): its calls end for the pages now.

        The SIP side of those calls is the front's to end; nothing is sent
        to the engine any more.
        """
        engine = self._engines.pop(link, None)
        if engine is None:
            return
        self.metrics.engine_capacity.labels(engine.sip_host).set(0)
        for call in [call for call in self._calls.values() if call.engine is engine]:
            call.local_cause = call.local_cause or cause
            with logs.for_call(call.call_id):
                self._ended(call, call.local_cause)
            self._saving.pop(call.call_id, None)  # that engine saves nothing more

    def on_event(self, link: api.EngineLink, event: api.Event) -> None:
        with logs.for_call(getattr(event, "call_id", "")):
            self._on_event(link, event)

    def _direct_event(self, event: api.Event) -> None:
        assert self._direct is not None
        self.on_event(self._direct.link, event)

    def _on_event(self, link: api.EngineLink, event: api.Event) -> None:
        engine = self._engines.get(link) or (self._direct if self._direct is not None and link is self._direct.link else None)
        if engine is None:
            return
        if isinstance(event, api.EngineReady):
            engine.sip_host, engine.capacity, engine.media = event.sip_host, event.capacity, event.media
            self._sip_host = self._public_sip or event.sip_host
            self.metrics.engine_capacity.labels(engine.sip_host).set(engine.capacity)
            self.metrics.engine_calls.labels(engine.sip_host).set(engine.calls)
            return
        if isinstance(event, api.EngineDown):
            log.warning("engine %s takes no calls for now: %s", engine.sip_host, event.reason)
            engine.capacity = 0
            self.metrics.engine_capacity.labels(engine.sip_host).set(0)
            return
        if isinstance(event, api.TrunkState):
            self._trunks[event.trunk] = event
            self.metrics.trunk_registered.labels(event.trunk).set(event.registered)
            return
        if isinstance(event, api.SipRefused):
            self.metrics.sip_refused.labels(event.reason, str(event.code)).inc()
            return
        if isinstance(event, api.Incoming):
            self._incoming(engine, event)
            return
        if isinstance(event, api.RecordingSaved):
            self._recording_saved(event)
            return
        call = self._calls.get(event.call_id)
        if call is None:
            return
        if isinstance(event, api.WebrtcAnswer):
            call.tell_owner({"type": "sdp", "call": call.call_id, "sdp": event.sdp})
        elif isinstance(event, api.Progress):
            state = CallState.EARLY_MEDIA if event.early_media else CallState.RINGING
            first = call.state is CallState.CALLING
            if call.state is not state and self._move(call, state):
                call.tell_owner({"type": state.value, "call": call.call_id})
                if first:
                    self._report("ringing", call)
        elif isinstance(event, api.Answered):
            if self._move(call, CallState.ANSWERED):
                call.answered = time.time()
                self.metrics.call_setup.labels(call.direction).observe(call.answered - call.created)
                call.tell_owner({"type": "answered", "call": call.call_id})
                self._report("answered", call)
                self.rooms.answered(call)
                self.transfers.answered(call)
        elif isinstance(event, api.DtmfReceived):
            call.tell_owner({"type": "dtmf", "call": call.call_id, "digit": event.digit})
        elif isinstance(event, api.CallStats):
            sip = call.quality["sip"] = LegQuality(event.jitter_ms, event.loss_pct, event.rtt_ms)
            reply: dict[str, Any] = {"type": "stats", "call": call.call_id, "sip": {"codec": event.codec, **sip.for_page()}}
            if event.request:
                reply["id"] = event.request
            call.tell_owner(reply)
        elif isinstance(event, api.HoldChanged):
            call.tell_owner({"type": "hold", "call": call.call_id, "local": event.local, "remote": event.remote})
        elif isinstance(event, api.RecordingChanged):
            call.recording_on = event.on
            call.tell_owner(_recording(event))
        elif isinstance(event, api.VoicemailSaved):
            call.message = event.seconds
        elif isinstance(event, api.TransferAsked):
            self.transfers.asked(call, event.target)
        elif isinstance(event, api.Transferred):
            call.transfer, call.callee = "", event.peer
            call.tell_owner({"type": "transferred", "call": call.call_id, "peer": event.peer, "peer_name": event.peer_name})
        elif isinstance(event, api.TransferStatus):
            self.transfers.status(call, event)
        elif isinstance(event, api.Ended):
            self._ended(call, EndCause(event.cause, event.code, event.reason))

    def _incoming(self, engine: Engine, event: api.Incoming) -> None:
        far_end = far_end_of_incoming(self.dialplan, event.trunk, event.source, event.from_gateway)
        call = self._add_call(
            ControlCall(
                event.call_id, CallState.INCOMING, engine, "inbound", event.from_uri, event.to_user,
                caller_name=event.from_name, far_end=far_end,
            )
        )
        source = None if event.from_gateway else event.source
        route: Route = self.dialplan.inbound(event.to_user, trunk=event.trunk or None, source=source)
        log.info(
            "call %s: SIP call from %s (%s) to %r: %s %s",
            call.call_id, event.from_uri, event.source, event.to_user, route.action, route.target or route.reason,
        )
        if route.action == "builtin":
            call.state = CallState.ANSWERING
            engine.link.send(api.Serve(call.call_id, route.target))
        elif route.action == "room":
            refusal = self.rooms.admit(call, route)  # sends Join when the caller is admitted
            if refusal is None:
                call.state = CallState.ANSWERING
            else:
                self._reject(call, refusal)
        elif route.action in ("user", "group"):
            users = [route.target] if route.action == "user" else list(route.targets)
            call.user = route.target
            call.mailbox = route.target if route.action == "user" and self.mailboxes.known(route.target) else ""
            signed_in = {session for user in users for session in self._signed_in.get(user, ())}
            call.ringing = {session for session in signed_in if self._calls_of(session) < CALLS_PER_PAGE}
            call.peer = _sip_user(event.from_uri) if event.from_gateway else event.from_uri
            call.peer_name, call.history = event.from_name, self._keeping_history(users)
            voicemail = self._config.voicemail
            if not call.ringing:
                if signed_in:
                    self._unanswered(call, endcause.BUSY_HERE, voicemail.when_busy)
                elif self._presence is not None:
                    call.mailbox = ""  # the front looks for the users on other hosts: the call may be answered there
                    self._reject(call, endcause.UNAVAILABLE, tuple(users))
                else:
                    self._unanswered(call, endcause.UNAVAILABLE, voicemail.when_signed_out)
                return
            engine.link.send(api.Ring(call.call_id))
            incoming = {"type": "incoming", "call": call.call_id, "from": event.from_uri, "from_name": event.from_name, "to": event.to_user}
            self._ring(call, {**incoming, "direct": True, "sdp": event.offer} if event.offer else incoming)
        else:
            self.metrics.sip_refused.labels("dialplan", str(route.code)).inc()
            self._reject(call, EndCause(endcause.from_sip(route.code).cause, route.code, route.reason))

    def _recording_saved(self, event: api.RecordingSaved) -> None:
        """Tell the page that recorded the call (it may have ended meanwhile) that the files are there."""
        call = self._calls.get(event.call_id)
        page = self._saving.pop(event.call_id, None) if event.final else self._saving.get(event.call_id)
        page = page or (call.owner if call is not None else None)
        if page is None:
            return
        message: dict[str, Any] = {"type": "recording_saved", "call": event.call_id, "recording": event.recording,
                                   "duration": round(event.seconds, 2)}
        if event.error:
            message["reason"] = event.error
        page.send(message)

    # -- inside -----------------------------------------------------------------

    def _ring(self, call: ControlCall, incoming: dict[str, Any]) -> None:
        """Tell the ringing pages, until they answer or ``ring_timeout`` (voicemail's ``after_seconds``) passes.

        A SIP caller who is one of a user's contacts is shown by the contact's name on that user's pages.
        """
        for session in call.ringing:
            known = None if call.dial or session.user is None else self.userdata.caller_name(session.user, call.peer)
            session.send(incoming if known is None else {**incoming, "from_name": known[0], "contact": known[1]})
        calls = self._config.calls
        seconds = self._config.voicemail.ring_seconds(calls) if call.mailbox else calls.ring_timeout
        call.ring_timer = asyncio.get_running_loop().call_later(seconds, self._unanswered, call, endcause.NO_ANSWER)
        self._report("ringing", call)

    def _unanswered(self, call: ControlCall, cause: EndCause, may_record: bool = True) -> None:
        """No page answers a call: the user's voicemail takes it when it is on and ``may_record``, else it is
        refused with ``cause``; pages still ringing hear ``cause`` either way."""
        voicemail = self._config.voicemail
        entry = self.mailboxes.new_id()
        target = self.mailboxes.record_to(call.mailbox, entry) if voicemail.enabled and may_record and call.mailbox else None
        if target is None:
            self._reject(call, cause)
            return
        if not self._move(call, CallState.ANSWERING):
            return
        self._cancel_ring_timer(call)
        for session in call.ringing:
            session.send(_ended(call, cause))
        call.ringing, call.entry = set(), entry
        record, greeting = target
        log.info("call %s: %s, so to %s's voicemail", call.call_id, cause.reason, call.mailbox)
        call.engine.link.send(api.Serve(call.call_id, "voicemail", str(record), greeting))

    def _report(self, event: str, call: ControlCall) -> None:
        if self.on_call is not None:
            self.on_call(event, call)

    def _require_user(self, session: Session) -> str:
        if session.user is None:
            raise RequestError("not_signed_in", "Sign in first")
        return session.user

    def _calls_of(self, session: Session) -> int:
        """The page's calls that count against CALLS_PER_PAGE: ringing at it, or its own and not ending."""
        return sum(
            1 for call in self._calls.values()
            if call.state not in (CallState.ENDING, CallState.ENDED) and (call.owner is session or session in call.ringing)
        )

    def _ringing_call(self, session: Session, call_id: str) -> ControlCall:
        call = self._calls.get(call_id)
        if call is None or session not in call.ringing:
            raise RequestError("no_such_call", "No such call")
        if call.state is not CallState.INCOMING:
            raise RequestError("wrong_state", "That call is not ringing")
        return call

    def _move(self, call: ControlCall, new: CallState) -> bool:
        if not can_move(call.state, new):
            return False
        log_move(call.call_id, call.state, new)
        call.state = new
        return True

    def _reject(self, call: ControlCall, cause: EndCause, users: tuple[str, ...] = ()) -> None:
        """Refuse an incoming SIP call that nobody answered (or stop a click-to-call ringing: no engine knows it yet)."""
        if self._move(call, CallState.ENDING):
            call.local_cause = cause
            self._cancel_ring_timer(call)
            if call.dial:
                self._ended(call, cause)
            else:
                call.engine.link.send(api.Reject(call.call_id, cause.code, cause.reason, users))

    def end(self, call: ControlCall, cause: EndCause) -> None:
        """Hang up ``call`` (BYE or CANCEL), remembering ``cause`` as its end."""
        if self._move(call, CallState.ENDING):
            call.local_cause = cause
            self._cancel_ring_timer(call)
            call.engine.link.send(api.Hangup(call.call_id))

    def _ended(self, call: ControlCall, reported: EndCause) -> None:
        cause = call.local_cause or reported
        self._cancel_ring_timer(call)
        log_move(call.call_id, call.state, CallState.ENDED)
        call.state = CallState.ENDED
        call.ended, call.end = time.time(), cause
        log.info("call %s ended: %s, %s %s", call.call_id, cause.cause, cause.code, cause.reason)
        for session in call.sessions():
            session.send(_ended(call, cause))
        if call.recording_on and call.owner is not None:
            self._saving[call.call_id] = call.owner
        del self._calls[call.call_id]
        self.rooms.left(call)
        self.transfers.ended(call, cause)
        call.engine.calls -= 1
        self.metrics.calls_in_progress.labels(call.direction).dec()
        self.metrics.calls.labels(call.direction, cause.cause).inc()
        self._count_engine_calls(call.engine)
        for leg, figures in call.quality.items():
            self.metrics.quality(leg, figures)
        if call.engine.calls == call.engine.capacity - 1:
            self._tell_load(call.engine)
        self._keep_history(call)
        if call.mailbox and call.owner is None and cause.cause != endcause.DECLINED.cause:
            self._note_missed(call)
        self._report("ended", call)

    def _keeping_history(self, users: list[str]) -> tuple[str, ...]:
        """Of the users a SIP call is for, those with a history: configured, or (open sign-in) with a page open.

        A stranger ringing made-up names under open sign-in makes no files.
        """
        configured = self._config.users or {}
        return tuple(user for user in users if user in configured or user in self._signed_in)

    def _keep_history(self, call: ControlCall) -> None:
        for user in call.history:
            self.tell_user(user, self.userdata.record(user, callhistory.entry(call, user)))
            if user not in self._signed_in:
                self.userdata.forget(user)

    def tell_user(self, user: str, message: dict[str, Any], but: Session | None = None) -> None:
        """Send ``message`` to every page of ``user`` here (``but`` one)."""
        for session in self._signed_in.get(user, ()):
            if session is not but:
                session.send(message)

    def _note_missed(self, call: ControlCall) -> None:
        entry = Entry(call.entry or self.mailboxes.new_id(), call.created, call.caller, call.caller_name, call.message)
        self.mailboxes.add(call.mailbox, entry)
        log.info("call %s: missed by %s%s", call.call_id, call.mailbox, f", message of {call.message:.1f} s" if call.message else "")
        self._tell_mailbox(call.mailbox, entry)

    def _tell_mailbox(self, user: str, added: Entry | None = None) -> None:
        """Every page of ``user`` gets the whole list again (it is short), and the entry just ``added``."""
        message: dict[str, Any] = {"type": "mailbox", "entries": [entry.for_page() for entry in self.mailboxes.entries(user)]}
        if added is not None:
            message["added"] = added.for_page()
        for session in self._signed_in.get(user, ()):
            session.send(message)

    def _add_call(self, call: ControlCall) -> ControlCall:
        self._calls[call.call_id] = call
        call.engine.calls += 1
        self.metrics.calls_in_progress.labels(call.direction).inc()
        self._count_engine_calls(call.engine)
        if call.engine.full:
            self._tell_load(call.engine)
        return call

    def _count_engine_calls(self, engine: Engine) -> None:
        if engine is not self._direct:
            self.metrics.engine_calls.labels(engine.sip_host).set(engine.calls)

    def _tell_load(self, engine: Engine) -> None:
        if self.on_load is not None and engine.link in self._engines:
            self.on_load(engine.link, engine.full)

    @staticmethod
    def _cancel_ring_timer(call: ControlCall) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None

    def status(self) -> dict[str, Any]:
        """What an operator checks: the SIP address, each trunk's registration, the calls."""
        trunks = {
            name: {"registered": state.registered, "code": state.code, "reason": state.reason}
            for name, state in self._trunks.items()
        }
        engines = [
            {"sip": engine.sip_host, "calls": engine.calls, "capacity": engine.capacity, "media": engine.media}
            for engine in self._engines.values()
        ]
        return {"sip": self._sip_host, "trunks": trunks, "calls": len(self._calls), "engines": engines}

    def hang_up_all(self) -> None:
        """Shutdown: end every call the engine still carries."""
        for call in list(self._calls.values()):
            with logs.for_call(call.call_id):
                if call.state is CallState.INCOMING:
                    self._reject(call, endcause.SHUTDOWN)
                else:
                    self.end(call, endcause.SHUTDOWN)


def _sip_user(uri: str) -> str:
    """``sip:alice@host:port`` -> ``alice``: how a web user of this gateway appears in a call's From."""
    return uri.split(":", 1)[-1].split("@", 1)[0]


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def _recording(event: api.RecordingChanged) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "recording", "call": event.call_id, "on": event.on}
    if event.error:
        message["reason"] = event.error
    return message


def _ended(call: ControlCall, cause: EndCause) -> dict[str, Any]:
    return {"type": "ended", "call": call.call_id, "cause": cause.cause, "code": cause.code, "reason": cause.reason}
