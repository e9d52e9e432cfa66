"""A :class:`~gateway.sipapi.SipLeg` whose pjsua2 runs in a SIP process of its own (:mod:`gateway.sipprocess`).

The engine cannot tell it from :class:`~gateway.pjsipleg.PjsipLeg`: each
method is a request answered by the SIP process (its :class:`SipError` comes
back as one), events arrive on the loop as they would from the SIP thread,
an incoming call's RTP sockets arrive as file descriptors, and a far end's
REFER waits for the engine's verdict over the same link.  The SIP process
dying is told to ``on_lost``, and what waits gets a :class:`SipError`;
:meth:`RemoteSipLeg.start` may then start a new one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pickle
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, Callable

from . import siplink
from .sipapi import CallAudio, Caller, NativeSocket, Quality, SipError, SipEventSink, TransferRequest
from .siplink import PacketLink
from .sipprocess import SipSpec

log = logging.getLogger(__name__)

_START_SECONDS = 30.0
SIP_PROCESS_GONE = "the SIP process is gone"


class SipProcesses:
    """A host's fork server for SIP processes, started on first use and ended with the host."""

    def __init__(self) -> None:
        self._server: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()

    async def spawn(self, spec: SipSpec) -> tuple[socket.socket, int]:
        """A new SIP process for ``spec``: the engine's end of its link, and its pid."""
        async with self._lock:
            server = self._server or self._start()
            ours, theirs = siplink.pair()
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, socket.send_fds, server, [pickle.dumps(spec)], [theirs.fileno()])
                reply = await loop.run_in_executor(None, server.recv, 64)
            except OSError:
                ours.close()
                raise
            finally:
                theirs.close()
            if not reply:
                ours.close()
                raise OSError("the SIP fork server stopped")
            return ours, pickle.loads(reply)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()  # the fork server ends; its SIP processes end with their links
        if self._process is not None:
            self._process.wait()

    def _start(self) -> socket.socket:
        ours, theirs = siplink.pair()
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "gateway.sipprocess", str(theirs.fileno())], pass_fds=[theirs.fileno()]
            )
        self._server = ours
        return ours


class RemoteSipLeg:
    """The engine's side of a SIP process."""

    def __init__(self, processes: SipProcesses, spec: SipSpec, on_lost: Callable[[], None]) -> None:
        self._processes = processes
        self._spec = spec
        self._on_lost = on_lost
        self._link: PacketLink | None = None
        self._events: SipEventSink | None = None
        self._requests = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._started: asyncio.Future[str] | None = None
        self._stopping = False
        self.address = ""
        self.pid = 0

    async def start(self, events: SipEventSink) -> None:
        self._events = events
        sock, self.pid = await self._processes.spawn(self._spec)
        self._started = asyncio.get_running_loop().create_future()
        self._link = PacketLink(sock, self._message, self._closed)
        try:
            self.address = await asyncio.wait_for(self._started, _START_SECONDS)
        except asyncio.TimeoutError:
            self._link.close()
            raise OSError(f"the SIP process did not start within {_START_SECONDS:.0f} s") from None
        log.info("SIP process %d (pid %d) takes SIP on %s", self._spec.index, self.pid, self.address)

    async def stop(self) -> None:
        self._stopping = True
        if self._link is not None and not self._link.closed:
            try:
                await self._call("stop")
            except SipError as exc:
                log.warning("SIP process %d did not stop cleanly: %s", self._spec.index, exc.reason)
            self._link.close()

    async def make_call(self, call_id: str, trunk: str, target: str, caller: Caller, audio: CallAudio) -> None:
        await self._call("make_call", call_id, trunk, target, caller, audio)

    async def ring(self, call_id: str) -> None:
        await self._call("ring", call_id)

    async def answer(self, call_id: str, audio: CallAudio) -> None:
        await self._call("answer", call_id, audio)

    async def serve(self, call_id: str, app: str, audio: CallAudio | None) -> None:
        await self._call("serve", call_id, app, audio)

    async def reject(self, call_id: str, code: int, reason: str, users: Sequence[str]) -> None:
        await self._call("reject", call_id, code, reason, tuple(users))

    async def hangup(self, call_id: str) -> None:
        await self._call("hangup", call_id)

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        await self._call("send_dtmf", call_id, digits)

    async def hold(self, call_id: str, hold: bool) -> None:
        await self._call("hold", call_id, hold)

    async def transfer(self, call_id: str, trunk: str, target: str, replacing: str) -> None:
        await self._call("transfer", call_id, trunk, target, replacing)

    async def quality(self, call_id: str) -> Quality:
        return await self._call("quality", call_id)  # type: ignore[no-any-return]

    async def tick(self) -> None:
        """Nothing to ask: the SIP process runs the leg's housekeeping itself (:data:`~gateway.sipprocess.TICK_SECONDS`)."""

    async def _call(self, method: str, *args: Any) -> Any:
        if self._link is None or self._link.closed:
            raise SipError(0, SIP_PROCESS_GONE)
        request = next(self._requests)
        future = self._waiting[request] = asyncio.get_running_loop().create_future()
        self._link.send(("call", request, method, args))
        return await future

    def _message(self, message: Any, fds: list[int]) -> None:
        kind, *rest = message
        if kind == "reply":
            request, result, error = rest
            future = self._waiting.pop(request, None)
            if future is not None and not future.done():
                future.set_exception(SipError(*error)) if error else future.set_result(result)
        elif kind == "event":
            self._emit(rest[0])
        elif kind == "sockets":
            rtp, rtcp = (socket.socket(fileno=fd) for fd in fds)
            self._emit(NativeSocket(rest[0], rtp, rtcp))
        elif kind == "ask":
            ask, call_id, target = rest
            self._emit(TransferRequest(call_id, target, lambda verdict: self._verdict(ask, verdict)))
        elif kind == "started" and self._started is not None and not self._started.done():
            self._started.set_result(rest[0])
        elif kind == "failed" and self._started is not None and not self._started.done():
            self._started.set_exception(OSError(f"the SIP process could not start: {rest[0]}"))

    def _verdict(self, ask: int, verdict: tuple[bool, str]) -> None:
        if self._link is not None:
            self._link.send(("verdict", ask, *verdict))

    def _emit(self, event: Any) -> None:
        if self._events is not None:
            self._events(event)

    def _closed(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(SipError(0, SIP_PROCESS_GONE))
        self._waiting.clear()
        if self._started is not None and not self._started.done():
            self._started.set_exception(OSError(SIP_PROCESS_GONE))
        if not self._stopping:
            log.error("SIP process %d (pid %d) is gone", self._spec.index, self.pid)
            self._on_lost()
