"""The native media relay carries a call both ways, by content: each end hears the other's tone.

The extension must be built (``pip install -e .`` builds it); these tests fail,
never skip, when it is not, since the gateway would then silently fall back.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time

import pytest
from pylibsrtp import Policy

import gateway
from gateway.nativerelay import NativeRelay, load_error

from .audio import has_tone, tone
from .relayharness import (
    BROWSER_HZ,
    DTMF_PT,
    PHONE_HZ,
    receive_all,
    relay_call,
    rtp,
    udp_socket,
    wait_for,
)

WARM_UP_48K, WARM_UP_8K = 4800, 800  # the codecs' first 100 ms


@pytest.fixture(autouse=True)
def native_relay_loads() -> None:
    assert load_error() is None, load_error()


@pytest.mark.parametrize(
    "law, profile",
    [
        (0, Policy.SRTP_PROFILE_AES128_CM_SHA1_80),
        (8, Policy.SRTP_PROFILE_AEAD_AES_128_GCM),
        (0, Policy.SRTP_PROFILE_AEAD_AES_256_GCM),
    ],
    ids=["pcmu-aes-cm", "pcma-gcm128", "pcmu-gcm256"],
)
def test_each_end_hears_the_other(law: int, profile: int) -> None:
    added = time.monotonic()
    with relay_call(law, profile) as call:
        heard_browser, heard_phone = call.talk(1.0)
        plain = call.unprotect(heard_browser)
        assert has_tone(call.browser_audio(plain)[WARM_UP_48K:], 48000, PHONE_HZ)
        assert has_tone(call.phone_audio(heard_phone)[WARM_UP_8K:], 8000, BROWSER_HZ)
        assert {p[1] & 0x7F for p in heard_phone} == {law}
        assert {struct.unpack("!I", p[8:12])[0] for p in heard_phone} == {call.relay_to_phone_ssrc}
        phone_seqs = [struct.unpack("!H", p[2:4])[0] for p in heard_phone]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(phone_seqs, phone_seqs[1:]))
        browser_ts = [struct.unpack("!I", p[4:8])[0] for p in plain]
        assert all((b - a) & 0xFFFFFFFF == 960 for a, b in zip(browser_ts, browser_ts[1:]))

        def counted() -> bool:
            heard_browser.extend(call.hear_browser())
            heard_phone.extend(receive_all(call.phone))
            stats = call.relay.stats(call.handle)
            return (stats["browser_tx_packets"], stats["sip_tx_packets"]) == (len(heard_browser), len(heard_phone))

        assert wait_for(counted)
        stats = call.relay.stats(call.handle)
        assert stats["browser_rx_packets"] == call.sent_to_browser_side
        assert stats["sip_rx_packets"] == call.sent_to_sip_side
        assert stats["srtp_auth_failures"] == stats["decode_errors"] == stats["send_errors"] == 0
        for last in ("last_browser_media", "last_sip_media"):  # on time.monotonic()'s clock
            assert added <= stats[last] <= time.monotonic()


def test_a_lost_packet_is_concealed_and_the_tone_goes_on() -> None:
    with relay_call() as call:
        packets = [call.browser_packet(p) for p in call.opus_packets(tone(BROWSER_HZ, 1.0, 48000))]
        lost = {10, 20, 21}
        for i, packet in enumerate(packets):
            if i not in lost:
                call.send_from_browser(packet)
        heard: list[bytes] = []
        assert wait_for(lambda: (heard.extend(receive_all(call.phone)), len(heard) >= len(packets) - 2)[1])
        stats = call.relay.stats(call.handle)
        assert stats["fec_recovered"] + stats["concealed"] == len(lost)
        assert has_tone(call.phone_audio(heard)[WARM_UP_8K:], 8000, BROWSER_HZ)


def test_stun_dtls_and_telephone_events_come_back_to_python() -> None:
    with relay_call() as call:
        stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
        dtls = b"\x16\xfe\xfd" + os.urandom(30)
        event = rtp(DTMF_PT, 7, 8000, call.phone_ssrc, bytes([5, 0x8A, 0, 160]))
        call.send_from_browser(stun)
        call.send_from_browser(dtls)
        call.send_from_phone(event)
        select.select([call.relay.fileno()], [], [], 10)
        foreign = []
        assert wait_for(lambda: (foreign.extend(call.relay.drain_foreign()), len(foreign) == 3)[1])
        by_kind = {(item.kind, item.data): item for item in foreign}
        assert by_kind[("browser", stun)].source == call.browser.getsockname()
        assert by_kind[("browser", dtls)].handle == call.handle
        assert by_kind[("telephone-event", event)].source == call.phone.getsockname()
        assert call.relay.stats(call.handle)["telephone_events"] == 1
        assert call.relay.drain_foreign() == []


def test_the_relay_follows_the_browsers_media_to_another_address_only_once_srtp_authenticates() -> None:
    """The browser's media moves (another of its addresses, a NAT's new mapping): the relay sends where it now
    comes from, but only after a packet from there passed SRTP authentication, so that neither garbage nor a
    replayed packet from an attacker's address can take the stream, and a late packet still coming the old
    way does not take it back."""
    with relay_call() as call, udp_socket() as moved, udp_socket() as attacker:
        relay_side = call.relay_browser.getsockname()
        packets = [call.browser_packet(p) for p in call.opus_packets(tone(BROWSER_HZ, 1.0, 48000))]
        call.send_from_browser(packets[0])
        tampered = bytearray(packets[1])
        tampered[-1] ^= 1
        attacker.sendto(bytes(tampered), relay_side)
        attacker.sendto(packets[0], relay_side)  # replayed
        assert wait_for(lambda: call.relay.stats(call.handle)["srtp_auth_failures"] == 1)
        assert wait_for(lambda: call.relay.stats(call.handle)["srtp_replayed"] == 1)
        for packet in packets[2:]:
            moved.sendto(packet, relay_side)
        assert wait_for(lambda: call.relay.stats(call.handle)["browser_moved"] == 1)
        call.send_from_browser(packets[1])  # late
        assert wait_for(lambda: call.relay.stats(call.handle)["browser_rx_packets"] == len(packets) + 2)
        heard: list[bytes] = []
        for _ in range(25):
            call.send_from_phone(call.phone_packet(tone(PHONE_HZ, 0.02, 8000)))
            select.select([moved], [], [], 0.02)
            heard += receive_all(moved)
        assert wait_for(lambda: (heard.extend(receive_all(moved)), len(heard) >= 20)[1])
        assert receive_all(attacker) == [] and call.hear_browser() == []
        assert call.relay.stats(call.handle)["browser_moved"] == 1
        moves = [item for item in call.relay.drain_foreign() if item.kind == "moved"]
        assert [(item.handle, item.data, item.source) for item in moves] == [(call.handle, b"", moved.getsockname())]
        assert has_tone(call.phone_audio(receive_all(call.phone))[WARM_UP_8K:], 8000, BROWSER_HZ)


def test_the_relay_follows_the_browsers_media_to_another_of_the_calls_sockets() -> None:
    """The browser's ICE agent switches to a pair on another of our local addresses: the relay reads every
    socket of the call, hands what is not SRTP back with the socket it came on, and sends from the socket
    (and to the address) of the newest authenticated SRTP, never on a forged packet or a late one."""
    with relay_call() as call:
        other = call.relay_browser_other.getsockname()
        packets = [call.browser_packet(p) for p in call.opus_packets(tone(BROWSER_HZ, 1.0, 48000))]
        stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
        call.send_from_browser(packets[0])
        call.send_from_browser(stun, to_other=True)
        tampered = bytearray(packets[2])
        tampered[-1] ^= 1
        call.send_from_browser(bytes(tampered), to_other=True)
        assert wait_for(lambda: call.relay.stats(call.handle)["srtp_auth_failures"] == 1)
        assert call.relay.stats(call.handle)["browser_moved"] == 0
        for packet in packets[2:]:
            call.send_from_browser(packet, to_other=True)
        call.send_from_browser(packets[1])  # late, on the first socket
        assert wait_for(lambda: call.relay.stats(call.handle)["browser_rx_packets"] == len(packets) + 2)
        heard: list[tuple[bytes, tuple[str, int]]] = []
        for _ in range(25):
            call.send_from_phone(call.phone_packet(tone(PHONE_HZ, 0.02, 8000)))
            select.select([call.browser], [], [], 0.02)
            heard += _receive_from(call.browser)
        assert wait_for(lambda: (heard.extend(_receive_from(call.browser)), len(heard) >= 20)[1])
        assert {sender for _, sender in heard} == {other}
        foreign = call.relay.drain_foreign()
        assert [(item.kind, item.data, item.socket) for item in foreign] == [("browser", stun, 1), ("moved", b"", 1)]
        assert foreign[1].source == call.browser.getsockname()
        assert call.relay.stats(call.handle)["browser_moved"] == 1
        assert has_tone(call.phone_audio(receive_all(call.phone))[WARM_UP_8K:], 8000, BROWSER_HZ)


def _receive_from(sock: socket.socket) -> list[tuple[bytes, tuple[str, int]]]:
    """Every datagram waiting on a non-blocking socket, with its sender."""
    out = []
    while True:
        try:
            out.append(sock.recvfrom(4096))
        except BlockingIOError:
            return out


def test_hold_stops_what_goes_to_sip_and_resume_restarts_it() -> None:
    with relay_call() as call:
        call.relay.update_sip(call.handle, call.phone.getsockname(), 0, send=False, receive=True)
        opus = call.opus_packets(tone(BROWSER_HZ, 0.5, 48000))
        held = [call.browser_packet(p) for p in opus]
        for packet in held:
            call.send_from_browser(packet)
        assert wait_for(lambda: call.relay.stats(call.handle)["browser_rx_packets"] == len(held))
        assert wait_for(lambda: call.relay.stats(call.handle)["held"] >= len(held) - 3)
        assert receive_all(call.phone) == []
        assert call.relay.stats(call.handle)["sip_tx_packets"] == 0

        call.relay.update_sip(call.handle, call.phone.getsockname(), 0, send=True, receive=True)
        heard_browser, heard_phone = call.talk(1.0)
        assert has_tone(call.phone_audio(heard_phone)[WARM_UP_8K:], 8000, BROWSER_HZ)


def test_remove_and_close_are_safe_twice_and_leave_python_sockets_open() -> None:
    with relay_call() as call:
        assert call.relay.remove_call(call.handle) is True
        assert call.relay.remove_call(call.handle) is False
        with pytest.raises(KeyError):
            call.relay.stats(call.handle)
        call.send_from_browser(b"\x00\x01" + bytes(18))
        assert select.select([call.relay_browser], [], [], 10)[0]  # nobody reads it any more
        assert call.relay_browser.recv(100).startswith(b"\x00\x01")
        call.relay.close()
        call.relay.close()
        assert call.relay.remove_call(call.handle) is False
        os.fstat(call.relay_sip.fileno())


def test_a_relay_that_was_never_started_closes() -> None:
    relay = NativeRelay()
    relay.close()
    assert relay.remove_call(1) is False


def test_load_error_names_a_missing_library() -> None:
    missing = "/nonexistent/libopus.so.0"
    error = load_error(opus_path=missing)
    assert error is not None and missing in error
    error = load_error(srtp_path="/nonexistent/libsrtp2.so.1")
    assert error is not None and "libsrtp2" in error


def test_load_error_says_when_the_extension_was_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gateway._mediarelay", None)  # what a failed build leaves
    monkeypatch.delattr(gateway, "_mediarelay", raising=False)
    load_error.cache_clear()
    try:
        error = load_error()
        assert error is not None and "not built" in error
        with pytest.raises(RuntimeError, match="not built"):
            NativeRelay().start()
    finally:
        load_error.cache_clear()
