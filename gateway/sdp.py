"""Pointing the audio of an SDP that pjsua2 wrote at another port.

When a call's media is carried natively, pjsua2 still negotiates it (codecs,
direction, hold), but the port in its SDP must be the native path's socket,
on the address pjsua2's SDP names (:mod:`gateway.sipaccount`: its own
streams have no socket).  pjsua2's ``a=rtcp`` line goes, so RTCP follows the
RFC 3605 default (the next port, where the native path has its RTCP socket:
:mod:`gateway.rtpsockets`) instead of pointing at pjsua2's placeholder.
"""

from __future__ import annotations

import re

_AUDIO = re.compile(r"^m=audio [1-9][0-9]*( )", re.MULTILINE)
_RTCP = re.compile(r"^a=rtcp:.*\r?\n", re.MULTILINE)


def point_audio_at(sdp: str, port: int) -> str:
    """``sdp`` with its audio stream (unless disabled, port 0) on ``port`` and no ``a=rtcp`` line."""
    return _RTCP.sub("", _AUDIO.sub(f"m=audio {port}\\1", sdp))
