"""Hostile traffic at a live call through the native relay; run by test_nativerelay_fuzz.py.

``python -m tests.relayfuzz EXTENSION COUNT`` loads the relay from EXTENSION
(the sanitizer build) in place of ``gateway._mediarelay``, checks a call carries
both tones, sends COUNT malformed, truncated, oversized and random datagrams at
the relay's browser and SIP sockets (half each; a quarter of the browser's at
the browser leg's other socket, so the relay follows it back and forth), and RTCP compounds whose
counts and lengths lie at its SIP RTCP socket (one for every eight), while
adding and removing a second call (recorded as it goes), reporting every 50 ms,
mixing a conference room of two one-leg participants (fuzzed too),
recording the call (drained each batch, restarted now and then) and playing
random sounds into it; checks the tones
again, and prints a JSON summary as its last line.
"""

from __future__ import annotations

import importlib.util
import json
import random
import struct
import sys

from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

import gateway

from .audio import has_tone
from .relayharness import (
    BROWSER_HZ,
    DTMF_PT,
    OPUS_PT,
    PHONE_HZ,
    Block,
    Call,
    middle,
    ntp_now,
    receive_all,
    relay_call,
    rtp,
    wait_for,
)

BATCH = 128  # datagrams sent before waiting for the relay to take them (within the socket buffers)
RX_BUF = 2048  # the relay's largest datagram
SEQ_SPAN = 30000
RTCP_INTERVAL = 0.05  # reports go out while the figures they are made of are being fuzzed
RTCP_TYPES = [200, 201, 202, 203, 204, 205, 206, 207]  # SR, RR, SDES, BYE, APP, feedback, XR


def load_extension(path: str) -> None:
    spec = importlib.util.spec_from_file_location("gateway._mediarelay", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["gateway._mediarelay"] = module
    gateway._mediarelay = module  # type: ignore[attr-defined]


class Fuzzer:
    """Datagrams that look like what arrives at each socket, broken in every way we know of."""

    def __init__(self, call: Call, seed: int) -> None:
        self.call = call
        self.rng = random.Random(seed)
        policy = Policy(call.browser_key, Policy.SSRC_ANY_OUTBOUND, srtp_profile=call.profile)
        policy.allow_repeat_tx = True
        self.srtp = Session(policy)  # authentic packets with any sequence number
        self.browser_seq, self.phone_seq = call.browser_seq, call.phone_seq

    def next_seq(self, base: int) -> tuple[int, int]:
        """(new base, a sequence number): a stream that moves on, reordered, repeated, lost, jumping.

        All stay within 0..SEQ_SPAN, less than half the sequence space, so libsrtp never guesses a
        rollover and the call's own stream can go on after the fuzz.
        """
        base += self.rng.random() < 0.4
        offset = self.rng.choice([0, 0, 0, 1, 2, 3, 5, -1, -2, -4, self.rng.randint(-150, 150)])
        return base, min(max(base + offset, 0), SEQ_SPAN)

    def noise(self, low: int = 0, high: int = RX_BUF + 200) -> bytes:
        return self.rng.randbytes(self.rng.randint(low, high))

    def rtp_header(self, pt: int, seq: int) -> bytes:
        """A header with random CSRC count, extension and padding bits over its fixed 12 bytes."""
        flags = 0x80 | self.rng.getrandbits(6)
        ts, ssrc = self.rng.getrandbits(32), self.rng.choice([self.call.browser_ssrc, self.rng.getrandbits(32)])
        return struct.pack("!BBHII", flags, pt | self.rng.choice([0, 0x80]), seq & 0xFFFF, ts, ssrc)

    def protect(self, packet: bytes, rtcp: bool = False) -> bytes:
        try:
            return self.srtp.protect_rtcp(packet) if rtcp else self.srtp.protect(packet)
        except (SrtpError, ValueError):  # a header libsrtp refuses, a packet pylibsrtp finds too long
            return packet

    def to_browser_side(self) -> bytes:
        rng = self.rng
        self.browser_seq, seq = self.next_seq(self.browser_seq)
        kind = rng.randrange(9)
        if kind == 0:
            return self.noise()
        if kind == 1:  # STUN, DTLS and the unassigned ranges of RFC 7983
            return bytes([rng.choice([0, 1, 2, 3, 20, 22, 23, 63, 64, 100, 127, 192, 255])]) + self.noise(0, 300)
        if kind == 2:  # authentic SRTP, random Opus payload, sequence numbers around the call's
            return self.protect(rtp(OPUS_PT, seq, rng.getrandbits(32), self.call.browser_ssrc, self.noise(0, 1200)))
        if kind == 3:  # authentic SRTP with broken CSRC/extension/padding bits or another payload type
            pt = rng.choice([OPUS_PT, 0, rng.getrandbits(7)])
            return self.protect(self.rtp_header(pt, seq) + self.noise(0, 64))
        if kind == 4:  # a good packet with its authentication tag or payload damaged
            packet = bytearray(self.protect(rtp(OPUS_PT, seq, 0, self.call.browser_ssrc, self.noise(1, 200))))
            packet[rng.randrange(12, len(packet))] ^= 1 << rng.randrange(8)
            return bytes(packet)
        if kind == 5:  # truncated anywhere
            packet = self.protect(rtp(OPUS_PT, seq, 0, self.call.browser_ssrc, self.noise(1, 300)))
            return packet[: rng.randrange(len(packet))]
        if kind == 6:  # SRTCP, authentic or not: compounds whose counts and lengths may lie, or noise
            if rng.random() < 0.5:
                packet = self.rtcp_compound(self.call.browser_ssrc, self.call.relay_to_browser_ssrc)
            else:
                rtcp = struct.pack("!BBH", 0x80 | rng.getrandbits(5), rng.randint(192, 223), rng.getrandbits(16))
                packet = rtcp + struct.pack("!I", self.call.browser_ssrc) + self.noise(0, 100)
            return self.protect(packet, rtcp=True) if rng.random() < 0.8 else packet
        if kind == 7:  # oversized: authentic packet with more behind it
            packet = self.protect(rtp(OPUS_PT, seq, 0, self.call.browser_ssrc, self.noise(1000, 1400)))
            return packet + self.noise(RX_BUF - len(packet) - 10, RX_BUF - len(packet) + 500)
        return self.rtp_header(OPUS_PT, seq) + self.noise(0, 200)  # plain RTP where SRTP is due

    def to_sip_side(self) -> bytes:
        rng = self.rng
        self.phone_seq, seq = self.next_seq(self.phone_seq)
        kind = rng.randrange(5)
        if kind == 0:
            return self.noise()
        if kind == 1:  # G.711 of any length, DTMF, comfort noise, anything else
            pt = rng.choice([self.call.law, 0, 8, DTMF_PT, 13, rng.getrandbits(7)])
            return rtp(pt, seq, rng.getrandbits(32), self.call.phone_ssrc, self.noise(0, RX_BUF))
        if kind == 2:  # broken CSRC/extension/padding bits
            return self.rtp_header(rng.choice([self.call.law, DTMF_PT]), seq) + self.noise(0, 80)
        if kind == 3:  # truncated
            return rtp(self.call.law, seq, 0, self.call.phone_ssrc, self.noise(0, 200))[: rng.randrange(13)]
        return bytes([rng.randint(192, 223) if rng.random() < 0.5 else 0x80]) + self.noise(0, 60)  # RTCP, short

    def to_sip_rtcp_side(self) -> bytes:
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            return self.noise(0, 300)
        packet = self.rtcp_compound(self.call.phone_ssrc, self.call.relay_to_phone_ssrc)
        return packet[: rng.randrange(len(packet) + 1)] if kind == 1 else packet

    def rtcp_compound(self, sender: int, ours: int) -> bytes:
        """One to four RTCP packets from `sender`: SRs and RRs whose blocks are often about `ours` (with an
        LSR that may give a round trip), other types with any body; counts, lengths and versions sometimes lie."""
        rng = self.rng
        out = b""
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(RTCP_TYPES + [rng.randint(192, 223)])
            count = rng.randint(0, 31) if rng.random() < 0.2 else rng.randint(0, 2)
            body = struct.pack("!I", rng.choice([sender, rng.getrandbits(32)]))
            if kind == 200:
                body += struct.pack("!QIII", rng.choice([ntp_now(), rng.getrandbits(64)]), *(rng.getrandbits(32) for _ in range(3)))
            if kind in (200, 201):
                for _ in range(count if rng.random() < 0.8 else rng.randint(0, 3)):
                    lsr = rng.choice([0, (middle(ntp_now()) - rng.randint(0, 70 * 65536)) & 0xFFFFFFFF, rng.getrandbits(32)])
                    values = (rng.getrandbits(8), rng.getrandbits(24), *(rng.getrandbits(32) for _ in range(2)))
                    body += Block(rng.choice([ours, rng.getrandbits(32)]), *values, lsr, rng.getrandbits(32)).pack()
            else:
                body += self.noise(0, 60)
                body = body[: len(body) & ~3]
            words = len(body) // 4 if rng.random() < 0.85 else rng.getrandbits(16)
            first = 0x80 if rng.random() < 0.95 else rng.getrandbits(3) << 5
            out += struct.pack("!BBH", first | count, kind, words) + body
        return out


def fuzz(call: Call, count: int) -> int:
    """Send `count` datagrams, half at each side's RTP sockets (the browser's two), and RTCP for one in eight at
    the SIP RTCP socket (a tenth from the wrong address), each batch taken by the relay before the next.

    The call's own streams then go on well past the sequence numbers the fuzz used.
    """
    fuzzer = Fuzzer(call, seed=7)
    relay, sent = call.relay, 0
    relay.record(call.handle, True)
    web, phone = (Call(relay, 0, Policy.SRTP_PROFILE_AES128_CM_SHA1_80) for _ in range(2))
    web.handle = relay.add_call(web.browser_media(), None, room=1)
    phone.handle = relay.add_call(None, phone.sip_media(), room=1)
    in_room = (Fuzzer(web, seed=8), Fuzzer(phone, seed=9))
    while sent < count:
        sound = fuzzer.noise(0, 3200)
        relay.play(call.handle, sound[: len(sound) // 2 * 2])  # 8 kHz s16: an even length
        for i in range(BATCH // 2):
            call.send_from_browser(fuzzer.to_browser_side(), to_other=i % 4 == 1)
            call.send_from_phone(fuzzer.to_sip_side())
            if i % 4 == 0:
                call.send_phone_rtcp(fuzzer.to_sip_rtcp_side(), call.phone if fuzzer.rng.random() < 0.1 else None)
            if i % 8 == 0:
                web.send_from_browser(in_room[0].to_browser_side())
                phone.send_from_phone(in_room[1].to_sip_side())
        sent += BATCH
        if sent % 20480 == 0:  # a second call comes and goes under load
            with relay_call() as other:
                other.relay.close()
            second = Call(relay, 8, Policy.SRTP_PROFILE_AEAD_AES_128_GCM)
            relay.record(second.add(), True)
            relay.remove_call(second.handle)
            second.close()
            relay.record(call.handle, False)
            relay.record(call.handle, True)
        relay.recorded(call.handle)

        def taken() -> bool:
            stats = relay.stats(call.handle)
            for sock in (call.browser, call.phone, call.phone_rtcp, web.browser, phone.phone):
                receive_all(sock)
            relay.drain_foreign()
            return (stats["browser_rx_packets"], stats["sip_rx_packets"], stats["sip_rtcp_rx_packets"]) == (
                call.sent_to_browser_side, call.sent_to_sip_side, call.sent_to_sip_rtcp
            )

        assert wait_for(taken, timeout=30), relay.stats(call.handle)
    relay.play(call.handle, b"")  # nothing mixed into the tone checked next
    relay.record(call.handle, False)
    for participant in (web, phone):
        relay.remove_call(participant.handle)
        participant.close()
    call.browser_seq = call.phone_seq = SEQ_SPAN + 1000
    return sent


def tones_heard(call: Call) -> dict[str, bool]:
    heard_browser, heard_phone = call.talk(1.0)
    return {
        "browser_hears_phone": has_tone(call.browser_audio(call.unprotect(heard_browser))[4800:], 48000, PHONE_HZ),
        "phone_hears_browser": has_tone(call.phone_audio(heard_phone)[800:], 8000, BROWSER_HZ),
    }


def main() -> None:
    load_extension(sys.argv[1])
    count = int(sys.argv[2])
    with relay_call(rtcp_interval=RTCP_INTERVAL) as call:
        before = tones_heard(call)
        sent = fuzz(call, count)
        after = tones_heard(call)
        stats = call.relay.stats(call.handle)
    extension = sys.modules["gateway._mediarelay"].__file__
    summary = {"extension": extension, "sent": sent, "sent_rtcp": call.sent_to_sip_rtcp, "before": before, "after": after}
    print(json.dumps({**summary, "stats": stats}))


if __name__ == "__main__":
    main()
