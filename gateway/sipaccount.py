"""SIP accounts: the gateway's own address, and one per trunk.

A trunk account registers (when the trunk asks for it) and answers digest
challenges with the trunk's credentials, both for REGISTER and for the
INVITEs sent through it.  pjsua2 retries a failed registration after
``sip.register_retry`` seconds, but not one the registrar refused (401, 403,
407: wrong credentials, or a PBX not yet told about the gateway); those are
tried again here, after ``register_retry`` seconds doubling up to
:data:`MAX_REGISTER_RETRY`, so fixing the PBX is enough and wrong
credentials are never retried in a tight loop.  Runs on the SIP thread.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

import pjsua2 as pj

from . import engineapi as api
from .config import SipConfig
from .engineapi import SipRole
from .rtpsockets import PORTS_PER_ENGINE
from .sipthread import guarded

if TYPE_CHECKING:
    from .dialplan import Trunk
    from .dialplan.trunks import Srtp

    from .sipua import SipUserAgent


log = logging.getLogger(__name__)

MAX_REGISTER_RETRY = 600.0
_REFUSED = frozenset({401, 403, 407})
"""Final REGISTER answers that pjsua does not retry by itself."""
_DISPLAY_NAME = re.compile(r'^\s*"?([^"<]*?)"?\s*<')
_NAME_ADDR = re.compile(r'^[^<]*<|>.*$')


_SRTP_USE = {"off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL, "mandatory": pj.PJMEDIA_SRTP_MANDATORY}


def _account(sip: SipConfig, role: SipRole, srtp: Srtp, native_host: str) -> pj.AccountConfig:
    """What every account shares; ``srtp`` is whether its calls offer and take SRTP (SDES).

    With ``native_host`` (native media) pjsua2 negotiates but carries nothing: its streams get a
    loop transport, no socket, so they can send the far end no RTCP of their own (an RR about
    nobody, from a port the SDP does not name); its SDP names ``native_host``, where the relay's
    sockets are, and :func:`gateway.sdp.point_audio_at` puts in the relay's port.
    """
    account = pj.AccountConfig()
    account.mediaConfig.srtpUse = _SRTP_USE[srtp]
    # pjsua2 never speaks TLS itself (the front does), so SRTP must not wait for a TLS first hop.
    account.mediaConfig.srtpSecureSignaling = 0
    # pjsua re-INVITEs to narrow an answer that lists several codecs down to one; those
    # extra re-INVITEs collide with the far end's (hold, resume) and both get 491.
    account.mediaConfig.lockCodecEnabled = False
    if role.front:
        account.sipConfig.proxies.append(f"sip:{role.front};lr")
    if native_host:
        account.mediaConfig.useLoopMedTp = True
        account.mediaConfig.transportConfig.boundAddress = native_host
        return account
    account.mediaConfig.transportConfig.port = sip.rtp_port
    # pjsua's own RTP (the Python media path) stays inside this engine's block too.
    account.mediaConfig.transportConfig.portRange = PORTS_PER_ENGINE if sip.rtp_port else 0
    account.mediaConfig.transportConfig.boundAddress = sip.listen
    if sip.public_host:
        account.mediaConfig.transportConfig.publicAddress = sip.public_host
    return account


def trunk_uri(trunk: Trunk, user: str = "") -> str:
    """Where a request for ``user`` (or, without one, a REGISTER) goes on ``trunk``.

    pjsua2 itself has no TLS transport: a TLS trunk is reached through the
    front (the outbound proxy, over UDP), which sees ``transport=tls`` here.
    """
    transport = f";transport={trunk.transport}" if trunk.transport != "udp" else ""
    return f"sip:{user + '@' if user else ''}{trunk.host}{transport}"


def name_addr(name: str, uri: str) -> str:
    """``"name" <uri>`` for From and P-Asserted-Identity, the name a quoted string (RFC 3261 25.1)."""
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{uri}>'


def name_and_uri(text: str) -> tuple[str, str]:
    """The display name ("" if none) and the URI of a name-addr as pjsua2 gives it (a From or a To)."""
    name = _DISPLAY_NAME.match(text)
    return (name.group(1).strip() if name else ""), _NAME_ADDR.sub("", text).strip()


class _Account(pj.Account):
    """What both kinds of account do with an INVITE: hand it to the user agent, on ``trunk``."""

    def __init__(self, ua: SipUserAgent, trunk: Trunk | None) -> None:
        super().__init__()
        self.ua = ua
        self.trunk = trunk

    @guarded
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.ua.incoming(prm, self.trunk)

    def callback_failed(self, prm: object) -> None:
        if isinstance(prm, pj.OnIncomingCallParam):
            self.ua.incoming_failed(prm)


class LocalAccount(_Account):
    """``sip:gateway@<address>``: takes every INVITE no trunk account claims.

    With ``srtp`` on, it takes SRTP offers too: a trunk peered by address
    rings web users through this account, not its own.
    """

    def __init__(
        self, ua: SipUserAgent, address: str, sip: SipConfig, role: SipRole, srtp: bool, native_host: str = ""
    ) -> None:
        super().__init__(ua, None)
        config = _account(sip, role, "optional" if srtp else "off", native_host)
        config.idUri = f"sip:gateway@{address}"
        self.create(config, True)


class TrunkAccount(_Account):
    """One trunk: its identity, its registration and its credentials."""

    trunk: Trunk

    def __init__(self, ua: SipUserAgent, trunk: Trunk, sip: SipConfig, role: SipRole, native_host: str = "") -> None:
        super().__init__(ua, trunk)
        self._first_retry = sip.register_retry
        self._refusals = 0
        self.retry_at: float | None = None
        """When to REGISTER again after a refusal (monotonic time), or None."""
        config = _account(sip, role, trunk.srtp, native_host)
        config.idUri = trunk_uri(trunk, trunk.username or "gateway")
        config.regConfig.registrarUri = trunk_uri(trunk)
        config.regConfig.registerOnAdd = trunk.register and role.registers
        config.regConfig.timeoutSec = trunk.expires
        config.regConfig.retryIntervalSec = int(sip.register_retry)
        config.regConfig.firstRetryIntervalSec = int(sip.register_retry)
        if trunk.username:
            config.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", trunk.username, 0, trunk.password or ""))
        self.create(config, True)

    @guarded
    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        registered = 200 <= prm.code < 300 and prm.expiration > 0
        self.ua.emit(api.TrunkState(self.trunk.name, registered, prm.code, prm.reason))
        if registered:
            self._refusals, self.retry_at = 0, None
        elif prm.code in _REFUSED:
            self._refusals += 1
            delay = min(MAX_REGISTER_RETRY, self._first_retry * 2 ** (self._refusals - 1))
            self.retry_at = time.monotonic() + delay
            log.info("trunk %s refused the registration (%s): trying again in %.0f s", self.trunk.name, prm.code, delay)

    def retry_registration(self, now: float) -> None:
        """Once a second: REGISTER again when a refusal's back-off is over."""
        if self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            try:
                self.setRegistration(True)
            except pj.Error as exc:
                log.warning("trunk %s: cannot register again: %s", self.trunk.name, exc.reason)
