"""A media-engine worker process: one or more :class:`MediaEngine` instances, each behind a socket.

The supervisor starts workers from a fork server that has already imported
this module, and with it aiortc, av and numpy, so those pages are shared
between workers; nothing is *initialised* before the fork.  Each engine's
commands arrive and events leave as :mod:`gateway.engineapi` JSON lines on a
Unix socket of its own.  With native media a worker hosts several engines
(one worker per core), each with its pjsua2 in a lean SIP process
(:mod:`gateway.sipprocess`); on the Python path a worker is one engine with
its pjsua2 inside.  When an engine's socket closes (the supervisor is gone
or asked it to stop) it hangs up its calls; when all have, the process
exits.  A SIP process that dies ends its own engine's calls only; that
engine reports itself down (the front ends those dialogs) and starts a new
SIP process.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal

from . import engineapi as api, logs
from .engine import MediaEngine
from .enginefactory import media_engine
from .remotesipleg import SipProcesses

log = logging.getLogger(__name__)


def main(engines: list[api.EngineSpec], remote_sip: bool, log_level: int, log_format: str) -> None:
    """Process entry point (runs in the forked child)."""
    logs.configure(log_level, log_format, worker=engines[0].index if len(engines) == 1 else None)
    faulthandler.enable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the supervisor decides
    asyncio.run(_host(engines, remote_sip))


async def _host(engines: list[api.EngineSpec], remote_sip: bool) -> None:
    """Serve every engine until all links close or SIGTERM comes."""
    processes = SipProcesses() if remote_sip else None
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.gather(*(_serve(spec, processes, stop) for spec in engines))
    finally:
        if processes is not None:
            processes.close()


async def _serve(spec: api.EngineSpec, processes: SipProcesses | None, stop: asyncio.Event) -> None:
    logs.for_engine(spec.index)
    reader, writer = await asyncio.open_connection(sock=spec.sock)
    supervisor = api.StreamLink(writer)
    engine: MediaEngine | None = None

    def sip_lost() -> None:
        if engine is not None:
            engine.sip_lost()

    engine = media_engine(spec.config, supervisor.send, spec.role, processes, spec.index, sip_lost)
    try:
        await engine.start()
        reading = asyncio.ensure_future(_read_commands(reader, engine))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
        reading.cancel()
        stopping.cancel()
        await engine.stop()
    finally:
        supervisor.close()


async def _read_commands(reader: asyncio.StreamReader, engine: MediaEngine) -> None:
    while line := await reader.readline():
        try:
            command = api.decode_command(line.decode())
        except (ValueError, TypeError) as exc:
            log.error("ignored a message the supervisor should never send: %s", exc)
            continue
        engine.send(command)
