"""SIP accounts: the gateway's own address, and one per trunk.

A trunk account registers (when the trunk asks for it) and answers digest
challenges with the trunk's credentials, both for REGISTER and for the
INVITEs sent through it.  pjsua2 retries a failed registration after
``sip.register_retry`` seconds, so wrong credentials are never retried in a
tight loop.  Runs on the SIP thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pjsua2 as pj

from . import engineapi as api
from .config import SipConfig
from .engineapi import SipRole
from .sipthread import guarded

if TYPE_CHECKING:
    from dialplan import Trunk

    from .sipua import SipUserAgent


def _account(sip: SipConfig, role: SipRole) -> pj.AccountConfig:
    account = pj.AccountConfig()
    # pjsua re-INVITEs to narrow an answer that lists several codecs down to one; those
    # extra re-INVITEs collide with the far end's (hold, resume) and both get 491.
    account.mediaConfig.lockCodecEnabled = False
    if role.front:
        account.sipConfig.proxies.append(f"sip:{role.front};lr")
    account.mediaConfig.transportConfig.port = sip.rtp_port
    account.mediaConfig.transportConfig.boundAddress = sip.listen
    if sip.public_host:
        account.mediaConfig.transportConfig.publicAddress = sip.public_host
    return account


def trunk_uri(trunk: Trunk, user: str = "") -> str:
    """Where a request for ``user`` (or, without one, a REGISTER) goes on ``trunk``."""
    transport = ";transport=tcp" if trunk.transport == "tcp" else ""
    return f"sip:{user + '@' if user else ''}{trunk.host}{transport}"


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
    """``sip:gateway@<address>``: takes every INVITE no trunk account claims."""

    def __init__(self, ua: SipUserAgent, address: str, sip: SipConfig, role: SipRole) -> None:
        super().__init__(ua, None)
        config = _account(sip, role)
        config.idUri = f"sip:gateway@{address}"
        self.create(config, True)


class TrunkAccount(_Account):
    """One trunk: its identity, its registration and its credentials."""

    trunk: Trunk

    def __init__(self, ua: SipUserAgent, trunk: Trunk, sip: SipConfig, role: SipRole) -> None:
        super().__init__(ua, trunk)
        config = _account(sip, role)
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
