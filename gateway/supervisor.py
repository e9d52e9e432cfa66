"""Media engines in worker processes behind the SIP front, kept alive.

The supervisor runs K engines (:mod:`gateway.worker`), each with its own SIP
port on the internal address, links each to call control over a Unix socket
carrying :mod:`gateway.engineapi` JSON lines, and adds it to the front's
dispatcher once it is ready.  With native media the engines share a worker
process per core, each with its pjsua2 in a SIP process of its own (the
4-call limit of pjsua2-python makes many of them, and each costs memory
only for SIP); on the Python path each engine is a worker process.  A worker
that dies is taken out of rotation at once; its engines' answered calls get
their BYE from the front, their pages an ``ended`` event; then it is started
again, later each time it dies young.  An engine whose SIP process died
reports ``EngineDown`` and is treated the same way, alone, until its new SIP
process is up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import importlib
import logging
import multiprocessing
import os
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
    """One engine: where it takes SIP and RTP, and its link while it runs."""

    index: int
    address: str
    rtp_port: int
    link: api.StreamLink | None = None
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


@dataclasses.dataclass(eq=False)
class Host:
    """One worker process and the engines it runs."""

    workers: list[Worker]
    remote_sip: bool
    process: BaseProcess | None = None
    delay: float = 0.0
    runner: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """For the log: "worker 3", or "the worker of engines 0, 2, 4"."""
        if len(self.workers) == 1:
            return f"worker {self.workers[0].index}"
        return "the worker of engines " + ", ".join(str(worker.index) for worker in self.workers)


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
        self._hosts: list[Host] = []
        # Workers fork from a server that imported the heavy libraries once, initialised none,
        # and froze the heap that made (gateway.forkfreeze).
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([_WORKER_MODULE, _FREEZE_MODULE])

    async def start(self) -> None:
        """Start every worker; returns when all are ready (or raises)."""
        for worker in self.workers:
            await self._front.add_worker(worker.address)
        self._hosts = self._group(await self._native_media())
        loop = asyncio.get_running_loop()
        runners = []
        for host in self._hosts:
            host.runner = loop.create_task(self._keep_running(host))
            runners.append(host.runner)
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
        await asyncio.gather(*(host.runner for host in self._hosts if host.runner is not None), return_exceptions=True)
        for worker in self.workers:
            self._front.spawn(self._front.remove_worker(worker.address))

    def on_load(self, link: api.EngineLink, full: bool) -> None:
        """control's load listener: a full worker leaves the front's rotation until it has room."""
        worker = self._by_link.get(link)
        if worker is not None:
            self._front.spawn(self._front.set_active(worker.address, not full))

    # -- worker processes ----------------------------------------------------------

    async def _native_media(self) -> bool:
        """Whether the engines will carry media natively, asked of a process that may load what that needs."""
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=self._context) as probe:
            return await asyncio.get_running_loop().run_in_executor(probe, _native_media, self._config)

    def _group(self, native: bool) -> list[Host]:
        """Native media: the engines spread over one worker per core; Python media: a worker each."""
        count = min(len(self.workers), os.cpu_count() or 1) if native else len(self.workers)
        return [Host(self.workers[i::count], remote_sip=native) for i in range(count)]

    async def _keep_running(self, host: Host) -> None:
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._run(host)
            except OSError as exc:  # the fork server or a socket failed: try again later
                log.error("%s could not be started: %s", host.name, exc)
            except Exception:  # noqa: BLE001 - a bug must not end this worker's restarts for good
                log.exception("%s failed in the supervisor; starting it again", host.name)
            if self._stopping:
                return
            young = time.monotonic() - started < _YOUNG_SECONDS
            host.delay = min(max(host.delay * 2, self._config.engines.restart_delay), _MAX_DELAY) if young else 0.0
            log.warning("%s stopped; starting it again in %.1f s", host.name, host.delay)
            for worker in host.workers:
                self._control.metrics.engine_restarts.labels(worker.address).inc()
            await asyncio.sleep(host.delay)

    async def _run(self, host: Host) -> None:
        """One life of a worker process, from start to exit."""
        engines, ours = [], []
        for worker in host.workers:
            mine, theirs = socket.socketpair()
            ours.append(mine)
            engines.append(api.EngineSpec(self._engine_config(worker), self._role(worker), worker.index, theirs))
        process = self._context.Process(
            target=_worker_main,
            args=(engines, host.remote_sip, logging.getLogger().getEffectiveLevel(), logs.current_format()),
            name=f"engine-{host.workers[0].index}",
            daemon=True,
        )
        try:
            process.start()
        finally:
            for engine in engines:
                engine.sock.close()
        host.process = process
        try:
            await asyncio.gather(*(self._link(host, worker, sock) for worker, sock in zip(host.workers, ours)))
        finally:
            await asyncio.get_running_loop().run_in_executor(None, _reap, process)

    def _engine_config(self, worker: Worker) -> Config:
        """The configuration with this engine's own SIP and RTP ports."""
        port = int(worker.address.rsplit(":", 1)[1])
        # UDP only: pjsip moves a request of 1300 bytes or more (an INVITE with SRTP keys) to TCP when it
        # can, from a port the front does not know as this worker's; without TCP it stays on UDP.
        sip = dataclasses.replace(self._config.sip, port=port, rtp_port=worker.rtp_port, tcp=False)
        return dataclasses.replace(self._config, sip=sip)

    def _role(self, worker: Worker) -> api.SipRole:
        host = worker.address.rsplit(":", 1)[0]
        return api.SipRole(front=self._front.proxy, registers=worker.index == 0, internal_host=host)

    async def _link(self, host: Host, worker: Worker, sock: socket.socket) -> None:
        """One engine's link, from the worker's start until the link closes."""
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        link = api.StreamLink(writer)
        worker.link = link
        self._by_link[link] = worker
        self._control.attach(link)
        try:
            await self._read_events(host, worker, link, reader)
        finally:
            await self._lost(worker, link)

    async def _read_events(self, host: Host, worker: Worker, link: api.StreamLink, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                event = api.decode_event(line.decode())
            except (ValueError, TypeError) as exc:
                log.error("worker %d sent something that is not an event: %s", worker.index, exc)
                continue
            if isinstance(event, api.EngineReady):
                await self._joined(host, worker)
            elif isinstance(event, api.EngineDown):
                await self._down(worker, event.reason)
            self._control.on_event(link, event)

    async def _joined(self, host: Host, worker: Worker) -> None:
        try:
            await self._front.set_active(worker.address, True)
        except FrontError as exc:
            log.error("worker %d is ready but the front does not take it: %s", worker.index, exc)
        worker.ready.set()
        log.info("worker %d (pid %s) takes calls on %s", worker.index, host.process and host.process.pid, worker.address)

    async def _lost(self, worker: Worker, link: api.StreamLink) -> None:
        """The link closed: the worker process exited or was killed."""
        link.close()
        self._by_link.pop(link, None)
        if not self._stopping:
            await self._down(worker, "its worker process died")
        worker.ready.clear()
        self._control.detach(link, ENGINE_LOST)

    async def _down(self, worker: Worker, reason: str) -> None:
        """An engine takes no calls (gone with its worker, or its SIP process restarting): the front
        stops sending it any and ends the SIP side of the calls it carried."""
        self._front.spawn(self._front.set_active(worker.address, False))
        try:
            ended = await self._front.end_dialogs(worker.address)
            log.warning("engine %d is down (%s): the front ended its %d answered call(s)", worker.index, reason, ended)
        except FrontError as exc:
            log.error("engine %d is down (%s) and its calls could not be ended at the front: %s", worker.index, reason, exc)


def _native_media(config: Config) -> bool:
    """In a child of the engines' fork server: whether engines there carry media natively."""
    logging.disable(logging.CRITICAL)  # the workers say why, in their own log
    try:
        return bool(importlib.import_module("gateway.nativemedia").wanted(config))
    except OSError:
        return False


def _worker_main(*args: Any) -> None:
    """The worker's entry, imported in the child: the supervisor itself never loads pjsua2 or aiortc."""
    importlib.import_module(_WORKER_MODULE).main(*args)


def _reap(process: BaseProcess) -> None:
    process.join(_STOP_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()
