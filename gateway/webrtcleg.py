"""The WebRTC leg: one aiortc peer connection carrying one audio track each way.

The browser always offers; this side answers, non-trickle (aiortc gathers
all candidates before the answer is returned).  ICE servers come from the
configuration only: an explicit empty list stops aiortc from falling back
to a public STUN server on a network that may have no internet.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamTrack

log = logging.getLogger(__name__)


def ice_servers(config: list[dict[str, Any]]) -> list[RTCIceServer]:
    return [
        RTCIceServer(urls=server["urls"], username=server.get("username"), credential=server.get("credential"))
        for server in config
    ]


class WebRtcLeg:
    """Answers one browser offer and reports when the connection fails."""

    def __init__(self, servers: list[dict[str, Any]], jitter_ms: int, on_failed: Callable[[], None]) -> None:
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(servers)))
        self._jitter_ms = jitter_ms
        self._on_failed = on_failed
        self._pc.on("connectionstatechange", self._state_changed)

    async def answer(
        self, offer: str, outgoing: MediaStreamTrack, on_track: Callable[[MediaStreamTrack], None]
    ) -> str:
        """Accept ``offer``, send ``outgoing``, hand the browser's track to ``on_track``."""
        self._pc.on("track", on_track)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        audio = [t for t in self._pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise ValueError("the offer has no audio")
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
        audio[0].setCodecPreferences(opus)
        _shorten_jitter_buffer(audio[0].receiver, self._jitter_ms)
        self._pc.addTrack(outgoing)
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        return self._pc.localDescription.sdp

    async def _state_changed(self) -> None:
        state = self._pc.connectionState
        log.debug("WebRTC connection %s", state)
        if state == "failed":
            self._on_failed()

    async def close(self) -> None:
        await self._pc.close()


def _shorten_jitter_buffer(receiver: RTCRtpReceiver, jitter_ms: int) -> None:
    """Hold ``jitter_ms`` of audio instead of aiortc's fixed four frames.

    aiortc releases an audio frame only after ``prefetch`` later frames have
    arrived (80 ms); on a LAN that is most of the gateway's added latency.
    aiortc has no setting for it, so its private buffer is replaced; if a
    later aiortc renames it, the default stays and a warning says so.
    """
    name = "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, name):
        log.warning("aiortc changed: cannot shorten its %d ms receive buffer", 80)
        return
    setattr(receiver, name, JitterBuffer(capacity=16, prefetch=max(1, jitter_ms // 20)))
