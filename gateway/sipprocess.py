"""A worker's SIP leg in a lean process of its own: pjsua2 and nothing of aiortc, av or numpy.

pjsua2-python carries at most 4 calls per process, so 150 calls need 38
pjsua2 endpoints.  With native media a worker's SIP leg only signals (its SDP
names the relay's sockets), so each endpoint runs here, forked from a small
fork server (``python -m gateway.sipprocess FD``) that imported only this
module and froze its heap: a SIP process costs a few MiB of its own, where a
whole engine forked from the engines' server cost about 17.  The engines,
with aiortc and the native relay, run several to a host process and reach
their SIP leg through :class:`gateway.remotesipleg.RemoteSipLeg`.

The fork server takes one request per SIP process: a pickled
:class:`SipSpec` with the process's end of its :mod:`gateway.siplink` beside
it, and answers with the new process's pid.  A SIP process serves
:class:`~gateway.pjsipleg.PjsipLeg`'s methods and sends its events; asked
to stop, it hangs up its dialogs; when its link closes unasked (its host
died), it ends at once and leaves them to the front, as a dead worker's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import faulthandler
import itertools
import logging
import os
import pickle
import signal
import socket
import sys
from typing import Any, Callable

from . import logs
from .dialplan import Trunk
from .config import SipConfig
from .engineapi import SipRole
from .pjsipleg import PjsipLeg
from .sipapi import NativeSocket, SipError, SipEvent, TransferRequest
from .siplink import MAX_MESSAGE, PacketLink

log = logging.getLogger(__name__)

METHODS = frozenset(
    {"make_call", "ring", "answer", "serve", "reject", "hangup", "send_dtmf", "hold", "transfer", "quality", "stop"}
)
"""What an engine may ask of its SIP process: :class:`~gateway.sipapi.SipLeg`'s methods, but ``tick``."""
TICK_SECONDS = 1.0
"""How often a SIP process runs the leg's own housekeeping (registrations, transfers, media timeouts)."""


@dataclasses.dataclass(frozen=True)
class SipSpec:
    """What a SIP process is: one worker's SIP configuration and place, and how it logs."""

    sip: SipConfig
    role: SipRole
    trunks: tuple[Trunk, ...]
    index: int
    log_level: int
    log_format: str


class SipServer:
    """One SIP process's side of the link: requests in, replies and events out."""

    def __init__(self, leg: PjsipLeg, sock: socket.socket, index: int = 0) -> None:
        self._leg = leg
        self._index = index
        self._sock = sock
        self._closed = asyncio.Event()
        self._asks: dict[int, Callable[[tuple[bool, str]], None]] = {}
        self._ask_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._link: PacketLink | None = None
        self._stopped = False

    async def run(self) -> None:
        link = self._link = PacketLink(self._sock, self._message, self._closed.set)
        try:
            await self._leg.start(self._event)
        except Exception as exc:  # noqa: BLE001 - told to the engine, which cannot start without it
            link.send(("failed", f"{type(exc).__name__}: {exc}"))
            link.close()
            return
        link.send(("started", self._leg.address))
        ticker = asyncio.ensure_future(self._tick())
        await self._closed.wait()
        ticker.cancel()
        if not self._stopped:
            # The engine died without asking: this process ends at once, as the whole worker used to, and the
            # front ends its dialogs (BYE to answered calls, 500 to ringing ones), not a 603 from here.
            log.warning("SIP process %d: its engine is gone; the front ends its dialogs", self._index)

    async def _tick(self) -> None:
        """The leg's housekeeping, here rather than asked for by the engine over the link every second."""
        while not self._stopped:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self._leg.tick()
            except SipError as exc:
                log.warning("SIP process %d: housekeeping failed: %s", self._index, exc.reason)

    def _message(self, message: Any, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        kind, *rest = message
        if kind == "call":
            request, method, args = rest
            task = asyncio.ensure_future(self._call(request, method, args))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "verdict":
            ask, allowed, reason = rest
            answer = self._asks.pop(ask, None)
            if answer is not None:
                answer((allowed, reason))

    async def _call(self, request: int, method: str, args: tuple[Any, ...]) -> None:
        assert self._link is not None
        if method not in METHODS:
            self._link.send(("reply", request, None, (0, f"no such SIP leg method: {method}")))
            return
        self._stopped = self._stopped or method == "stop"
        try:
            result = await getattr(self._leg, method)(*args)
        except SipError as exc:
            self._link.send(("reply", request, None, (exc.status, exc.reason)))
            return
        except Exception as exc:  # noqa: BLE001 - a bug here fails this request only, and the engine hears of it
            log.exception("SIP process %d: %s failed", self._index, method)
            self._link.send(("reply", request, None, (0, f"{type(exc).__name__}: {exc}")))
            return
        self._link.send(("reply", request, result, None))
        if method == "stop":
            self._link.close()

    def _event(self, event: SipEvent) -> None:
        assert self._link is not None
        if isinstance(event, NativeSocket):
            self._link.send(("sockets", event.call_id), [event.sock.fileno(), event.rtcp.fileno()])
            event.sock.close()
            event.rtcp.close()
        elif isinstance(event, TransferRequest):
            ask = next(self._ask_ids)
            self._asks[ask] = event.answer
            self._link.send(("ask", ask, event.call_id, event.target))
        else:
            self._link.send(("event", event))


def _serve(spec: SipSpec, sock: socket.socket) -> None:
    """A SIP process's life, in the forked child."""
    logs.configure(spec.log_level, spec.log_format, worker=spec.index)
    faulthandler.enable()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)  # its host ends it by closing the link, after the calls
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    leg = PjsipLeg(spec.sip, spec.role, spec.trunks, native=True)
    asyncio.run(SipServer(leg, sock, spec.index).run())


def main(fd: int) -> None:
    """The fork server: one SIP process per request on ``fd``, until that socket closes."""
    server = socket.socket(fileno=fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from . import forkfreeze  # noqa: F401 - imported last, for its side effect: the children share a frozen heap
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(server, MAX_MESSAGE, 1)
        except OSError:
            return
        if not data or not fds:
            return
        spec = pickle.loads(data)
        pid = os.fork()
        if pid == 0:
            server.close()
            code = 0
            try:
                _serve(spec, socket.socket(fileno=fds[0]))
            except BaseException:  # noqa: BLE001 - said, then this process ends as a failure
                log.exception("SIP process %d failed", spec.index)
                code = 1
            finally:
                os._exit(code)
        os.close(fds[0])
        server.send(pickle.dumps(pid))


if __name__ == "__main__":
    main(int(sys.argv[1]))
