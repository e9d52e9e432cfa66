"""Choosing the media path, and pointing pjsua2's SDP at the native sockets: no SIP stack needed."""

from __future__ import annotations

import logging

import pytest

from gateway import nativemedia
from gateway.config import load
from gateway.rtpsockets import bind_pair
from gateway.sdp import point_audio_at

PJSUA_SDP = (
    "v=0\r\no=- 3 2 IN IP4 192.0.2.1\r\ns=pjmedia\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8 101\r\na=rtcp:4001 IN IP4 192.0.2.1\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"
)


def test_the_audio_port_moves_and_pjsuas_rtcp_line_goes() -> None:
    assert point_audio_at(PJSUA_SDP, 5004) == PJSUA_SDP.replace("m=audio 4000", "m=audio 5004").replace(
        "a=rtcp:4001 IN IP4 192.0.2.1\r\n", ""
    )


def test_a_disabled_stream_stays_disabled() -> None:
    disabled = PJSUA_SDP.replace("m=audio 4000", "m=audio 0")
    assert "m=audio 0 " in point_audio_at(disabled, 5004)


@pytest.mark.parametrize(
    ("media", "problem", "servers", "expected"),
    [
        ("python", None, [], False),
        ("auto", None, [], True),
        ("native", None, [], True),
        ("auto", "the native media relay was not built", [], False),
        ("auto", None, [{"urls": ["turn:turn.example.org:3478"]}], False),
        ("auto", None, [{"urls": "stun:stun.example.org"}], True),
    ],
)
def test_which_path_carries_the_media(
    monkeypatch: pytest.MonkeyPatch, media: str, problem: str | None, servers: list, expected: bool
) -> None:
    monkeypatch.setattr(nativemedia, "unavailable", lambda: problem)
    config = load(None)
    config.engines.media = media
    config.webrtc.ice_servers = servers
    assert nativemedia.wanted(config) is expected


def test_native_refuses_to_start_without_the_relay_and_auto_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(nativemedia, "unavailable", lambda: "libopus.so.0: cannot open shared object file")
    config = load(None)
    config.engines.media = "native"
    with pytest.raises(OSError, match="libopus"):
        nativemedia.wanted(config)
    config.engines.media = "auto"
    with caplog.at_level(logging.WARNING):
        assert not nativemedia.wanted(config)
    assert "libopus" in caplog.text


def test_this_machine_can_carry_calls_natively() -> None:
    """CI builds the extension and has PyAV's libopus and pylibsrtp: the native path must be usable here."""
    assert nativemedia.unavailable() is None


def test_rtp_and_rtcp_sockets_are_an_even_port_and_the_next() -> None:
    pairs = [bind_pair("127.0.0.1") for _ in range(8)]
    try:
        for rtp, rtcp in pairs:
            port = rtp.getsockname()[1]
            assert port % 2 == 0 and rtcp.getsockname() == ("127.0.0.1", port + 1)
    finally:
        for sock in (sock for pair in pairs for sock in pair):
            sock.close()
