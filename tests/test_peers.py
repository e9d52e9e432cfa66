"""The test harness itself, against real sipp and baresip (no gateway involved).

These fail, never skip, when sipp or baresip are missing: a harness that silently
skips would let every integration test built on it pass without testing anything.
"""

from __future__ import annotations

import shutil
import socket
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .audio import dominant_frequency, has_tone, read_wav, rms_dbfs, tone, write_wav
from .peers import sipp
from .peers.baresip import Baresip
from .peers.net import free_port, local_ip, udp_port_bound, wait_for, wait_for_async

pytestmark = pytest.mark.timeout(30)

RATE = 8000
TONE_HZ = 1000


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    write_wav(path, tone(TONE_HZ, 20, RATE), RATE)
    return path


@pytest.fixture
def phone(tmp_path: Path, tone_wav: Path) -> Iterator[Baresip]:
    with Baresip(tmp_path, tone_wav) as running:
        yield running


def assert_heard_tone(phone: Baresip) -> None:
    samples, rate = read_wav(phone.recording())
    assert rate == RATE
    assert len(samples) > rate // 2, "less than half a second recorded"
    assert rms_dbfs(samples) > -30, "recording is (nearly) silent"
    assert has_tone(samples, rate, TONE_HZ), f"dominant frequency {dominant_frequency(samples, rate):.0f} Hz"


# --- audio helpers ----------------------------------------------------------------


def noise(seconds: float, level: float) -> np.ndarray:
    """White noise with a standard deviation of `level` (fraction of full scale), as floats."""
    return np.random.default_rng(1).normal(0, level * 32767, int(seconds * RATE))


def mix(*signals: np.ndarray) -> np.ndarray:
    """Sum signals without int16 wrap-around, clipping like a real converter would."""
    return np.clip(np.sum([signal.astype(np.float64) for signal in signals], axis=0), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("pulsed", [False, True])
def test_has_tone_finds_a_tone_even_with_some_noise(pulsed: bool) -> None:
    clean = tone(TONE_HZ, 2, RATE, pulsed=pulsed)
    noisy = mix(clean, noise(2, 0.02))
    assert has_tone(clean, RATE, TONE_HZ)
    assert has_tone(noisy, RATE, TONE_HZ)
    assert abs(dominant_frequency(clean, RATE) - TONE_HZ) < 1


@pytest.mark.parametrize(
    "signal",
    [
        pytest.param(mix(noise(2, 0.3)), id="white noise"),
        pytest.param(tone(1500, 2, RATE), id="wrong frequency"),
        pytest.param(np.zeros(2 * RATE, dtype=np.int16), id="silence"),
        pytest.param(mix(tone(TONE_HZ, 2, RATE, amplitude=0.05), noise(2, 0.3)), id="buried in noise"),
        pytest.param(
            mix(tone(TONE_HZ, 2, RATE, amplitude=0.3), tone(2500, 2, RATE, amplitude=0.3)),
            id="not clearly above another tone",
        ),
    ],
)
def test_has_tone_rejects_what_is_not_the_tone(signal: np.ndarray) -> None:
    assert not has_tone(signal, RATE, TONE_HZ)


def test_wav_round_trip_and_stereo_read(tmp_path: Path) -> None:
    samples = tone(440, 0.5, RATE)
    write_wav(tmp_path / "mono.wav", samples, RATE)
    assert np.array_equal(read_wav(tmp_path / "mono.wav")[0], samples)

    with wave.open(str(tmp_path / "stereo.wav"), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(np.column_stack([samples, np.zeros_like(samples)]).astype("<i2").tobytes())
    left, rate = read_wav(tmp_path / "stereo.wav")
    assert rate == 48000 and np.array_equal(left, samples)


def test_rms_dbfs() -> None:
    assert rms_dbfs(tone(TONE_HZ, 1, RATE, amplitude=1.0)) == pytest.approx(-3.01, abs=0.05)
    assert rms_dbfs(np.zeros(100, dtype=np.int16)) == float("-inf")


# --- network helpers ----------------------------------------------------------------


def test_free_ports_are_free_and_local_ip_is_this_machine() -> None:
    port = free_port(udp=True, tcp=True, block=2)
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        for offset in (0, 1):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.bind(("127.0.0.1", port + offset))
    address = local_ip()
    assert not address.startswith("127.")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))  # fails unless the address is one of this machine's
        assert udp_port_bound(sock.getsockname()[1])


def test_wait_for() -> None:
    assert wait_for(lambda: 42, timeout=0.1) == 42
    with pytest.raises(TimeoutError):
        wait_for(lambda: None, timeout=0.1)


async def test_wait_for_async() -> None:
    async def ready() -> str:
        return "yes"

    assert await wait_for_async(ready, timeout=0.1) == "yes"
    with pytest.raises(TimeoutError):
        await wait_for_async(lambda: False, timeout=0.1)


# --- real peers ---------------------------------------------------------------------


def test_required_programs_are_installed() -> None:
    missing = [program for program in (sipp.SIPP, "baresip") if shutil.which(program) is None]
    assert not missing, f"missing {missing}: apt-get install sip-tester baresip"


def test_baresip_wants_8khz_mono_source(tmp_path: Path) -> None:
    write_wav(tmp_path / "wideband.wav", tone(TONE_HZ, 1, 16000), 16000)
    with pytest.raises(ValueError, match="8000 Hz mono"):
        Baresip(tmp_path, tmp_path / "wideband.wav")


def test_baresip_dials_echoing_sipp_and_hears_its_own_tone(tmp_path: Path, phone: Baresip) -> None:
    with sipp.echo_uas(tmp_path) as echo:
        phone.dial(echo.uri("alice"))
        assert phone.wait_event("CALL_ESTABLISHED")["peeruri"] == echo.uri("alice")
        phone.wait_event("CALL_RTPESTAB")  # the first echoed RTP packet came back
        time.sleep(1.5)  # record some echoed audio
        phone.hangup()
        phone.wait_event("CALL_CLOSED")
    assert_heard_tone(phone)


def test_sipp_uac_gets_200_from_auto_answering_baresip(tmp_path: Path, phone: Baresip) -> None:
    result = sipp.uac(tmp_path, phone.uri, hold_ms=1500).run()
    assert result == sipp.SippResult(returncode=0, final_status=200)
    phone.wait_event("CALL_ESTABLISHED")
    phone.wait_event("CALL_CLOSED")  # sipp's BYE
    assert_heard_tone(phone)  # sipp's UAC echoes the RTP it gets


@pytest.mark.parametrize(
    ("status", "reason"),
    [(404, "Not Found"), (480, "Temporarily Unavailable"), (486, "Busy Here"), (603, "Decline"), (418, "Unlisted")],
)
def test_sipp_uac_reports_the_final_status(tmp_path: Path, status: int, reason: str) -> None:
    with sipp.reject_uas(tmp_path, status, reason) as phone:
        result = sipp.uac(tmp_path, phone.uri("alice")).run()
    assert result.final_status == status
    assert result.returncode == (1 if status == 418 else 0)  # 418 is not in uac_final.xml


def test_sipp_uac_reports_no_answer_as_none(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # holds the port, never answers
        silent.bind(("127.0.0.1", 0))
        nobody = f"sip:alice@127.0.0.1:{silent.getsockname()[1]}"
        result = sipp.uac(tmp_path, nobody, answer_timeout_s=1).run()
    assert result.final_status is None and result.returncode != 0


def test_baresip_reports_the_rejection_reason(tmp_path: Path, phone: Baresip) -> None:
    with sipp.reject_uas(tmp_path, 603, "Decline") as rejecting:
        phone.dial(rejecting.uri("alice"))
        assert phone.wait_event("CALL_CLOSED")["param"] == "603 Decline"


def test_malformed_requests_reach_baresip_and_leave_it_working(tmp_path: Path, phone: Baresip) -> None:
    # baresip (libre) is lenient: it answers this malformed OPTIONS with 200; a strict
    # server answers 400, which malformed.xml expects.
    assert sipp.malformed_request(tmp_path, phone.uri).run().final_status in (200, 400)
    assert sipp.send_udp(phone.uri, sipp.GARBAGE) is None
    assert sipp.send_request(phone.uri, omit={"Via"}) is None  # nowhere to answer
    assert sipp.send_request(phone.uri) == 200
    assert sipp.uac(tmp_path, phone.uri, hold_ms=100).run().final_status == 200
