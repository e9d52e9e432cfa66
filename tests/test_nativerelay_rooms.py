"""Conference rooms in the native relay: each participant hears the others' tones and never its own.

Participants are calls with one leg (gateway/_mixer.c does the mixing): two
browsers (SRTP/Opus) and a SIP phone (G.711) on real sockets, each playing its
own tone; what each hears is taken apart by FFT.
"""

from __future__ import annotations

import select
from collections.abc import Iterator

import numpy as np
import pytest
from pylibsrtp import Policy

from gateway.nativerelay import NativeRelay, load_error

from .audio import tone, tone_shares
from .relayharness import FRAME_8K, Call, receive_all, wait_for

TONES = {"alice": 500.0, "bob": 850.0, "phone": 1300.0}
WARM_UP_48K, WARM_UP_8K = 9600, 1600  # the codecs' and the room's first 200 ms


@pytest.fixture
def relay() -> Iterator[NativeRelay]:
    assert load_error() is None, load_error()
    relay = NativeRelay()
    relay.start()
    yield relay
    relay.close()


def _room(relay: NativeRelay, room: int = 1) -> dict[str, Call]:
    calls = {name: Call(relay, 0, Policy.SRTP_PROFILE_AES128_CM_SHA1_80) for name in TONES}
    for name, call in calls.items():
        browser, sip = (None, call.sip_media()) if name == "phone" else (call.browser_media(), None)
        call.handle = relay.add_call(browser, sip, room=room)
    return calls


def _talk(calls: dict[str, Call], seconds: float, quiet: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Each participant not ``quiet`` plays its tone in 20 ms packets, paced by what comes back;
    returns what each heard (48 kHz for browsers, 8 kHz for the phone)."""
    frames = int(seconds * 50)
    opus = {
        name: list(call.opus_packets(tone(TONES[name], seconds, 48000, amplitude=0.3)))
        for name, call in calls.items() if name != "phone" and name not in quiet
    }
    phone_tone = tone(TONES["phone"], seconds, 8000, amplitude=0.3)
    heard: dict[str, list[bytes]] = {name: [] for name in calls}

    def listen() -> None:
        for name, call in calls.items():
            heard[name] += receive_all(call.phone) if name == "phone" else call.hear_browser()

    for i in range(frames):
        for name, call in calls.items():
            if name in quiet:
                continue
            if name == "phone":
                call.send_from_phone(call.phone_packet(phone_tone[i * FRAME_8K : (i + 1) * FRAME_8K]))
            elif i < len(opus[name]):
                call.send_from_browser(call.browser_packet(opus[name][i]))
        select.select([call.phone if name == "phone" else call.browser for name, call in calls.items()], [], [], 0.02)
        listen()
    wait_for(lambda: (listen(), all(len(packets) >= frames - 10 for packets in heard.values()))[1], timeout=3)
    return {
        name: call.phone_audio(heard[name])[WARM_UP_8K:] if name == "phone"
        else call.browser_audio(call.unprotect(heard[name]))[WARM_UP_48K:]
        for name, call in calls.items()
    }


def _shares(name: str, audio: np.ndarray) -> dict[str, float]:
    rate = 8000 if name == "phone" else 48000
    return dict(zip(TONES, tone_shares(audio, rate, list(TONES.values()))))


def test_each_participant_hears_the_others_and_not_itself(relay: NativeRelay) -> None:
    calls = _room(relay)
    try:
        heard = _talk(calls, 1.5)
        for name, audio in heard.items():
            shares = _shares(name, audio)
            assert shares[name] < 0.01, (name, shares)
            assert all(shares[other] > 0.2 for other in TONES if other != name), (name, shares)
        stats = relay.stats(calls["alice"].handle)
        assert stats["sip_tx_packets"] == stats["sip_rx_packets"] == 0
        assert stats["browser_tx_packets"] > 50 and stats["decode_errors"] == stats["send_errors"] == 0
    finally:
        for call in calls.values():
            call.close()


def test_a_participant_who_leaves_is_no_longer_heard_and_the_others_go_on(relay: NativeRelay) -> None:
    calls = _room(relay)
    try:
        assert relay.remove_call(calls["bob"].handle)
        rest = {name: call for name, call in calls.items() if name != "bob"}
        heard = _talk(rest, 1.0)
        assert _shares("alice", heard["alice"])["phone"] > 0.9
        assert _shares("phone", heard["phone"])["alice"] > 0.9
    finally:
        for call in calls.values():
            call.close()


def test_two_rooms_of_one_relay_do_not_hear_each_other(relay: NativeRelay) -> None:
    first, other = _room(relay, 1), _room(relay, 2)
    second = {f"{name}-2": call for name, call in other.items() if name != "phone"}
    try:
        heard = _talk({**first, **second}, 1.0, quiet=frozenset(second))
        assert _shares("alice", heard["alice"])["bob"] > 0.2
        assert all(np.abs(heard[name]).max(initial=0) < 100 for name in second), "room 2 heard room 1"
    finally:
        for call in (*first.values(), *other.values()):
            call.close()


def test_a_participant_needs_exactly_one_leg_and_a_call_outside_a_room_both(relay: NativeRelay) -> None:
    call = Call(relay, 0, Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    try:
        with pytest.raises(ValueError):
            relay.add_call(call.browser_media(), call.sip_media(), room=1)
        with pytest.raises(ValueError):
            relay.add_call(None, None, room=1)
        with pytest.raises(ValueError):
            relay.add_call(call.browser_media(), None)
    finally:
        call.close()
