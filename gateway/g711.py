"""G.711 (PCMU, PCMA) for the few places Python itself speaks RTP: the built-in applications.

Calls' audio is transcoded in C (the native relay) or by pjsua2; the
built-ins served on the native path (601's tone, voicemail's greeting and
recording) need it in Python.  Both directions are lookup tables made once
per codec from PyAV's own encoder, so the tables agree with FFmpeg's G.711
and a frame costs one numpy index.
"""

from __future__ import annotations

import av
import numpy as np

PCMU, PCMA = 0, 8
"""Their static RTP payload types."""
RATE = 8000

_ENCODE: dict[int, np.ndarray] = {}
_DECODE: dict[int, np.ndarray] = {}


def encode(pcm: bytes, payload_type: int) -> bytes:
    """16-bit little-endian samples (8 kHz) as G.711 bytes, one per sample."""
    table = _ENCODE.get(payload_type)
    if table is None:
        table = _ENCODE[payload_type] = _encoded(np.arange(-32768, 32768, dtype=np.int16), payload_type)
    return table[np.frombuffer(pcm, dtype="<i2").astype(np.int32) + 32768].tobytes()


def decode(payload: bytes, payload_type: int) -> bytes:
    """G.711 bytes as 16-bit little-endian samples."""
    table = _DECODE.get(payload_type)
    if table is None:
        table = _DECODE[payload_type] = _decoded(bytes(range(256)), payload_type)
    return table[np.frombuffer(payload, dtype=np.uint8)].tobytes()


def _codec(payload_type: int) -> str:
    if payload_type not in (PCMU, PCMA):
        raise ValueError(f"payload type {payload_type} is not G.711")
    return "pcm_mulaw" if payload_type == PCMU else "pcm_alaw"


def _encoded(samples: np.ndarray, payload_type: int) -> np.ndarray:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    codec = av.CodecContext.create(_codec(payload_type), "w")
    codec.sample_rate, codec.format, codec.layout = RATE, "s16", "mono"
    data = b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])
    return np.frombuffer(data, dtype=np.uint8)


def _decoded(codes: bytes, payload_type: int) -> np.ndarray:
    codec = av.CodecContext.create(_codec(payload_type), "r")
    codec.sample_rate, codec.layout = RATE, "mono"
    frames = codec.decode(av.Packet(codes))
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype("<i2")
