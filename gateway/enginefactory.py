"""The real media engine: pjsua2 for SIP, aiortc for browsers, packets carried natively when configured and possible."""

from __future__ import annotations

import logging
from typing import Callable

from . import engineapi as api, logs, nativemedia
from .config import Config
from .engine import MediaEngine
from .engineapi import SipRole
from .pjsipleg import PjsipLeg
from .remotesipleg import RemoteSipLeg, SipProcesses
from .sipprocess import SipSpec


def media_engine(
    config: Config,
    emit: api.EventSink,
    role: SipRole,
    sip_processes: SipProcesses | None = None,
    index: int = 0,
    on_sip_lost: Callable[[], None] = lambda: None,
) -> MediaEngine:
    """One engine; with ``sip_processes`` and native media its pjsua2 runs in a SIP process of its own.

    Python media needs pjsua2 in the engine's own process (the audio crosses
    its conference bridge), so an engine on the Python path always has it there.
    """
    native = nativemedia.NativeMedia(config) if nativemedia.wanted(config) else None
    trunks = tuple(config.plan.trunks.values())
    if native is not None and sip_processes is not None:
        spec = SipSpec(config.sip, role, trunks, index, logging.getLogger().getEffectiveLevel(), logs.current_format())
        return MediaEngine(config, emit, RemoteSipLeg(sip_processes, spec, on_sip_lost), native=native)
    return MediaEngine(config, emit, PjsipLeg(config.sip, role, trunks, native is not None), native=native)
