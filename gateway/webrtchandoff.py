"""Take a connected aiortc peer connection's media path out of aiortc's hands.

aiortc handles every RTP packet in Python (SRTP, parsing, routing, an asyncio
hop per packet): that is most of what a call costs. Once ICE and DTLS are done
the media path is just a UDP socket, a remote address and four SRTP keys, so
a native relay (or a benchmark's load generator) can carry the packets
instead, RTCP included: its SRTCP must go on from the index aiortc reached
under our SSRC, or the browser drops it as replayed. ``hand_off(pc)``
returns those as a ``MediaPath``, stops aiortc's RTP
sender and receiver, and stops asyncio reading the socket (``pause_reading``), and the
connection's other local sockets too: the browser's ICE agent may move its media to a pair on
another of them in mid-call, so the new owner reads them all. aiortc keeps the
DTLS session and aioice keeps ICE consent alive, as long as the new owner of
the sockets gives every datagram that is not SRTP back through
``MediaPath.feed_back``, naming the socket it came on.

The path taken is the pair the browser's media comes on, not the one aioice
holds as nominated: with a local address on each of two interfaces (a Docker
host's ``docker0``) the two agents can end up on different pairs, and the
browser sends on its own. ``note_arrivals``, called once candidates are
gathered, has each local socket note the source of the last DTLS or SRTP
datagram it got from one of the browser's candidates (as rtpengine and Janus
latch onto where media comes from); the hand-off takes the latest of them.
When the media moves later, ``MediaPath.follow`` points aioice's consent
checks and aiortc's DTLS at the new socket and address.

It relies on private attributes of aiortc 1.16 and aioice 0.13; importing
this module checks them and raises ``HandoffUnavailable`` (an ImportError)
naming what changed, so the gateway can keep such calls on the Python path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import secrets
import struct
from collections.abc import Callable
from typing import Any

import aioice
import aiortc
from aioice.candidate import Candidate
from aioice.ice import CandidatePair, Connection, StunProtocol
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport, SRTPProtectionProfile
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.sdp import SessionDescription
from pylibsrtp import Policy

TESTED_VERSIONS = {"aiortc": (aiortc.__version__, "1.16."), "aioice": (aioice.__version__, "0.13.")}
SAMPLES_PER_FRAME = 960  # 20 ms of Opus's 48 kHz RTP clock
MAX_OTHER_SOCKETS = 7
"""Other local sockets handed off with the media's (the native relay reads at most 8 per call); any more
stay asyncio's, as they were."""

_RELIED_ON: list[tuple[type, str]] = [
    (RTCPeerConnection, "getTransceivers"),
    (RTCRtpTransceiver, "_codecs"),
    (RTCRtpTransceiver, "_get_mline_index"),
    (RTCRtpSender, "_ssrc"),
    (RTCRtpSender, "_send_rtcp"),
    (RTCRtpSender, "_RTCRtpSender__rtp_history"),
    (RTCRtpSender, "_RTCRtpSender__packet_count"),
    (RTCRtpSender, "_RTCRtpSender__cname"),
    (RTCDtlsTransport, "_ssl"),
    (RTCDtlsTransport, "_role"),
    (RTCDtlsTransport, "_srtp_profiles"),
    (RTCDtlsTransport, "_tx_srtp"),
    (SRTPProtectionProfile, "get_key_and_salt"),
    (RTCIceTransport, "_connection"),
    (Connection, "_nominated"),
    (Connection, "_protocols"),
    (Connection, "_remote_candidates"),
    (Connection, "_check_list"),
    (RTCIceGatherer, "_connection"),
    (CandidatePair, "protocol"),
    (CandidatePair, "remote_addr"),
    (CandidatePair, "local_candidate"),
    (StunProtocol, "transport"),
    (StunProtocol, "datagram_received"),
    (StunProtocol, "local_candidate"),
    (StunProtocol, "receiver"),
]
_ARRIVALS = itertools.count()


class HandoffUnavailable(ImportError):
    """This aiortc/aioice is not the one the hand-off was written against: stay on the Python path."""


class HandoffRefused(Exception):
    """This call's media path cannot be taken (not connected, relayed through TURN, no Opus)."""


def _check_internals() -> None:
    """Raise HandoffUnavailable unless the versions and private attributes are the tested ones."""
    for package, (version, tested) in TESTED_VERSIONS.items():
        if not version.startswith(tested):
            raise HandoffUnavailable(f"{package} {version} is installed; the media hand-off was tested with {tested}x")
    for cls, attr in _RELIED_ON:
        assigned = cls.__init__.__code__.co_names if hasattr(cls.__init__, "__code__") else ()
        if not (hasattr(cls, attr) or attr in assigned or attr in getattr(cls, "__annotations__", {})):
            raise HandoffUnavailable(f"{cls.__module__}.{cls.__qualname__} has no attribute {attr} any more")


_check_internals()


def is_srtp(data: bytes) -> bool:
    """RTP or RTCP (RFC 7983: first byte 128-191), as opposed to STUN (0-3) or DTLS (20-63)."""
    return 127 < data[0] < 192


@dataclasses.dataclass(frozen=True)
class MediaPath:
    """What carrying one call's media without aiortc takes.

    ``fd`` stays aiortc's: it is closed when the peer connection closes, so
    dup it to keep using it (and stop using it when the call ends).
    """

    fd: int
    local_addr: tuple[str, int]
    remote_addr: tuple[str, int]
    """The browser's side of the ICE pair its media comes on."""
    srtp_profile: int
    """libsrtp's profile number (pylibsrtp ``Policy.SRTP_PROFILE_*``)."""
    srtp_profile_name: str
    inbound_key: bytes
    """Master key + salt of what the browser sends."""
    outbound_key: bytes
    """Master key + salt of what we send."""
    payload_type: int
    """Opus as negotiated."""
    ssrc: int
    """Ours, as announced in our SDP: keep sending with it."""
    remote_ssrc: int | None
    """The browser's, from its SDP (or from what arrived), if known."""
    sequence: int
    """The next RTP sequence number to send: aiortc's stream goes on, so the browser's SRTP index stays right."""
    timestamp: int
    """The RTP timestamp of one frame after aiortc's last packet; add the time since the hand-off."""
    roc: int
    """Our SRTP rollover counter so far (0 unless aiortc sent 65536 packets)."""
    srtcp_index: int
    """The last SRTCP index used under our SSRC: what we protect next must come after it."""
    cname: str
    """Our RTCP CNAME, as our SDP announced it."""
    other_fds: tuple[int, ...]
    """The ICE connection's other local sockets (UDP host candidates; a server-reflexive candidate is its
    host's socket; never a TURN allocation), aiortc's like ``fd``: socket 1, 2... of ``feed_back``."""
    _protocols: tuple[StunProtocol, ...] = dataclasses.field(repr=False, compare=False)
    """aioice's protocol of ``fd``, then of each of ``other_fds``."""

    def feed_back(self, data: bytes, addr: tuple[str, int], socket: int = 0) -> None:
        """Hand a STUN or DTLS datagram that arrived on ``socket`` (0: ``fd``, then ``other_fds``) to aioice,
        so consent and DTLS keep working."""
        self._protocols[socket].datagram_received(data, addr)

    def local_address(self, socket: int) -> tuple[str, int]:
        """Our side of ``socket`` (0: ``fd``, then ``other_fds``)."""
        return self._protocols[socket].transport.get_extra_info("sockname")[:2]

    def follow(self, source: tuple[str, int], socket: int = 0) -> None:
        """The browser's media (its SRTP authenticated) now comes from ``source`` on ``socket``: aioice's
        consent checks and aiortc's DTLS go there too (a peer-reflexive candidate if aioice has not met it)."""
        protocol = self._protocols[socket]
        connection: Connection = protocol.receiver
        candidate = _remote_candidate(connection, source) or Candidate(
            secrets.token_hex(5), 1, "udp", 0, source[0], source[1], "prflx"
        )
        connection._nominated[1] = CandidatePair(protocol, candidate)


def _audio_transceiver(pc: RTCPeerConnection) -> RTCRtpTransceiver:
    audio = [t for t in pc.getTransceivers() if t.kind == "audio" and not t.stopped]
    if len(audio) != 1 or len(pc.getTransceivers()) != 1:
        raise HandoffRefused(f"expected one audio transceiver, found {[t.kind for t in pc.getTransceivers()]}")
    return audio[0]


@dataclasses.dataclass(frozen=True)
class _Arrival:
    """Where the last DTLS or SRTP datagram on one local socket came from, and when (in arrival order)."""

    order: int
    source: Candidate


def _ice_connection(transceiver: RTCRtpTransceiver) -> Connection:
    return transceiver.sender.transport.transport._connection


def note_arrivals(transceiver: RTCRtpTransceiver) -> None:
    """Have each local socket of ``transceiver``'s ICE connection note where its latest DTLS or SRTP datagram
    came from; call it once the candidates are gathered (each local candidate has its socket), before the
    browser can send.

    Only a source among the browser's candidates counts (those it signalled, or learned from its checks,
    which carry our ICE password): a stray datagram from elsewhere cannot take the hand-off's choice."""
    connection = _ice_connection(transceiver)
    for protocol in connection._protocols:
        protocol.datagram_received = _noting(connection, protocol, protocol.datagram_received)


def _noting(
    connection: Connection, protocol: StunProtocol, received: Callable[[bytes, tuple[Any, ...]], None]
) -> Callable[[bytes, tuple[Any, ...]], None]:
    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        if data and data[0] > 3:  # RFC 7983: not STUN
            source = _remote_candidate(connection, addr)
            if source is not None:
                protocol.gateway_arrival = _Arrival(next(_ARRIVALS), source)
        received(data, addr)

    return datagram_received


def _remote_candidate(connection: Connection, addr: tuple[Any, ...]) -> Candidate | None:
    """The browser's candidate at ``addr``, if it is one aioice knows."""
    return next((c for c in connection._remote_candidates if (c._network_host, c.port) == tuple(addr[:2])), None)


def _media_pair(connection: Connection) -> CandidatePair:
    """The pair the browser's latest DTLS or SRTP came on (see :func:`note_arrivals`), else the nominated one."""
    if set(connection._nominated) != {1}:
        raise HandoffRefused(f"expected one nominated ICE pair for component 1 (rtcp-mux), found {sorted(connection._nominated)}")
    arrivals = [(p.gateway_arrival, p) for p in connection._protocols if hasattr(p, "gateway_arrival")]
    if not arrivals:
        pair = connection._nominated[1]
    else:
        arrival, protocol = max(arrivals, key=lambda found: found[0].order)
        pair = next(
            (p for p in connection._check_list if p.protocol is protocol and p.remote_candidate is arrival.source),
            None,
        ) or CandidatePair(protocol, arrival.source)
    if pair.local_candidate.type == "relay":
        raise HandoffRefused(f"the ICE pair {pair} is relayed through TURN, whose framing is not handled natively")
    return pair


def _srtp_keys(dtls: RTCDtlsTransport) -> tuple[SRTPProtectionProfile, bytes, bytes]:
    """(profile, inbound key+salt, outbound key+salt), derived as ``RTCDtlsTransport._setup_srtp`` does."""
    selected = dtls._ssl.get_selected_srtp_profile()
    profile = next((p for p in dtls._srtp_profiles if p.openssl_profile == selected), None)
    if profile is None:
        raise HandoffRefused(f"DTLS negotiated no SRTP profile aiortc knows ({selected!r})")
    material = dtls._ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length))
    client_key, server_key = profile.get_key_and_salt(material, 0), profile.get_key_and_salt(material, 1)
    return (profile, client_key, server_key) if dtls._role == "server" else (profile, server_key, client_key)


def _opus_payload_type(transceiver: RTCRtpTransceiver) -> int:
    for codec in transceiver._codecs:
        if codec.mimeType.lower() == "audio/opus":
            return codec.payloadType
    raise HandoffRefused(f"Opus was not negotiated: {[c.mimeType for c in transceiver._codecs]}")


def _remote_ssrc(pc: RTCPeerConnection, transceiver: RTCRtpTransceiver) -> int | None:
    media = SessionDescription.parse(pc.remoteDescription.sdp).media[transceiver._get_mline_index()]
    return media.ssrc[0].ssrc if media.ssrc else None


def _stream_position(sender: RTCRtpSender) -> tuple[int, int, int]:
    """(next sequence number, next timestamp, rollover counter) after aiortc's last RTP packet."""
    history = sender._RTCRtpSender__rtp_history
    if not history:
        return 0, 0, 0
    sequences = {packet.sequence_number for packet in history.values()}
    last = next(packet for packet in history.values() if (packet.sequence_number + 1) % 65536 not in sequences)
    count = sender._RTCRtpSender__packet_count
    first = (last.sequence_number - count + 1) % 65536
    return (last.sequence_number + 1) % 65536, (last.timestamp + SAMPLES_PER_FRAME) % 2**32, (first + count - 1) >> 16


def _srtcp_index(dtls: RTCDtlsTransport, profile: SRTPProtectionProfile, ssrc: int) -> int:
    """The last SRTCP index aiortc used under ``ssrc``: it protects an empty RR (never sent), whose trailer
    says (RFC 3711 3.4: before the tag for AES-CM; RFC 7714 9: after it for AES-GCM)."""
    probe = dtls._tx_srtp.protect_rtcp(struct.pack("!BBHI", 0x80, 201, 1, ssrc))
    trailer = probe[8:12] if profile.libsrtp_profile == Policy.SRTP_PROFILE_AES128_CM_SHA1_80 else probe[-4:]
    return int.from_bytes(trailer, "big") & 0x7FFFFFFF


def _other_protocols(connection: Connection, taken: StunProtocol) -> list[StunProtocol]:
    """The connection's local UDP sockets besides ``taken``'s that the media may move to (not TURN's)."""
    others = [
        p for p in connection._protocols
        if p is not taken and p.local_candidate.type == "host" and p.transport.get_extra_info("socket") is not None
    ]
    return others[:MAX_OTHER_SOCKETS]


async def _silence_rtcp(packets: Any) -> None:
    """Stands in for a sender's ``_send_rtcp`` while it stops: no RTCP BYE for an SSRC that goes on."""


def _reading_stopper(transport: Any) -> Callable[[], object]:
    """What stops the event loop reading the socket: ``pause_reading``, which asyncio's datagram transport
    has only since CPython gh-103607 (3.11.7 has it; Debian 12's 3.11.2 raises NotImplementedError), or
    there what it does: take the socket out of the selector."""
    if type(transport).pause_reading is not asyncio.ReadTransport.pause_reading:
        return transport.pause_reading
    loop, fd = getattr(transport, "_loop", None), getattr(transport, "_sock_fd", None)
    if fd is None or not hasattr(loop, "_remove_reader"):
        raise HandoffRefused(f"the event loop's datagram transport {type(transport).__name__} cannot stop reading")
    return lambda: loop._remove_reader(fd)


async def hand_off(pc: RTCPeerConnection) -> MediaPath:
    """Take ``pc``'s media path: everything is checked before aiortc is touched, so a refusal leaves the call as it was."""
    if pc.connectionState != "connected":
        raise HandoffRefused(f"the peer connection is {pc.connectionState}, not connected")
    transceiver = _audio_transceiver(pc)
    sender, receiver = transceiver.sender, transceiver.receiver
    dtls = sender.transport
    connection = _ice_connection(transceiver)
    pair = _media_pair(connection)
    profile, inbound, outbound = _srtp_keys(dtls)
    payload_type = _opus_payload_type(transceiver)
    remote_ssrc = _remote_ssrc(pc, transceiver)
    protocols = [pair.protocol, *_other_protocols(connection, pair.protocol)]
    transport = pair.protocol.transport
    socks = [p.transport.get_extra_info("socket") for p in protocols]
    stoppers = [_reading_stopper(p.transport) for p in protocols]
    sender._send_rtcp = _silence_rtcp
    await sender.stop()
    await receiver.stop()
    sequence, timestamp, roc = _stream_position(sender)
    for stop_reading in stoppers:
        stop_reading()
    connection._nominated[1] = pair  # aioice's consent checks and aiortc's DTLS go where the media goes
    return MediaPath(
        fd=socks[0].fileno(), local_addr=transport.get_extra_info("sockname")[:2], remote_addr=pair.remote_addr,
        srtp_profile=profile.libsrtp_profile, srtp_profile_name=profile.openssl_profile.decode(),
        inbound_key=inbound, outbound_key=outbound, payload_type=payload_type, ssrc=sender._ssrc,
        remote_ssrc=remote_ssrc, sequence=sequence, timestamp=timestamp, roc=roc,
        srtcp_index=_srtcp_index(dtls, profile, sender._ssrc), cname=sender._RTCRtpSender__cname,
        other_fds=tuple(sock.fileno() for sock in socks[1:]), _protocols=tuple(protocols),
    )
