"""The SIP leg: one pjsua2 endpoint, its accounts and its calls.

Everything here runs on the SIP thread (see :mod:`gateway.sipthread`).
Calls are known to the rest of the gateway by a string id, trunks by name;
the pjsua2 objects never leave the ``sip*`` modules.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pjsua2 as pj

from . import audioformat, engineapi as api, logs, siptransfer
from .config import SipConfig
from .engineapi import SipRole
from .hostaddr import WILDCARD
from .rtpsockets import bind_pair
from .sipaccount import LocalAccount, TrunkAccount, name_addr, name_and_uri, trunk_uri
from .sipapi import CallAudio, Caller, MediaTimeout, NativePort, NativeSocket, Quality, SipError, SipEvent, SipEventSink
from .sipcall import SipCall
from .sipcheck import invite_problem
from .sipport import BridgePorts
from .sipthread import SipThread

if TYPE_CHECKING:
    from .dialplan import Trunk

log = logging.getLogger(__name__)

_CODEC_PRIORITY = {"PCMU/8000/1": 250, "PCMA/8000/1": 240, "G722/16000/1": 230}
_NATIVE_CODECS = frozenset({"PCMU/8000/1", "PCMA/8000/1"})
"""What the native path transcodes to; nothing else is offered or accepted when it carries the audio."""
_GRAVE_SECONDS = 0.2
_PORT_TRIES = 5
_REQUEST_USER = re.compile(r"^[A-Z]+ sips?:([^@;>\s]+)@")
_URI_USER = re.compile(r"sips?:([^@;>\s]+)@")
_FRONT_SOURCE = re.compile(r"^X-Gateway-Source:\s*([^;\s]+)(;transport=tls)?", re.MULTILINE | re.IGNORECASE)
"""Where the front received an INVITE from, and whether over TLS: behind it, every INVITE comes from the front."""
_SDES = re.compile(r"^a=crypto:", re.MULTILINE)
"""An SRTP key offered in SDP (RFC 4568)."""
_GATEWAY_SOURCE = "gateway"
"""X-Gateway-Source of an INVITE the front got from one of the gateway's own workers."""
ASSERTED_IDENTITY = "P-Asserted-Identity"
"""RFC 3325: who the caller is, for a PBX that trusts the gateway (From may stay the trunk's account)."""
USERS_HEADER = "X-Gateway-Users"
"""On a 480 to the front: the users this host has no page for; the front looks for them on other hosts."""


def _addresses(trunk: Trunk) -> list[str]:
    """``ip:port`` forms of a trunk's host, to know its INVITEs by their source address.

    A TLS trunk's are bare addresses: its calls come over connections it
    opens, from any port, and only TLS ones count (the front says which).
    """
    try:
        infos = socket.getaddrinfo(trunk.hostname, trunk.port or 5060, type=socket.SOCK_DGRAM)
    except OSError:
        log.warning("trunk host %s does not resolve: its calls are known only by its account", trunk.host)
        return []
    if trunk.transport == "tls":
        return [_tls_source(info[4][0]) for info in infos]
    return [f"{info[4][0]}:{info[4][1]}" for info in infos]


def _tls_source(address: str) -> str:
    return f"tls:{address}"


class InvitePacer:
    """Admits at most ``rate`` new INVITEs a second by holding the SIP thread.

    pjsua opens two RTP sockets for every INVITE before the application sees
    it, and a closed socket's slot in pjlib's 64-slot I/O queue is reused only
    after 500 ms: above about 60 INVITEs a second the queue runs out and pjlib
    aborts the process.  Holding the SIP thread leaves later INVITEs in the
    kernel's socket buffer (their senders retransmit), so a flood is slowed
    down instead of fatal.  Media runs on other threads and is not held.
    """

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0

    def admit(self) -> None:
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(now, self._next) + self._interval


class SipUserAgent:
    """The pjsua2 endpoint with its local and trunk accounts; lives on the SIP thread."""

    def __init__(
        self,
        sip: SipThread,
        events: SipEventSink,
        config: SipConfig,
        role: SipRole,
        trunks: Sequence[Trunk],
        native: bool = False,
    ) -> None:
        self.sip = sip
        self.events = events
        self.config = config
        self.role = role
        self.trunk_list = list(trunks)
        self._ids = itertools.count(1)
        self.native = native
        """Calls' audio bypasses pjsua2 (:class:`~gateway.sipapi.NativePort`): it only negotiates, with no clock."""
        self.endpoint: pj.Endpoint | None = None
        self.account: LocalAccount | None = None
        self.trunks: dict[str, TrunkAccount] = {}
        self.address = ""
        self.calls: dict[str, SipCall] = {}
        self.pacer = InvitePacer(config.max_invites_per_second)
        self.bridge_ports = BridgePorts(sip)
        self.graveyard: list[tuple[float, list[pj.AudioMedia]]] = []

    # -- life cycle ---------------------------------------------------------

    def create(self) -> pj.Endpoint:
        """Create, configure and start the endpoint (SIP thread)."""
        ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = self.config.max_calls
        cfg.uaConfig.userAgent = "webrtc-sip-gateway"
        cfg.logConfig.level = self.config.log_level
        cfg.logConfig.consoleLevel = self.config.log_level
        cfg.medConfig.clockRate = audioformat.RATE
        cfg.medConfig.sndClockRate = audioformat.RATE
        cfg.medConfig.channelCount = 1
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        # Quality 3-4 gives the 48 <-> 8 kHz resamplers pjmedia's small filter instead of
        # the large one: measured at 4 calls, CPU per call 6.7% -> 5.4% and 8 ms less delay
        # one way, with the G.711 side's 4 kHz band unchanged for speech.
        cfg.medConfig.quality = 4
        if self.native:
            # pjsua has no media sockets (its streams' transport is a loop, gateway.sipaccount):
            # no media thread waking every 10 ms in each worker for them.
            cfg.medConfig.hasIoqueue = False
            cfg.medConfig.threadCnt = 0
        ep.libInit(cfg)
        if self.native:
            # No clock at all: pjsua2's streams encode nothing (and have no socket to send it from).
            ep.audDevManager().setNoDev()
        else:
            ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():
            wanted = not self.native or codec.codecId in _NATIVE_CODECS
            ep.codecSetPriority(codec.codecId, _CODEC_PRIORITY.get(codec.codecId, 0) if wanted else 0)
        try:
            udp = self._listen(ep)
        except pj.Error as exc:
            ep.libDestroy()
            raise OSError(f"cannot listen for SIP on {self.config.listen}:{self.config.port}: {exc.reason}") from None
        ep.libStart()
        self.endpoint = ep
        self.address = ep.transportGetInfo(udp).localName
        bound = self.role.internal_host or self.config.listen
        self.sip.wake_through((bound if bound not in WILDCARD else "127.0.0.1", int(self.address.rsplit(":", 1)[1])))
        native_host = self._media_host(ep) if self.native else ""
        srtp = any(t.srtp != "off" for t in self.trunk_list)
        self.account = LocalAccount(self, self.address, self.config, self.role, srtp, native_host)
        self.trunks = {trunk.name: TrunkAccount(self, trunk, self.config, self.role, native_host) for trunk in self.trunk_list}
        self.trunk_sources = {address: trunk for trunk in self.trunk_list for address in _addresses(trunk)}
        log.info("SIP listening on %s (udp%s)", self.address, "+tcp" if self.config.tcp else "")
        return ep

    def _media_host(self, ep: pj.Endpoint) -> str:
        """The address pjsua2 gave in SDP for RTP sockets bound as the relay's are (``[sip] listen``):
        ``public_host``, else ``listen``, else, for a wildcard, the one pjsip picks for this machine,
        which a UDP transport on the wildcard shows (a worker's SIP transport is on its internal host)."""
        if self.config.public_host or self.config.listen not in WILDCARD:
            return self.config.public_host or self.config.listen
        probe = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, pj.TransportConfig())
        try:
            return ep.transportGetInfo(probe).localName.rsplit(":", 1)[0]
        finally:
            ep.transportClose(probe)

    def _listen(self, ep: pj.Endpoint) -> int:
        """UDP and TCP transports on one port; returns the UDP transport's id.

        With port 0 the kernel picks UDP's port, which another program may
        hold for TCP: then both are tried again on a new port.
        """
        transport = pj.TransportConfig()
        transport.boundAddress = self.role.internal_host or self.config.listen
        if self.config.public_host and not self.role.internal_host:
            transport.publicAddress = self.config.public_host
        for attempt in range(_PORT_TRIES):
            transport.port = self.config.port
            udp = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
            if not self.config.tcp:
                return udp
            transport.port = int(ep.transportGetInfo(udp).localName.rsplit(":", 1)[1])
            try:
                ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, transport)
                return udp
            except pj.Error:
                if self.config.port or attempt == _PORT_TRIES - 1:
                    raise
                ep.transportClose(udp)
        raise AssertionError("unreachable")

    def destroy(self) -> None:
        """Hang up everything, wait for it, then tear pjsua2 down in a safe order (SIP thread).

        No local variable may hold a call past ``libDestroy``: a pjsua2 object
        freed after it aborts the process.
        """
        self._hang_up_all()
        deadline = time.monotonic() + 3
        while self.calls and time.monotonic() < deadline:
            self.sip.handle_events(0.05)
        self._close_all_media()
        self.sip.handle_events(0.1)
        self.calls.clear()
        self.graveyard.clear()
        self.bridge_ports.free_all()
        for account in [*self.trunks.values(), *([self.account] if self.account else [])]:
            account.shutdown()
        self.trunks.clear()
        self.account = None
        if self.endpoint is not None:
            self.endpoint.libDestroy()
        self.sip.forget_endpoint()
        self.endpoint = None

    def _hang_up_all(self) -> None:
        for call in list(self.calls.values()):
            self._hangup(call, pj.CallOpParam())

    def _close_all_media(self) -> None:
        for call in self.calls.values():
            self.graveyard.append((0.0, call.detach_media()))

    # -- called from the asyncio side through SipThread.run -----------------

    def make_call(self, call_id: str, trunk: str, target: str, caller: Caller, audio: CallAudio) -> None:
        """Send an INVITE, through ``trunk`` (to the number ``target``, from whom the trunk's
        ``caller_id`` says) or, with no trunk, to the URI ``target`` from the web user;
        raises ``pj.Error`` (for example no free call slot)."""
        prm = pj.CallOpParam(True)
        if trunk:
            account = self.trunks[trunk]
            uri = trunk_uri(account.trunk, target)
            shown = account.trunk.presents(caller.identity)
            if shown.from_ is not None:
                prm.txOption.localUri = name_addr(shown.from_.name, trunk_uri(account.trunk, shown.from_.user))
            if shown.asserted is not None:
                header = pj.SipHeader()
                header.hName = ASSERTED_IDENTITY
                header.hValue = name_addr(shown.asserted.name, trunk_uri(account.trunk, shown.asserted.user))
                prm.txOption.headers.append(header)
        else:
            account, uri = self.account, target
            prm.txOption.localUri = name_addr(caller.name, f"sip:{caller.name}@{self.address}")
        call = SipCall(self, account, call_id)
        call.audio = audio
        call.makeCall(uri, prm)
        self.calls[call_id] = call

    def ring(self, call_id: str) -> None:
        self._answer_with(call_id, 180)

    def answer(self, call_id: str, audio: CallAudio) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.audio = audio
            self._answer_with(call_id, 200)

    def serve(self, call_id: str, app: str, audio: CallAudio | None) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.app = app
            call.audio = audio
            self._answer_with(call_id, 200)

    def reject(self, call_id: str, code: int, reason: str, users: Sequence[str]) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            prm = pj.CallOpParam()
            prm.statusCode = code
            prm.reason = reason
            if users:
                header = pj.SipHeader()
                header.hName, header.hValue = USERS_HEADER, ",".join(users)
                prm.txOption.headers.append(header)
            self._hangup(call, prm)

    def hangup(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            self._hangup(call, pj.CallOpParam())

    def send_dtmf(self, call_id: str, digits: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.send_dtmf(digits)

    def quality(self, call_id: str) -> Quality:
        call = self.calls.get(call_id)
        return call.quality() if call is not None else ("", None, None, None)

    def hold(self, call_id: str, hold: bool) -> None:
        """Re-INVITE with ``a=sendonly`` to hold, ``a=sendrecv`` to resume."""
        call = self.calls.get(call_id)
        if call is None:
            return
        prm = pj.CallOpParam(True)
        if hold:
            call.setHold(prm)
        else:
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD
            call.reinvite(prm)

    def transfer(self, call_id: str, trunk: str, target: str, replacing: str) -> None:
        """REFER the far end of ``call_id`` to ``target`` (through ``trunk``, as :meth:`make_call`
        would call it), or to ``replacing``'s far end; raises ``pj.Error``, or :class:`SipError` for a call gone."""
        call, other = self.calls.get(call_id), self.calls.get(replacing) if replacing else None
        if call is None or (replacing and other is None):
            raise SipError(481, "That call is gone")
        siptransfer.refer(call, trunk_uri(self.trunks[trunk].trunk, target) if trunk else target, other)

    def tick(self) -> None:
        """Once a second: end calls whose RTP stopped, free dead calls' objects, retry refused registrations."""
        now = time.monotonic()
        for trunk in self.trunks.values():
            trunk.retry_registration(now)
        for call in list(self.calls.values()):
            if call.transfer_of is not None:
                siptransfer.check_started(call, now)
                continue
            packets = call.received_packets()
            if packets is None or packets != call.rx_packets:
                call.rx_packets = -1 if packets is None else packets
                call.rx_changed = now
            elif now - call.rx_changed > self.config.media_timeout:
                call.rx_changed = now
                self.emit(MediaTimeout(call.call_id))
        self.graveyard = [(died, media) for died, media in self.graveyard if now - died < _GRAVE_SECONDS]

    # -- inside this module -------------------------------------------------

    def emit(self, event: SipEvent) -> None:
        """Hand an event to the engine on the asyncio loop (from the SIP or clock thread)."""
        self.sip.to_loop(self.events, event)

    def incoming(self, prm: pj.OnIncomingCallParam, trunk: Trunk | None) -> None:
        """A new INVITE, on the local account or on a trunk's.

        It is tracked as a call at once, so that whatever happens next it
        gets a final response and is hung up at shutdown.  A malformed INVITE
        gets 400 here and never reaches the engine.

        A trunk is known by its account (the INVITE came to its registration)
        or by the INVITE's source address (a trunk peered by IP; behind a
        front, the source the front saw).  The dialled user is the Request-URI's, except on a registered trunk:
        there the registrar rewrote the Request-URI to our contact, and the
        number dialled (the DID) is left in the To header.
        """
        self.pacer.admit()
        call_id = self.new_call_id()
        with logs.for_call(call_id):
            self._incoming(call_id, prm, trunk)

    def _incoming(self, call_id: str, prm: pj.OnIncomingCallParam, trunk: Trunk | None) -> None:
        account = self.trunks[trunk.name] if trunk else self.account
        call = SipCall(self, account, call_id, prm.callId)
        self.calls[call_id] = call
        message = prm.rdata.wholeMsg
        problem = invite_problem(message)
        if problem is not None:
            log.info("SIP INVITE %s from %s refused: %s", call_id, prm.rdata.srcAddress, problem)
            self._refuse_after_callback(call, 400, f"Bad Request ({problem})")
            self.emit(api.SipRefused("malformed", 400))
            return
        if self.native:
            # pjsua2 writes its SDP answer as soon as this callback returns: the sockets must exist now.
            sock, rtcp = bind_pair(self.config.listen, self.config.rtp_port)
            call.audio = NativePort(sock.getsockname()[1])
            self.emit(NativeSocket(call_id, sock, rtcp))
        front_source = _FRONT_SOURCE.search(message) if self.role.front else None
        source = front_source.group(1) if front_source else prm.rdata.srcAddress
        from_gateway = source in (self.address, _GATEWAY_SOURCE)
        trunk = trunk or self.trunk_sources.get(source)
        if trunk is None and front_source and front_source.group(2):
            trunk = self.trunk_sources.get(_tls_source(source.rsplit(":", 1)[0].strip("[]")))
        if trunk is not None and trunk.srtp == "mandatory" and not _SDES.search(message):
            log.info("SIP INVITE %s on trunk %s refused: it offers no SRTP", call_id, trunk.name)
            self.refuse(call, 488, "SRTP Required")
            return
        ci = call.getInfo()
        request = _REQUEST_USER.match(message)
        to_header = _URI_USER.search(ci.localUri)
        to_user = request.group(1) if request else ""
        if to_header and (not to_user or (trunk is not None and to_user == trunk.username)):
            to_user = to_header.group(1)
        display, from_uri = name_and_uri(ci.remoteUri)
        log.info("SIP INVITE %s for %r from %s (%s)%s", call_id, to_user, from_uri, source, f" on trunk {trunk.name}" if trunk else "")
        self.emit(api.Incoming(call_id, to_user, from_uri, display, trunk.name if trunk else "", source, from_gateway))

    def new_call_id(self) -> str:
        """Ids of incoming calls: unique across the workers of a host, which share no counter."""
        return f"{os.getpid():x}-{next(self._ids)}"

    def refuse(self, call: SipCall, code: int, reason: str) -> None:
        """A final response to an incoming call that the engine never hears of."""
        prm = pj.CallOpParam()
        prm.statusCode = code
        prm.reason = reason
        self._hangup(call, prm)

    def _refuse_after_callback(self, call: SipCall, code: int, reason: str) -> None:
        """:meth:`refuse` from inside ``onIncomingCall``: only once it has returned (see
        :meth:`SipThread.after_callback`), and not if the call is gone by then (its slot may be another's)."""

        def refuse() -> None:
            if self.calls.get(call.call_id) is call:
                self.refuse(call, code, reason)

        self.sip.after_callback(refuse)

    def incoming_failed(self, prm: pj.OnIncomingCallParam) -> None:
        """``incoming`` raised: answer 500 rather than leave the caller hanging."""
        call = next((call for call in self.calls.values() if call.getId() == prm.callId), None)
        if call is None:
            call = SipCall(self, self.account, self.new_call_id(), prm.callId)
            self.calls[call.call_id] = call
        self._refuse_after_callback(call, 500, "Server Internal Error")
        self.emit(api.SipRefused("error", 500))

    def bury(self, call: SipCall) -> None:
        """A disconnected call: forget it now, delete its tone a little later.

        The Call object must go at once, inside its DISCONNECTED callback: its
        destructor hangs up whatever call holds its pjsua slot, and pjsua
        reuses slots for the next call.  Its tone may still be inside a clock
        tick, so it waits in the graveyard until the next tick.
        """
        self.graveyard.append((time.monotonic(), call.detach_media()))
        self.calls.pop(call.call_id, None)

    def _answer_with(self, call_id: str, code: int) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            prm = pj.CallOpParam()
            prm.statusCode = code
            call.answer(prm)

    @staticmethod
    def _hangup(call: SipCall, prm: pj.CallOpParam) -> None:
        try:
            call.hangup(prm)
        except pj.Error as exc:
            log.debug("hangup of %s: %s", call.call_id, exc.info())
