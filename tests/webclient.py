"""A browser stand-in for tests: the page's protocol over a WebSocket, audio through aiortc.

It sends a generated tone and records what it hears, so tests can assert
audio by its content in both directions.  Like the page it takes part in
direct calls to other web users (docs/protocol.md): it answers a direct
``incoming`` call's offer, and applies a direct call's ``sdp`` whenever it comes.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .audio import dominant_frequency, has_tone

RATE = 48000
FRAME = 960


class ToneTrack(MediaStreamTrack):
    """A sine tone in real-time 20 ms frames (``freq`` 0 sends silence)."""

    kind = "audio"

    def __init__(self, freq: float, amplitude: float = 0.4) -> None:
        super().__init__()
        self.freq = freq
        self._amplitude = amplitude
        self._index = 0
        self._start: float | None = None

    def samples(self, first: int) -> np.ndarray:
        """The frame that starts at sample ``first``; subclasses shape the signal."""
        t = (np.arange(FRAME) + first) / RATE
        return (np.sin(2 * np.pi * self.freq * t) * self._amplitude * 32767).astype(np.int16)

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._index * FRAME / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        first = self._index * FRAME
        frame = av.AudioFrame.from_ndarray(self.samples(first).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        frame.pts = first
        self._index += 1
        return frame


class WebClient:
    """One page: a WebSocket plus, during a call, one peer connection."""

    def __init__(self, base_url: str, relay_only: bool = False) -> None:
        self._url = base_url.replace("http", "ws", 1).rstrip("/") + "/ws"
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.pc: RTCPeerConnection | None = None
        self.ice_servers: list[RTCIceServer] = []
        """From sign-in, as a page would use them; ``relay_only`` forces TURN."""
        self._policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.received: list[tuple[float, np.ndarray]] = []
        """Every frame heard: (arrival time, 48 kHz mono samples)."""
        self._recorder: asyncio.Task[None] | None = None
        self.tone: MediaStreamTrack | None = None
        self.offers: dict[str, str] = {}
        """Direct incoming calls: call id -> the calling page's offer."""
        self.direct: set[str] = set()
        """Direct calls placed here, whose answer comes when the other page answers."""
        self.contacts: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.mailbox: list[dict[str, Any]] = []
        """What the gateway kept for the user, as sent right after sign-in."""

    async def connect(self) -> dict[str, Any]:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self._url, ssl=False)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return await self.next("hello")

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(message.data)
                if data.get("type") == "incoming" and data.get("direct"):
                    self.offers[data["call"]] = data["sdp"]
                elif data.get("type") == "sdp" and data.get("call") in self.direct:
                    await self.apply_answer(data["sdp"])
                await self._inbox.put(data)

    async def send(self, message: dict[str, Any] | str) -> None:
        assert self._ws is not None
        await self._ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def next(self, kind: str | None = None, timeout: float = 10) -> dict[str, Any]:
        """The next message (of ``kind``, skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await asyncio.wait_for(self._inbox.get(), max(0.01, deadline - time.monotonic()))
            if kind is None or message["type"] == kind:
                return message

    async def reply(self) -> dict[str, Any]:
        """The next message that is not about the user's contacts, history or mailbox, which can come at any
        time (another page of the user changed them, or a call ended): those are kept in ``contacts``,
        ``history`` and ``mailbox``."""
        while True:
            message = await self.next()
            if message["type"] == "history_entry":
                self.history.insert(0, message["entry"])
            elif message["type"] == "history":
                self.history = message["entries"]
            elif message["type"] == "contacts":
                self.contacts = message["contacts"]
            elif message["type"] == "mailbox":
                self.mailbox = message["entries"]
            else:
                return message

    async def sign_in(self, user: str, password: str | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"type": "sign_in", "user": user, "id": "s1"}
        if password is not None:
            request["password"] = password
        await self.send(request)
        reply = await self.reply()
        if reply["type"] != "signed_in":
            raise AssertionError(f"sign-in failed: {reply}")
        self.ice_servers = [RTCIceServer(**server) for server in reply["ice_servers"]]
        self.contacts = (await self.next()).get("contacts", [])
        self.history = (await self.next()).get("entries", [])
        return reply

    async def offer(self, tone: float | MediaStreamTrack, remote_offer: str = "") -> str:
        """A fresh peer connection sending ``tone`` (Hz, or a track); returns its SDP offer,
        or its answer to ``remote_offer`` (a direct call's)."""
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers, iceTransportPolicy=self._policy))
        self.tone = tone if isinstance(tone, MediaStreamTrack) else ToneTrack(tone)
        self.pc.addTrack(self.tone)
        self.pc.on("track", self._record)
        if remote_offer:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=remote_offer, type="offer"))
        await self.pc.setLocalDescription(await (self.pc.createAnswer() if remote_offer else self.pc.createOffer()))
        return self.pc.localDescription.sdp

    async def call(self, to: str, tone_hz: float | MediaStreamTrack = 0) -> str:
        """Place a call sending a tone (or any track); returns its id once the SDP answer is applied
        (a direct call's: once the call is accepted, the answer is applied when the other page answers)."""
        await self.send({"type": "call", "to": to, "sdp": await self.offer(tone_hz), "id": "c1"})
        reply = await self.reply()
        if reply["type"] != "calling":
            raise AssertionError(f"call refused: {reply}")
        if reply.get("direct"):
            self.direct.add(reply["call"])
        else:
            await self._apply_answer(reply["call"])
        return reply["call"]

    async def answer(self, call_id: str, tone_hz: float = 0) -> None:
        """Answer with an offer (the gateway's SDP answer follows), or a direct call with an answer to its offer."""
        remote_offer = self.offers.pop(call_id, "")
        await self.send({"type": "answer", "call": call_id, "sdp": await self.offer(tone_hz, remote_offer)})
        if not remote_offer:
            await self._apply_answer(call_id)

    async def _apply_answer(self, call_id: str) -> None:
        message = await self.next("sdp")
        assert message["call"] == call_id
        await self.apply_answer(message["sdp"])

    async def apply_answer(self, sdp: str) -> None:
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def _record(self, track: MediaStreamTrack) -> None:
        self._recorder = asyncio.get_running_loop().create_task(self._recording(track))

    async def _recording(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().reshape(-1)
                if frame.layout.name == "stereo":
                    samples = samples[::2]
                self.received.append((time.monotonic(), samples.astype(np.int16)))
        except MediaStreamError:
            pass

    def heard_since(self, since: float) -> np.ndarray:
        """Audio received after the monotonic time ``since``, 48 kHz mono."""
        chunks = [samples for arrived, samples in self.received if arrived >= since]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def last_heard(self, seconds: float) -> np.ndarray:
        """The last ``seconds`` of received audio, 48 kHz mono."""
        return self.heard_since(0)[-int(seconds * RATE):]

    async def wait_tone(self, freq: float, timeout: float = 10, seconds: float = 1.0) -> None:
        """Until the last ``seconds`` heard (a whole window of them) have ``freq`` clearly dominant."""
        deadline = time.monotonic() + timeout
        while True:
            heard = self.last_heard(seconds)
            if len(heard) == int(seconds * RATE) and has_tone(heard, RATE, freq):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"never heard {freq} Hz in {timeout} s; it hears {dominant_frequency(heard, RATE):.0f} Hz")
            await asyncio.sleep(0.1)

    async def hang_up_media(self) -> None:
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
            self._recorder = None
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        self.received = []

    async def close(self) -> None:
        await self.hang_up_media()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
