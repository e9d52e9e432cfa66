"""The one PCM format both legs meet in: 48 kHz, mono, 16-bit, 20 ms frames.

48 kHz is Opus's native rate, so the WebRTC side needs no resampling; the
conference bridge of pjsua2 resamples to and from G.711's 8 kHz in C.
"""

RATE = 48000
PTIME_MS = 20
FRAME_SAMPLES = RATE * PTIME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2
SILENCE = bytes(FRAME_BYTES)
