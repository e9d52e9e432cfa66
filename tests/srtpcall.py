"""One call's audio carried by hand after the WebRTC hand-off: pre-encoded Opus over pylibsrtp.

Once ``gateway.webrtchandoff.hand_off`` has taken a peer connection's media
path, nothing in aiortc sends or receives its RTP. An ``SrtpCall`` does,
on a duplicate of the handed-off socket: it sends Opus frames encoded
beforehand (no encoder per call), counts what comes back and its losses
from sequence numbers, decodes it only if asked, and gives every STUN or
DTLS datagram back to aioice so ICE consent holds. ``pump`` paces any
number of them from one loop: the hand-off test uses one, bench.media_calls
hundreds.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Sequence

import av
import numpy as np
from aioice import stun
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from gateway.webrtchandoff import SAMPLES_PER_FRAME, MediaPath, is_srtp
from gateway.webrtcleg import opus_encoder

RATE = 48000
FRAME_S = SAMPLES_PER_FRAME / RATE
_RTP_HEADER = struct.Struct("!BBHII")


def encode_opus(signal: np.ndarray, bit_rate: int) -> list[bytes]:
    """Mono 48 kHz int16 ``signal`` as 20 ms Opus packets, with the gateway's encoder at ``bit_rate``."""
    codec = opus_encoder()
    codec.bit_rate = bit_rate
    packets = []
    for first in range(0, len(signal) - SAMPLES_PER_FRAME + 1, SAMPLES_PER_FRAME):
        frame = av.AudioFrame.from_ndarray(signal[first : first + SAMPLES_PER_FRAME].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, first
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets[: len(signal) // SAMPLES_PER_FRAME]


def opus_decoder() -> av.AudioCodecContext:
    """Decodes mono or stereo Opus to mono 48 kHz s16 (libopus downmixes)."""
    codec = av.CodecContext.create("libopus", "r")
    codec.format, codec.layout, codec.sample_rate = "s16", "mono", RATE
    return codec


def rtp_payload(packet: bytes) -> tuple[int, int, bytes]:
    """(sequence number, SSRC, payload) of an RTP packet, past CSRCs, header extension and padding."""
    first, _, sequence, _, ssrc = _RTP_HEADER.unpack_from(packet)
    start = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        start += 4 + 4 * struct.unpack_from("!H", packet, start + 2)[0]
    end = len(packet) - (packet[-1] if first & 0x20 else 0)
    return sequence, ssrc, packet[start:end]


def is_rtcp(packet: bytes) -> bool:
    """RTCP multiplexed with RTP (RFC 5761): packet types 192-223 where RTP has marker + payload type."""
    return 192 <= packet[1] <= 223


class SrtpCall:
    """Sends ``frames`` in a loop on ``path`` and receives what comes back; ``decode`` keeps the audio too."""

    def __init__(self, path: MediaPath, frames: Sequence[bytes], decode: bool = False) -> None:
        self.path = path
        self._sock = socket.socket(fileno=os.dup(path.fd))
        self._sock.setblocking(False)
        self._tx = Session(Policy(key=path.outbound_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=path.srtp_profile))
        self._rx = Session(Policy(key=path.inbound_key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=path.srtp_profile))
        self._frames = frames
        self._sent = 0
        self._decoder = opus_decoder() if decode else None
        self.loop_starts: list[float] = []
        """When frame 0 of ``frames`` left, each time round: bursts at the start of the loop time round trips."""
        self.received: list[tuple[float, np.ndarray]] = []
        """Decoded audio, if ``decode``: (arrival time, 48 kHz mono samples)."""
        self.packets = 0
        self.ssrcs: set[int] = set()
        self.stereo = False
        """Whether any Opus packet that came back was coded as stereo (its TOC byte's s bit)."""
        self.highest: int | None = None
        """Highest sequence number received, extended past 16 bits."""
        self.stun_responses = 0
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._readable)

    def send_next(self, now: float) -> None:
        """Send the next frame, stamped as if one frame after the last since the hand-off."""
        index = self._sent % len(self._frames)
        if index == 0:
            self.loop_starts.append(now)
        header = _RTP_HEADER.pack(
            0x80, self.path.payload_type, (self.path.sequence + self._sent) & 0xFFFF,
            (self.path.timestamp + self._sent * SAMPLES_PER_FRAME) & 0xFFFFFFFF, self.path.ssrc,
        )
        self._sent += 1
        try:
            self._sock.sendto(self._tx.protect(header + self._frames[index]), self.path.remote_addr)
        except BlockingIOError:
            pass  # a full socket buffer loses the packet, as the network would

    def _readable(self) -> None:
        while True:
            try:
                data, addr = self._sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP unreachable from an earlier send: the peer went away
                continue
            if not data:
                continue
            if not is_srtp(data):
                self._give_back(data, addr)
            elif not is_rtcp(data):
                self._receive_rtp(data)

    def _give_back(self, data: bytes, addr: tuple[str, int]) -> None:
        if data[0] < 4:
            try:
                self.stun_responses += stun.parse_message(data).message_class == stun.Class.RESPONSE
            except ValueError:
                pass
        self.path.feed_back(data, addr)

    def _receive_rtp(self, data: bytes) -> None:
        try:
            packet = self._rx.unprotect(data)
        except SrtpError:
            return
        sequence, ssrc, payload = rtp_payload(packet)
        self.packets += 1
        self.ssrcs.add(ssrc)
        if payload:
            self.stereo |= bool(payload[0] & 0x04)
        if self.highest is None:
            self.highest = sequence
        else:
            self.highest += max(0, (sequence - self.highest + 32768) % 65536 - 32768)
        if self._decoder is not None:
            samples = [frame.to_ndarray().reshape(-1) for frame in self._decoder.decode(av.Packet(payload))]
            if samples:
                self.received.append((time.monotonic(), np.concatenate(samples).astype(np.int16)))

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()


async def pump(calls: Sequence[SrtpCall], seconds: float) -> None:
    """Send one frame on every call each 20 ms, for ``seconds``, on an absolute schedule (no drift)."""
    start = time.monotonic()
    for tick in range(round(seconds / FRAME_S)):
        await asyncio.sleep(max(0.0, start + tick * FRAME_S - time.monotonic()))
        now = time.monotonic()
        for call in calls:
            call.send_next(now)
