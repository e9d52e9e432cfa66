"""Media engines as worker processes behind the SIP front, kept alive.

The supervisor starts K workers (:mod:`gateway.worker`), each with its own
SIP port on the internal address, links each to call control over a Unix
socket carrying :mod:`gateway.engineapi` JSON lines, and adds it to the
front's dispatcher once it is ready.  A worker that dies is taken out of
rotation at once; its answered calls get their BYE from the front, its
pages an ``ended`` event; then it is started again, later each time it dies
young.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import multiprocessing
import socket
import time
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from types import MappingProxyType
from typing import Any

from . import engineapi as api, logs
from .config import Config
from .control import CallControl
from .endcause import EndCause
from .front import Front, FrontError
from .rtpsockets import PORTS_PER_ENGINE
from .hostaddr import kernel_port

log = logging.getLogger(__name__)

ENGINE_LOST = EndCause("failed", 500, "The media engine carrying this call stopped")
_READY_SECONDS = 30.0
_STOP_SECONDS = 8.0
_YOUNG_SECONDS = 10.0
_MAX_DELAY = 30.0
_FREEZE_MODULE = "gateway.forkfreeze"
_WORKER_MODULE = "gateway.worker"


def _mappingproxy(table: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(table)


def _reduce_mappingproxy(proxy: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return _mappingproxy, (dict(proxy),)


# The dialplan keeps its tables read-only; a worker gets its own copy of them.
ForkingPickler.register(MappingProxyType, _reduce_mappingproxy)


@dataclasses.dataclass(eq=False)
class Worker:
    index: int
    address: str
    rtp_port: int
    process: BaseProcess | None = None
    link: api.StreamLink | None = None
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    delay: float = 0.0
    runner: asyncio.Task[None] | None = None


class Supervisor:
    """Starts, watches and restarts the workers; the front learns where they are."""

    def __init__(self, config: Config, control: CallControl, front: Front, count: int) -> None:
        self._config = config
        self._control = control
        self._front = front
        self._stopping = False
        host = config.engines.internal_host
        ports = [config.engines.sip_port + i if config.engines.sip_port else kernel_port(host) for i in range(count)]
        rtp = config.sip.rtp_port
        self.workers = [
            Worker(i, f"{host}:{port}", rtp + i * PORTS_PER_ENGINE if rtp else 0) for i, port in enumerate(ports)
        ]
        self._by_link: dict[api.EngineLink, Worker] = {}
        # Workers fork from a server that imported the heavy libraries once, initialised none,
        # and froze the heap that made (gateway.forkfreeze).
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([_WORKER_MODULE, _FREEZE_MODULE])

    async def start(self) -> None:
        """Start every worker; returns when all are ready (or raises)."""
        for worker in self.workers:
            await self._front.add_worker(worker.address)
        loop = asyncio.get_running_loop()
        runners = []
        for worker in self.workers:
            worker.runner = loop.create_task(self._keep_running(worker))
            runners.append(worker.runner)
        ready = asyncio.ensure_future(asyncio.gather(*(worker.ready.wait() for worker in self.workers)))
        await asyncio.wait([ready, *runners], timeout=_READY_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)
            failed = [runner for runner in runners if runner.done() and runner.exception() is not None]
            reason = f": {failed[0].exception()}" if failed else f" within {_READY_SECONDS:.0f} s"
            await self.stop()
            raise OSError(f"media engine workers did not start{reason}")

    async def stop(self) -> None:
        """Workers hang up their calls and exit once their link closes."""
        self._stopping = True
        deadline = time.monotonic() + _STOP_SECONDS
        while self._control.call_count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for worker in self.workers:
            if worker.link is not None:
                worker.link.close()
        await asyncio.gather(*(w.runner for w in self.workers if w.runner is not None), return_exceptions=True)
        for worker in self.workers:
            self._front.spawn(self._front.remove_worker(worker.address))

    def on_load(self, link: api.EngineLink, full: bool) -> None:
        """control's load listener: a full worker leaves the front's rotation until it has room."""
        worker = self._by_link.get(link)
        if worker is not None:
            self._front.spawn(self._front.set_active(worker.address, not full))

    # -- one worker -------------------------------------------------------------

    async def _keep_running(self, worker: Worker) -> None:
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._run(worker)
            except OSError as exc:  # the fork server or a socket failed: try again later
                log.error("worker %d could not be started: %s", worker.index, exc)
            except Exception:  # noqa: BLE001 - a bug must not end this worker's restarts for good
                log.exception("worker %d failed in the supervisor; starting it again", worker.index)
            if self._stopping:
                return
            young = time.monotonic() - started < _YOUNG_SECONDS
            worker.delay = min(max(worker.delay * 2, self._config.engines.restart_delay), _MAX_DELAY) if young else 0.0
            log.warning("worker %d stopped; starting it again in %.1f s", worker.index, worker.delay)
            self._control.metrics.engine_restarts.labels(worker.address).inc()
            await asyncio.sleep(worker.delay)

    async def _run(self, worker: Worker) -> None:
        """One life of a worker process, from start to exit."""
        ours, theirs = socket.socketpair()
        host, port = worker.address.rsplit(":", 1)
        # UDP only: pjsip moves a request of 1300 bytes or more (an INVITE with SRTP keys) to TCP when it
        # can, from a port the front does not know as this worker's; without TCP it stays on UDP.
        sip = dataclasses.replace(self._config.sip, port=int(port), rtp_port=worker.rtp_port, tcp=False)
        config = dataclasses.replace(self._config, sip=sip)
        role = api.SipRole(front=self._front.proxy, registers=worker.index == 0, internal_host=host)
        process = self._context.Process(
            target=_worker_main,
            args=(config, role, worker.index, theirs, logging.getLogger().getEffectiveLevel(), logs.current_format()),
            name=f"engine-{worker.index}",
            daemon=True,
        )
        process.start()
        theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours, limit=1 << 20)
        link = api.StreamLink(writer)
        worker.process, worker.link = process, link
        self._by_link[link] = worker
        self._control.attach(link)
        try:
            await self._read_events(worker, link, reader)
        finally:
            await self._lost(worker, link, process)

    async def _read_events(self, worker: Worker, link: api.StreamLink, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                event = api.decode_event(line.decode())
            except (ValueError, TypeError) as exc:
                log.error("worker %d sent something that is not an event: %s", worker.index, exc)
                continue
            if isinstance(event, api.EngineReady):
                await self._joined(worker)
            self._control.on_event(link, event)

    async def _joined(self, worker: Worker) -> None:
        try:
            await self._front.set_active(worker.address, True)
        except FrontError as exc:
            log.error("worker %d is ready but the front does not take it: %s", worker.index, exc)
        worker.ready.set()
        log.info("worker %d (pid %s) takes calls on %s", worker.index, worker.process and worker.process.pid, worker.address)

    async def _lost(self, worker: Worker, link: api.StreamLink, process: BaseProcess) -> None:
        """The link closed: the worker exited or was killed."""
        link.close()
        self._by_link.pop(link, None)
        worker.ready.clear()
        if not self._stopping:
            self._front.spawn(self._front.set_active(worker.address, False))
            try:
                ended = await self._front.end_dialogs(worker.address)
                log.warning("worker %d died: the front ended its %d answered call(s)", worker.index, ended)
            except FrontError as exc:
                log.error("worker %d died and its calls could not be ended at the front: %s", worker.index, exc)
        self._control.detach(link, ENGINE_LOST)
        await asyncio.get_running_loop().run_in_executor(None, _reap, process)


def _worker_main(*args: Any) -> None:
    """The worker's entry, imported in the child: the supervisor itself never loads pjsua2 or aiortc."""
    importlib.import_module(_WORKER_MODULE).main(*args)


def _reap(process: BaseProcess) -> None:
    process.join(_STOP_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()
