"""Both ends of a call through the native relay, in Python, for its tests.

A "browser" (SRTP with known keys via pylibsrtp, Opus 48 kHz via PyAV) and a
"SIP phone" (plain RTP, G.711 through numpy tables made here, independently
of the relay's own) each play a pulsed tone and record what they hear, on
real UDP sockets on 127.0.0.1. Used in-process by test_nativerelay.py and in
the sanitizer subprocess of test_nativerelay_fuzz.py.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import av
import numpy as np
from pylibsrtp import Policy, Session

from gateway.nativerelay import BrowserMedia, NativeRelay, SipMedia

from .audio import tone

OPUS_PT, DTMF_PT = 111, 101
BROWSER_HZ, PHONE_HZ = 600, 1000
FRAME_48K, FRAME_8K = 960, 160
KEY_LENGTHS = {
    Policy.SRTP_PROFILE_AES128_CM_SHA1_80: 30,
    Policy.SRTP_PROFILE_AEAD_AES_128_GCM: 28,
    Policy.SRTP_PROFILE_AEAD_AES_256_GCM: 44,
}


def _g711_decode_table(law: int) -> np.ndarray:
    """The 256 G.711 code words as linear samples, from ITU-T G.711's segment definition."""
    codes = np.arange(256)
    if law == 0:
        u = ~codes & 0xFF
        exponent, mantissa = (u >> 4) & 7, u & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)
    a = codes ^ 0x55
    segment, mantissa = (a >> 4) & 7, a & 0x0F
    magnitude = np.where(segment == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(segment - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


G711_DECODE = {law: _g711_decode_table(law) for law in (0, 8)}


def g711_encode(samples: np.ndarray, law: int) -> bytes:
    """Each sample as the code word whose level is nearest (G.711 quantisation, by search)."""
    table = G711_DECODE[law].astype(np.int32)
    order = np.argsort(table)
    levels = table[order]
    index = np.clip(np.searchsorted(levels, samples.astype(np.int32)), 1, 255)
    nearer_below = samples - levels[index - 1] < levels[index] - samples
    return order[np.where(nearer_below, index - 1, index)].astype(np.uint8).tobytes()


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def ntp_now() -> int:
    """The wall clock as a 64-bit NTP timestamp."""
    return int((time.time() + 2208988800) * 2**32)


def middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: what LSR echoes."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True)
class Block:
    """An RTCP report block (RFC 3550 6.4.1) about the source ``ssrc``."""

    ssrc: int
    fraction: int = 0
    lost: int = 0
    highest: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    def pack(self) -> bytes:
        return struct.pack(
            "!IIIIII", self.ssrc, self.fraction << 24 | self.lost & 0xFFFFFF, self.highest, self.jitter, self.lsr, self.dlsr
        )


@dataclass(frozen=True)
class Report:
    """An SR (type 200, with sender info) or RR (201)."""

    type: int
    ssrc: int
    blocks: tuple[Block, ...] = ()
    ntp: int = 0
    rtp_timestamp: int = 0
    packets: int = 0
    octets: int = 0

    def pack(self) -> bytes:
        body = struct.pack("!I", self.ssrc)
        if self.type == 200:
            body += struct.pack("!QIII", self.ntp, self.rtp_timestamp, self.packets, self.octets)
        body += b"".join(block.pack() for block in self.blocks)
        return struct.pack("!BBH", 0x80 | len(self.blocks), self.type, len(body) // 4) + body


def parse_rtcp(compound: bytes) -> tuple[list[Report], dict[int, str]]:
    """The SRs and RRs of a compound packet, and the CNAMEs of its SDES chunks by SSRC."""
    reports, cnames = [], {}
    while compound:
        count, kind, words = compound[0] & 0x1F, compound[1], struct.unpack("!H", compound[2:4])[0]
        packet, compound = compound[: 4 + 4 * words], compound[4 + 4 * words :]
        if kind in (200, 201):
            info = struct.unpack("!QIII", packet[8:28]) if kind == 200 else (0, 0, 0, 0)
            start = 28 if kind == 200 else 8
            blocks = []
            for i in range(count):
                ssrc, lost, highest, jitter, lsr, dlsr = struct.unpack("!IIIIII", packet[start + 24 * i : start + 24 * i + 24])
                loss = lost & 0xFFFFFF
                blocks.append(Block(ssrc, lost >> 24, loss - (1 << 24) if loss & 0x800000 else loss, highest, jitter, lsr, dlsr))
            reports.append(Report(kind, struct.unpack("!I", packet[4:8])[0], tuple(blocks), *info))
        elif kind == 202:  # SDES: each chunk's CNAME item
            chunk = packet[4:]
            for _ in range(count):
                ssrc, offset = struct.unpack("!I", chunk[:4])[0], 4
                while chunk[offset] != 0:
                    if chunk[offset] == 1:
                        cnames[ssrc] = chunk[offset + 2 : offset + 2 + chunk[offset + 1]].decode()
                    offset += 2 + chunk[offset + 1]
                chunk = chunk[(offset + 4) & ~3 :]
    return reports, cnames


def is_rtcp(packet: bytes) -> bool:
    """RFC 5761's test: RTCP's packet types 192..223 are where RTP would have marker bit and payload type."""
    return len(packet) > 1 and 192 <= packet[1] <= 223


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setblocking(False)
    return sock


def receive_all(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on a non-blocking socket."""
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `condition` until true or `timeout` passes (a deadline for failing, never a measurement)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@dataclass
class Call:
    """One call through a relay: the relay's own sockets (two on the browser's side, as an ICE connection
    with two local addresses has) and the two Python ends."""

    relay: NativeRelay
    law: int
    profile: int
    relay_browser: socket.socket = field(default_factory=udp_socket)
    relay_browser_other: socket.socket = field(default_factory=udp_socket)
    """The browser leg's other socket (the relay's socket 1), where the browser's media may move."""
    relay_sip: socket.socket = field(default_factory=udp_socket)
    relay_sip_rtcp: socket.socket = field(default_factory=udp_socket)
    browser: socket.socket = field(default_factory=udp_socket)
    phone: socket.socket = field(default_factory=udp_socket)
    phone_rtcp: socket.socket = field(default_factory=udp_socket)
    browser_ssrc: int = 0x11111111
    relay_to_browser_ssrc: int = 0x22222222
    phone_ssrc: int = 0x33333333
    relay_to_phone_ssrc: int = 0x44444444
    handle: int = 0
    browser_seq: int = 1000
    phone_seq: int = 5000
    sent_to_browser_side: int = 0
    sent_to_sip_side: int = 0
    sent_to_sip_rtcp: int = 0
    rtcp_to_browser: list[bytes] = field(default_factory=list)
    """SRTCP the relay sent the browser, set aside by :meth:`hear_browser`."""

    def __post_init__(self) -> None:
        length = KEY_LENGTHS[self.profile]
        self.browser_key, self.relay_key = os.urandom(length), os.urandom(length)
        self.browser_tx = Session(Policy(self.browser_key, Policy.SSRC_ANY_OUTBOUND, srtp_profile=self.profile))
        self.browser_rx = Session(Policy(self.relay_key, Policy.SSRC_ANY_INBOUND, srtp_profile=self.profile))
        self.encoder = av.CodecContext.create("libopus", "w")
        self.encoder.sample_rate, self.encoder.layout, self.encoder.format = 48000, "mono", "s16"
        self.encoder.bit_rate = 32000
        self.decoder = av.CodecContext.create("libopus", "r")
        self.decoder.sample_rate, self.decoder.layout, self.decoder.format = 48000, "mono", "s16"
        self.encoded_samples = 0

    def add(self, rtcp_interval: float = 5.0, srtcp_index: int = 0, **sip: object) -> int:
        self.handle = self.relay.add_call(
            self.browser_media(srtcp_index), self.sip_media(**sip), rtcp_interval=rtcp_interval
        )
        return self.handle

    def browser_media(self, srtcp_index: int = 0) -> BrowserMedia:
        """The relay's browser leg, towards this call's browser socket."""
        return BrowserMedia(
            fd=self.relay_browser.fileno(),
            remote=self.browser.getsockname(),
            srtp_profile=self.profile,
            srtp_rx_key=self.browser_key,
            srtp_tx_key=self.relay_key,
            payload_type=OPUS_PT,
            ssrc=self.relay_to_browser_ssrc,
            srtcp_index=srtcp_index,
            other_fds=(self.relay_browser_other.fileno(),),
        )

    def sip_media(self, **sip: object) -> SipMedia:
        """The relay's SIP leg, towards this call's phone socket."""
        return SipMedia(
            **{  # type: ignore[arg-type]
                "fd": self.relay_sip.fileno(),
                "remote": self.phone.getsockname(),
                "payload_type": self.law,
                "ssrc": self.relay_to_phone_ssrc,
                "telephone_event_pt": DTMF_PT,
                "rtcp_fd": self.relay_sip_rtcp.fileno(),
                "rtcp_remote": self.phone_rtcp.getsockname(),
                **sip,
            }
        )

    def hear_browser(self) -> list[bytes]:
        """The SRTP the browser has received since last asked; SRTCP goes to :attr:`rtcp_to_browser`."""
        heard = receive_all(self.browser)
        self.rtcp_to_browser += [packet for packet in heard if is_rtcp(packet)]
        return [packet for packet in heard if not is_rtcp(packet)]

    def opus_packets(self, samples: np.ndarray) -> Iterator[bytes]:
        """Opus packets (20 ms each) of 48 kHz samples."""
        for start in range(0, len(samples) - FRAME_48K + 1, FRAME_48K):
            frame = av.AudioFrame.from_ndarray(samples[start : start + FRAME_48K].reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 48000, self.encoded_samples
            self.encoded_samples += FRAME_48K
            for packet in self.encoder.encode(frame):
                yield bytes(packet)

    def browser_packet(self, payload: bytes) -> bytes:
        """An SRTP packet from the browser with the next sequence number."""
        self.browser_seq += 1
        return self.browser_tx.protect(rtp(OPUS_PT, self.browser_seq, self.browser_seq * FRAME_48K, self.browser_ssrc, payload))

    def phone_packet(self, samples: np.ndarray) -> bytes:
        self.phone_seq += 1
        return rtp(self.law, self.phone_seq, self.phone_seq * FRAME_8K, self.phone_ssrc, g711_encode(samples, self.law))

    def send_from_browser(self, packet: bytes, to_other: bool = False) -> None:
        """To the relay's browser socket, or with ``to_other`` to the leg's other socket."""
        self.browser.sendto(packet, (self.relay_browser_other if to_other else self.relay_browser).getsockname())
        self.sent_to_browser_side += 1

    def send_from_phone(self, packet: bytes) -> None:
        self.phone.sendto(packet, self.relay_sip.getsockname())
        self.sent_to_sip_side += 1

    def send_phone_rtcp(self, packet: bytes, sock: socket.socket | None = None) -> None:
        """RTCP to the relay's SIP RTCP socket, from the phone's RTCP socket unless ``sock`` is given."""
        (sock or self.phone_rtcp).sendto(packet, self.relay_sip_rtcp.getsockname())
        self.sent_to_sip_rtcp += 1

    def talk(self, seconds: float) -> tuple[list[bytes], list[bytes]]:
        """Both ends play their tones in 20 ms packets; returns (browser heard, phone heard) packets.

        Each pair of packets waits (briefly) for something to come back, so neither side floods.
        """
        browser_tone = tone(BROWSER_HZ, seconds, 48000, pulsed=True)
        phone_tone = tone(PHONE_HZ, seconds, 8000, pulsed=True)
        opus = list(self.opus_packets(browser_tone))
        heard_browser: list[bytes] = []
        heard_phone: list[bytes] = []
        for i in range(len(phone_tone) // FRAME_8K):
            if i < len(opus):
                self.send_from_browser(self.browser_packet(opus[i]))
            self.send_from_phone(self.phone_packet(phone_tone[i * FRAME_8K : (i + 1) * FRAME_8K]))
            select.select([self.browser, self.phone], [], [], 0.02)
            heard_browser += self.hear_browser()
            heard_phone += receive_all(self.phone)
        want = len(phone_tone) // FRAME_8K - 2 * 3  # what is still in the reorder window or the encoder
        wait_for(lambda: (heard_browser.extend(self.hear_browser()), len(heard_browser) >= want)[1])
        wait_for(lambda: (heard_phone.extend(receive_all(self.phone)), len(heard_phone) >= want)[1])
        return heard_browser, heard_phone

    def unprotect(self, packets: list[bytes]) -> list[bytes]:
        """The browser's SRTP packets as plain RTP (each can be unprotected once only)."""
        return [self.browser_rx.unprotect(packet) for packet in packets]

    def browser_audio(self, packets: list[bytes]) -> np.ndarray:
        """What the browser heard, from plain RTP: Opus decoded at 48 kHz."""
        pcm = []
        for packet in packets:
            for frame in self.decoder.decode(av.Packet(packet[12:])):
                pcm.append(frame.to_ndarray().reshape(-1))
        return np.concatenate(pcm) if pcm else np.zeros(0, np.int16)

    def phone_audio(self, packets: list[bytes]) -> np.ndarray:
        return np.concatenate([G711_DECODE[self.law][np.frombuffer(p[12:], np.uint8)] for p in packets])

    def close(self) -> None:
        relay = (self.relay_browser, self.relay_browser_other, self.relay_sip, self.relay_sip_rtcp)
        for sock in (*relay, self.browser, self.phone, self.phone_rtcp):
            sock.close()


@contextmanager
def relay_call(
    law: int = 0, profile: int = Policy.SRTP_PROFILE_AES128_CM_SHA1_80, rtcp_interval: float = 5.0, **sip: object
) -> Iterator[Call]:
    """A started relay carrying one call; both are closed afterwards."""
    relay = NativeRelay()
    relay.start()
    call = Call(relay, law, profile)
    try:
        call.add(rtcp_interval, **sip)
        yield call
    finally:
        relay.close()
        call.close()
