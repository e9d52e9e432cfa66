"""A media-engine worker process: one :class:`MediaEngine` behind a socket.

The supervisor starts workers from a fork server that has already imported
this module, and with it pjsua2, aiortc, av and numpy, so those pages are
shared between workers; nothing is *initialised* before the fork.  Commands
arrive and events leave as :mod:`gateway.engineapi` JSON lines on one Unix
socket.  When the socket closes (the supervisor is gone or asked us to
stop) the engine hangs up its calls and the process exits.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import socket

from . import engineapi as api, logs
from .config import Config
from .engine import MediaEngine
from .pjsipleg import media_engine

log = logging.getLogger(__name__)


def main(config: Config, role: api.SipRole, index: int, sock: socket.socket, log_level: int, log_format: str) -> None:
    """Process entry point (runs in the forked child)."""
    logs.configure(log_level, log_format, worker=index)
    faulthandler.enable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the supervisor decides
    asyncio.run(_serve(config, role, sock))


async def _serve(config: Config, role: api.SipRole, sock: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    supervisor = api.StreamLink(writer)
    engine = media_engine(config, supervisor.send, role)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await engine.start()
    reading = asyncio.ensure_future(_read_commands(reader, engine))
    await asyncio.wait([reading, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    reading.cancel()
    await engine.stop()
    supervisor.close()


async def _read_commands(reader: asyncio.StreamReader, engine: MediaEngine) -> None:
    while line := await reader.readline():
        try:
            command = api.decode_command(line.decode())
        except (ValueError, TypeError) as exc:
            log.error("ignored a message the supervisor should never send: %s", exc)
            continue
        engine.send(command)
