"""The WebRTC media hand-off: after it, SRTP we protect ourselves is the call's audio, both ways, and ICE consent holds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aioice.ice import CONSENT_INTERVAL
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from pylibsrtp import Policy, Session

from gateway import webrtchandoff
from gateway.turn import turn_server
from gateway.webrtchandoff import HandoffRefused, HandoffUnavailable, hand_off

from .audio import has_tone, tone
from .peers import netns
from .peers.coturn import Coturn
from .peers.net import wait_for_async
from .srtpcall import RATE, SrtpCall, encode_opus, pump
from .webclient import ToneTrack

OURS_HZ, THEIRS_HZ = 700, 1100
HANDED_OFF_HZ = 900
"""What we send ourselves after the hand-off: not aiortc's tone, so hearing it proves our SRTP."""


class Peer:
    """An aiortc peer connection playing a tone and recording what it hears."""

    def __init__(self, freq: float, config: RTCConfiguration | None = None) -> None:
        self.pc = RTCPeerConnection(config or RTCConfiguration(iceServers=[]))
        self.pc.addTrack(ToneTrack(freq))
        self.received: list[tuple[float, np.ndarray]] = []
        self.pc.on("track", lambda track: asyncio.ensure_future(self._record(track)))

    async def _record(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().reshape(-1)[:: len(frame.layout.channels)]
                self.received.append((time.monotonic(), samples.astype(np.int16)))

    def heard_since(self, since: float) -> np.ndarray:
        return heard_since(self.received, since)


def heard_since(received: list[tuple[float, np.ndarray]], since: float) -> np.ndarray:
    """The audio of (arrival time, samples) chunks that arrived after ``since``."""
    chunks = [samples for arrived, samples in received if arrived >= since]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


async def connect(ours: Peer, theirs: Peer) -> None:
    await ours.pc.setLocalDescription(await ours.pc.createOffer())
    await theirs.pc.setRemoteDescription(ours.pc.localDescription)
    await theirs.pc.setLocalDescription(await theirs.pc.createAnswer())
    await ours.pc.setRemoteDescription(theirs.pc.localDescription)
    await wait_for_async(lambda: ours.pc.connectionState == theirs.pc.connectionState == "connected", 15)


@contextlib.asynccontextmanager
async def pair(ours_config: RTCConfiguration | None = None) -> AsyncIterator[tuple[Peer, Peer]]:
    ours, theirs = Peer(OURS_HZ, ours_config), Peer(THEIRS_HZ)
    try:
        await connect(ours, theirs)
        yield ours, theirs
    finally:
        await ours.pc.close()
        await theirs.pc.close()


async def test_handed_off_path_carries_our_srtp_both_ways_and_keeps_consent() -> None:
    async with pair() as (ours, theirs):
        path = await hand_off(ours.pc)
        assert path.remote_addr[0] == path.local_addr[0]  # both peers on this machine's interface address
        assert path.payload_type in {c.payloadType for c in ours.pc.getTransceivers()[0]._codecs}
        call = SrtpCall(path, encode_opus(tone(HANDED_OFF_HZ, 1.0, RATE), 32000), decode=True)
        try:
            started = time.monotonic()
            sending = asyncio.ensure_future(pump([call], 60))
            await wait_for_async(lambda: has_tone(theirs.heard_since(started + 0.5)[-RATE:], RATE, HANDED_OFF_HZ), 10)
            await wait_for_async(lambda: has_tone(heard_since(call.received, started + 0.5)[-RATE:], RATE, THEIRS_HZ), 10)
            assert call.ssrcs == {path.remote_ssrc}
            # Two consent checks answered after the hand-off: more than one consent interval, and the pair is still up.
            await wait_for_async(lambda: call.stun_responses >= 2, 3 * CONSENT_INTERVAL)
            assert ours.pc.connectionState == "connected" and ours.pc.iceConnectionState == "completed"
            heard_from = time.monotonic()
            await wait_for_async(lambda: has_tone(theirs.heard_since(heard_from)[-RATE // 2 :], RATE, HANDED_OFF_HZ), 10)
            sending.cancel()
        finally:
            call.close()


async def test_following_the_media_moves_aioices_pair_on_the_same_socket() -> None:
    """When the relay follows the browser's media, aioice's consent checks (and aiortc's DTLS) go there too,
    from the handed-off socket: to a candidate it knows, or a peer-reflexive one it makes."""
    async with pair() as (ours, theirs):
        path = await hand_off(ours.pc)
        connection = ours.pc.getTransceivers()[0].sender.transport.transport._connection
        for source, kind in ((("192.0.2.7", 4711), "prflx"), (path.remote_addr, "host")):  # and back
            path.follow(source)
            moved = connection._nominated[1]
            assert (moved.remote_addr, moved.remote_candidate.type) == (source, kind)
            assert moved.protocol.transport.get_extra_info("socket").fileno() == path.fd


async def test_the_hand_off_takes_every_local_socket_and_following_moves_aioices_pair_to_another() -> None:
    """With two local addresses the browser may move its media to the other socket in mid-call: the hand-off
    gives the new owner both sockets (asyncio reads neither any more), and following the media there moves
    aioice's consent checks to that socket."""
    with netns.two_address_host() as host, netns.inside(host):
        async with pair() as (ours, theirs):
            path = await hand_off(ours.pc)
            connection = ours.pc.getTransceivers()[0].sender.transport.transport._connection
            sockets = {p.transport.get_extra_info("socket").fileno(): p for p in connection._protocols}
            assert len(sockets) == 2 and {path.fd, *path.other_fds} == set(sockets)
            assert all(not sockets[fd].transport.is_reading() for fd in sockets)
            path.follow(path.remote_addr, 1)
            moved = connection._nominated[1]
            assert moved.protocol is sockets[path.other_fds[0]] and moved.remote_addr == path.remote_addr
            assert path.local_address(1) == moved.protocol.transport.get_extra_info("sockname")[:2] != path.local_addr


async def _stats_of(pc: RTCPeerConnection, kind: str) -> list:
    return [stats for stats in (await pc.getStats()).values() if stats.type == kind]


async def test_our_srtcp_after_the_hand_off_is_taken_only_after_aiortcs() -> None:
    """Once aiortc's own SR reached the far end, RTCP we protect counts there only when it goes on from
    ``srtcp_index``: a report protected from the start of the index space is dropped as a replay."""
    async with pair() as (ours, theirs):
        await wait_for_async(lambda: _stats_of(theirs.pc, "remote-outbound-rtp"), 10)  # aiortc's SR arrived
        path = await hand_off(ours.pc)
        assert path.srtcp_index >= 2  # that SR, and hand_off's probe
        assert path.cname in ours.pc.localDescription.sdp
        their_ssrc = theirs.pc.getSenders()[0]._ssrc

        def session(skipped: int) -> Session:
            tx = Session(Policy(key=path.outbound_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=path.srtp_profile))
            for _ in range(skipped):
                tx.protect_rtcp(struct.pack("!BBHI", 0x80, 201, 1, path.ssrc))
            return tx

        def rr(lost: int) -> bytes:
            return struct.pack("!BBHIIIIIII", 0x81, 201, 7, path.ssrc, their_ssrc, lost, 0, 0, 0, 0)

        going_on, from_the_start = session(path.srtcp_index), session(0)
        sr = struct.pack("!BBHIQIII", 0x80, 200, 6, path.ssrc, 0, 0, 4242, 0)  # "4242 packets sent": a marker
        with socket.socket(fileno=os.dup(path.fd)) as sock:
            for packet in (going_on.protect_rtcp(rr(1234)), from_the_start.protect_rtcp(rr(1111)), going_on.protect_rtcp(sr)):
                sock.sendto(packet, path.remote_addr)
        await wait_for_async(lambda: _remote_outbound_sent(theirs.pc, 4242), 10)  # so the RRs before it were taken or refused
        assert [stats.packetsLost for stats in await _stats_of(theirs.pc, "remote-inbound-rtp")] == [1234]


async def _remote_outbound_sent(pc: RTCPeerConnection, packets: int) -> bool:
    return any(stats.packetsSent == packets for stats in await _stats_of(pc, "remote-outbound-rtp"))


async def test_relayed_pair_is_refused_and_the_call_stays_with_aiortc(tmp_path: Path) -> None:
    with Coturn(tmp_path, "turn-secret") as turn:
        server = RTCIceServer(**turn_server([turn.url], "turn-secret", 600, "handoff", time.time()))
        relay_only = RTCConfiguration(iceServers=[server], iceTransportPolicy=RTCIceTransportPolicy.RELAY)
        async with pair(relay_only) as (ours, theirs):
            with pytest.raises(HandoffRefused, match="TURN"):
                await hand_off(ours.pc)
            since = time.monotonic()
            await wait_for_async(lambda: has_tone(ours.heard_since(since)[-RATE // 2 :], RATE, THEIRS_HZ), 10)


async def test_unconnected_peer_is_refused() -> None:
    pc = RTCPeerConnection()
    try:
        with pytest.raises(HandoffRefused, match="new"):
            await hand_off(pc)
    finally:
        await pc.close()


def test_untested_aiortc_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(webrtchandoff.TESTED_VERSIONS, "aiortc", ("1.17.0", "1.16."))
    with pytest.raises(HandoffUnavailable, match=r"aiortc 1\.17\.0"):
        webrtchandoff._check_internals()
    assert issubclass(HandoffUnavailable, ImportError)
