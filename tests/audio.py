"""Audio helpers for tests: make tones, read/write WAV, and check what a signal contains.

Media tests assert audio by content, never by "a frame arrived": a bridge that
forwards silence, the wrong channel, garbled codec data or its own echo still
delivers frames. Playing a known tone in and finding that same frequency, clearly
above everything else, in what the far end recorded proves the audio went through.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

FULL_SCALE = 32768.0
LOW_CUT_HZ = 20.0  # DC and rumble below this are not part of any test tone
PULSE_ON_S, PULSE_OFF_S, PULSE_RAMP_S = 0.200, 0.050, 0.005


def tone(
    freq_hz: float, seconds: float, rate: int, amplitude: float = 0.5, pulsed: bool = False
) -> np.ndarray:
    """A sine tone as int16 samples; `amplitude` is a fraction of full scale.

    `pulsed` cuts it into 200 ms beeps with 50 ms gaps (with short ramps, so the
    gating adds little energy away from `freq_hz`): a steady tone is taken for
    noise and faded out by Chromium's audio processing, a pulsed one is not.
    """
    count = int(round(seconds * rate))
    signal = amplitude * np.sin(2 * np.pi * freq_hz * np.arange(count) / rate)
    if pulsed:
        on, off, ramp = (int(round(s * rate)) for s in (PULSE_ON_S, PULSE_OFF_S, PULSE_RAMP_S))
        edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
        period = np.concatenate([edge, np.ones(on - 2 * ramp), edge[::-1], np.zeros(off)])
        signal *= np.resize(period, count)
    return np.round(signal * (FULL_SCALE - 1)).astype(np.int16)


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Write mono samples as a 16-bit PCM WAV file."""
    data = np.asarray(samples)
    if data.ndim != 1:
        raise ValueError("write_wav takes mono samples (a 1-D array)")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data.astype("<i2").tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV file as (int16 mono samples, rate); of stereo, the first channel."""
    with wave.open(str(path), "rb") as src:
        if src.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * src.getsampwidth()}-bit samples, expected 16-bit PCM")
        channels, rate = src.getnchannels(), src.getframerate()
        frames = src.readframes(src.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels)[:, 0]
    return samples.astype(np.int16), rate


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level relative to full scale, in dB (-inf for digital silence)."""
    if len(samples) == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean((np.asarray(samples, dtype=np.float64) / FULL_SCALE) ** 2)))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def _power_spectrum(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed power spectrum with DC and everything below LOW_CUT_HZ zeroed."""
    signal = np.asarray(samples, dtype=np.float64)
    signal = signal - signal.mean()
    power = np.abs(np.fft.rfft(signal * np.hanning(len(signal)))) ** 2
    freqs = np.fft.rfftfreq(len(signal), 1.0 / rate)
    power[: max(2, int(np.searchsorted(freqs, LOW_CUT_HZ)))] = 0.0  # Hann leaks DC into bin 1
    return freqs, power


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """Frequency in Hz of the strongest spectral peak (0.0 for silence).

    The peak is refined by parabolic interpolation, so it is accurate well below
    the FFT's bin width.
    """
    if len(samples) < 4:
        return 0.0
    freqs, power = _power_spectrum(samples, rate)
    peak = int(np.argmax(power))
    if power[peak] == 0.0:
        return 0.0
    if 0 < peak < len(power) - 1:
        left, centre, right = np.sqrt(power[peak - 1 : peak + 2])
        curvature = left - 2 * centre + right
        shift = 0.5 * (left - right) / curvature if curvature else 0.0
        return float(freqs[peak] + shift * (freqs[1] - freqs[0]))
    return float(freqs[peak])


def has_tone(
    samples: np.ndarray,
    rate: int,
    freq: float,
    tolerance_hz: float = 15,
    min_snr_db: float = 10,
) -> bool:
    """Whether `freq` is the dominant frequency and stands `min_snr_db` above the rest.

    The tone's energy is summed within `tolerance_hz` of `freq` (never narrower than
    the window's main lobe) and compared with all other energy above LOW_CUT_HZ, so
    noise, silence, a different tone or a tone buried in noise all give False.
    """
    if len(samples) < 4 or rms_dbfs(samples) == float("-inf"):
        return False
    freqs, _ = _power_spectrum(samples, rate)
    half_band = max(tolerance_hz, 2 * (freqs[1] - freqs[0]))
    if abs(dominant_frequency(samples, rate) - freq) > half_band:
        return False
    return tone_snr_db(samples, rate, freq, tolerance_hz) >= min_snr_db


def tone_snr_db(samples: np.ndarray, rate: int, freq: float, tolerance_hz: float = 15) -> float:
    """Energy within `tolerance_hz` of `freq` over all other energy, in dB (what has_tone checks)."""
    freqs, power = _power_spectrum(samples, rate)
    in_band = np.abs(freqs - freq) <= max(tolerance_hz, 2 * (freqs[1] - freqs[0]))
    tone_power, rest_power = power[in_band].sum(), power[~in_band].sum()
    if rest_power == 0.0:
        return float("inf") if tone_power > 0.0 else float("-inf")
    if tone_power == 0.0:
        return float("-inf")
    return float(10 * np.log10(tone_power / rest_power))


def tone_shares(samples: np.ndarray, rate: int, freqs: list[float], tolerance_hz: float = 15) -> list[float]:
    """Each of ``freqs``' share (0..1) of the energy above LOW_CUT_HZ: which tones a mix of several holds."""
    spectrum, power = _power_spectrum(samples, rate)
    total = power.sum()
    if len(samples) < 4 or total == 0.0:
        return [0.0 for _ in freqs]
    half_band = max(tolerance_hz, 2 * (spectrum[1] - spectrum[0]))
    return [float(power[np.abs(spectrum - freq) <= half_band].sum() / total) for freq in freqs]
