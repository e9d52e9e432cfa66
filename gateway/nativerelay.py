"""The native media path of established calls: :class:`NativeRelay` over ``gateway._mediarelay``.

Once a call's WebRTC leg (ICE, DTLS-SRTP) and SIP leg are set up, its media can
leave Python: the C extension relays SRTP/Opus <-> RTP/G.711 on its own thread,
with no Python per packet (about 1.3 % of a core per call, against ~8 % for the
Python bridge). Everything that is not media comes back here: STUN and DTLS
from the browser's socket (aioice must keep answering consent checks) and the
SIP side's telephone-event packets (for DTMF), through :meth:`drain_foreign`,
and word of the browser's media moving to another address or to another of
the call's local ICE sockets (the relay reads them all), which the relay
follows once new SRTP from there authenticates (aioice's consent checks must too).
RTCP ends in the relay on each leg: it sends its own reports and reads the far
ends', and :meth:`stats` gives each leg's jitter, loss and round trip.

The extension is optional: it may not have been built, or libopus/libsrtp may
be missing. :func:`load_error` says why it cannot be used, so the engine can
log that once and keep its Python path.

Handing a call over (the engine's part): stop asyncio reading the browser's
socket (the relay must be its only reader) and stop aiortc's sender and
receiver; pass the relay the socket, the SRTP keys aiortc derived and the next
RTP sequence number and timestamp of aiortc's sender, so the browser sees one
continuous stream. The relay duplicates the fds and never closes the
caller's; Python may keep sending on them (STUN answers, DTLS).

Conference rooms: a participant is a call with one leg (browser or SIP) added
with a ``room`` number; the relay mixes every 20 ms what each participant says
and sends each the sum of the others (see ``_mixer.c``). A room exists while
it has participants, within one relay.
"""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple

SYSTEM_OPUS = "libopus.so.0"
SYSTEM_SRTP = "libsrtp2.so.1"


@dataclass(frozen=True)
class BrowserMedia:
    """The WebRTC leg as the relay needs it, once DTLS has given the SRTP keys."""

    fd: int  # the UDP socket the browser's media comes on (duplicated, never closed by the relay)
    remote: tuple[str, int]  # where the browser's media comes from; followed where its newest valid SRTP comes from
    srtp_profile: int  # pylibsrtp.Policy.SRTP_PROFILE_*: AES128_CM_SHA1_80, AEAD_AES_128_GCM or _256_GCM
    srtp_rx_key: bytes  # master key + salt for what the browser sends
    srtp_tx_key: bytes  # master key + salt for what we send
    payload_type: int  # Opus's negotiated payload type
    ssrc: int  # our outbound SSRC, as signalled in SDP
    seq: int | None = None  # next outbound sequence number (None: random)
    timestamp: int | None = None  # next outbound 48 kHz timestamp (None: random)
    srtcp_index: int = 0  # SRTCP packets already sent under `ssrc` (aiortc's, before the hand-off)
    cname: str | None = None  # the RTCP CNAME of our SDP, used on both legs (None: a random one)
    other_fds: tuple[int, ...] = ()  # the ICE connection's other local sockets (at most 7), read too: socket 1, 2...


@dataclass(frozen=True)
class SipMedia:
    """The SIP leg: plain RTP with G.711."""

    fd: int  # the UDP socket (duplicated, never closed by the relay)
    remote: tuple[str, int]  # where RTP goes; RTP from any other address is dropped
    payload_type: int  # 0 PCMU or 8 PCMA
    ssrc: int
    telephone_event_pt: int | None = None  # RFC 4733 packets of this type come back through drain_foreign
    send: bool = True  # False while the call is on hold towards SIP
    receive: bool = True
    rtcp_fd: int | None = None  # our RTCP socket (the SDP's RTCP port); None: no RTCP on the SIP leg
    rtcp_remote: tuple[str, int] | None = None  # where RTCP goes and comes from (None: the RTP port + 1)


_NO_BROWSER = BrowserMedia(-1, ("0.0.0.0", 9), 0, b"", b"", 111, 0, 0, 0)
_NO_SIP = SipMedia(-1, ("0.0.0.0", 9), 0, 0)
"""A room participant's missing leg, as the relay takes it: fd -1."""


def rtcp_address(remote: tuple[str, int], rtcp_remote: tuple[str, int] | None) -> tuple[str, int]:
    """``rtcp_remote``, or RFC 3605's default for RTP at ``remote``: the next port."""
    return rtcp_remote or (remote[0], remote[1] + 1)


class Foreign(NamedTuple):
    """A datagram the relay does not carry, for Python to handle, or news that the browser moved."""

    handle: int
    kind: Literal["browser", "telephone-event", "moved"]  # browser: STUN or DTLS from one of the browser's sockets
    data: bytes  # b"" for moved
    source: tuple[str, int]  # for moved: where the browser's media now comes from, and goes
    socket: int = 0
    """For browser and moved, the browser socket it came on: 0 ``fd``, then ``other_fds`` in order."""


def library_paths() -> tuple[str, str]:
    """libopus and libsrtp 2 to load: the copies PyAV and pylibsrtp bundle, else the system's."""
    return _bundled("av", "../av.libs", "libopus*.so*") or SYSTEM_OPUS, _bundled(
        "pylibsrtp", ".", "_binding*.so"
    ) or SYSTEM_SRTP


def _bundled(package: str, folder: str, pattern: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted((Path(next(iter(spec.submodule_search_locations))) / folder).resolve().glob(pattern))
    return str(found[0]) if found else None


@cache
def load_error(opus_path: str | None = None, srtp_path: str | None = None) -> str | None:
    """Why the native relay cannot be used (None: it can); given paths override library_paths()."""
    try:
        from gateway import _mediarelay
    except ImportError as exc:
        return f"the native media relay was not built: {exc}"
    default_opus, default_srtp = library_paths()
    try:
        _mediarelay.init(opus_path or default_opus, srtp_path or default_srtp)
    except OSError as exc:
        return str(exc)
    return None


class NativeRelay:
    """The lifecycle of one native relay: a worker thread carrying up to `max_calls` calls.

    Start it in the process that carries the calls: its thread does not survive fork().
    """

    def __init__(self, max_calls: int = 64, queue_size: int = 256) -> None:
        self._max_calls = max_calls
        self._queue_size = queue_size
        self._relay: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(
        self,
        on_foreign: Callable[[list[Foreign]], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Start the worker thread; with `on_foreign`, the loop hands it each batch of foreign datagrams.

        Raises RuntimeError with :func:`load_error`'s reason when the relay cannot run.
        """
        error = load_error()
        if error:
            raise RuntimeError(error)
        from gateway import _mediarelay

        self._relay = _mediarelay.Relay(max_calls=self._max_calls, queue_size=self._queue_size)
        if on_foreign is not None:
            self._loop = loop or asyncio.get_running_loop()
            self._loop.add_reader(self.fileno(), lambda: on_foreign(self.drain_foreign()))

    def fileno(self) -> int:
        """An eventfd that is readable while :meth:`drain_foreign` has datagrams."""
        return self._relay.fileno()

    def add_call(
        self,
        browser: BrowserMedia | None,
        sip: SipMedia | None,
        opus_bitrate: int = 20000,
        opus_complexity: int = 5,
        rtcp_interval: float = 5.0,
        room: int = 0,
    ) -> int:
        """Start carrying a call's media both ways; returns its handle. Each leg gets an RTCP report about
        every `rtcp_interval` seconds (randomised by half either way, the first sooner).

        With ``room`` (> 0) the call is a participant of that room and has exactly one leg, the
        other None: it hears everyone else in the room. ValueError otherwise; RuntimeError when
        the room has the relay's maximum of participants (32)."""
        if room:
            browser = browser or _NO_BROWSER
            sip = sip or _NO_SIP
        if browser is None or sip is None:
            raise ValueError("a call outside a room needs both legs")
        return self._relay.add_call(
            browser_fd=browser.fd,
            browser_remote=browser.remote,
            srtp_profile=browser.srtp_profile,
            srtp_rx_key=browser.srtp_rx_key,
            srtp_tx_key=browser.srtp_tx_key,
            opus_pt=browser.payload_type,
            browser_ssrc=browser.ssrc,
            browser_seq=secrets.randbits(16) if browser.seq is None else browser.seq & 0xFFFF,
            browser_timestamp=secrets.randbits(32) if browser.timestamp is None else browser.timestamp & 0xFFFFFFFF,
            sip_fd=sip.fd,
            sip_remote=sip.remote,
            sip_pt=sip.payload_type,
            sip_ssrc=sip.ssrc,
            telephone_event_pt=-1 if sip.telephone_event_pt is None else sip.telephone_event_pt,
            send=sip.send,
            receive=sip.receive,
            opus_bitrate=opus_bitrate,
            opus_complexity=opus_complexity,
            sip_rtcp_fd=-1 if sip.rtcp_fd is None else sip.rtcp_fd,
            sip_rtcp_remote=None if sip.rtcp_fd is None else rtcp_address(sip.remote, sip.rtcp_remote),
            srtcp_index=browser.srtcp_index,
            cname=browser.cname,
            rtcp_interval=rtcp_interval,
            room=room,
            browser_other_fds=list(browser.other_fds),
        )

    def update_sip(
        self,
        handle: int,
        remote: tuple[str, int],
        payload_type: int,
        send: bool,
        receive: bool,
        rtcp_remote: tuple[str, int] | None = None,
    ) -> None:
        """Apply a re-INVITE: new remote or codec, hold (send=False) or resume. KeyError if unknown."""
        self._relay.update_sip(handle, remote, payload_type, send, receive, rtcp_address(remote, rtcp_remote))

    def send_dtmf(self, handle: int, events: bytes) -> bool:
        """Queue RFC 4733 events (0-9, 10 ``*``, 11 ``#``, 12-15 A-D) towards SIP, sent in place of audio;
        False when telephone-event was not negotiated (or too many wait). KeyError if unknown."""
        return bool(self._relay.send_dtmf(handle, events))

    def record(self, handle: int, on: bool) -> bytes:
        """Start (or start again) or stop recording the call; returns what was recorded and not yet taken.

        The recording is 8 kHz 16-bit stereo, browser left (as sent to SIP, with what :meth:`play`
        mixed in), SIP right, paced by the relay's clock. KeyError if unknown."""
        return self._relay.record(handle, on)

    def recorded(self, handle: int) -> bytes:
        """The recording's samples since last taken (b"" while not recording); the relay keeps 5 s for this,
        counting what it had to drop as ``recording_dropped`` in :meth:`stats`. KeyError if unknown."""
        return self._relay.recorded(handle)

    def play(self, handle: int, pcm: bytes) -> None:
        """Mix 8 kHz 16-bit mono samples (at most 5 s, a beep) into what goes to SIP, in place of any sound
        still playing. KeyError if unknown."""
        self._relay.play(handle, pcm)

    def remove_call(self, handle: int) -> bool:
        """Stop carrying a call and free it; False if it was not carried (so safe twice)."""
        return self._relay is not None and self._relay.remove_call(handle)

    def stats(self, handle: int) -> dict[str, float | None]:
        """Counters of a call, and `last_browser_media`/`last_sip_media` on time.monotonic()'s clock.

        Both times start at add_call, so a call that never gets media times out too: the engine
        ends a call whose media stopped from these (its media timeout). ``browser_moved`` counts
        the times the browser's media came from a new address or on another of its sockets (SRTP
        that authenticated, newer than any before) and the relay followed it there. KeyError if unknown.

        Each leg's RTCP figures, prefixed ``browser_`` and ``sip_``: of the stream that arrives,
        ``jitter_ms`` (RFC 3550's interarrival jitter), ``lost`` and ``expected`` (cumulative) and
        ``fraction_lost`` (0..1, of the last report's interval); from the far end's reports about
        the stream we send, ``rtt_ms``, ``remote_jitter_ms``, ``remote_lost`` and
        ``remote_fraction_lost``, each None until it is known.
        """
        return self._relay.stats(handle)

    def drain_foreign(self) -> list[Foreign]:
        """Take every queued STUN/DTLS datagram, telephone-event packet and move of the browser, oldest first."""
        kinds: tuple[Literal["browser", "telephone-event", "moved"], ...] = ("browser", "telephone-event", "moved")
        return [
            Foreign(handle, kinds[kind], data, source, sock) for handle, kind, data, source, sock in self._relay.drain()
        ]

    def close(self) -> None:
        """Stop the worker thread and free every call; safe twice."""
        if self._relay is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._relay.fileno())
        self._loop = None
        self._relay.close()
        self._relay = None
