"""The aiohttp application: routes in one table, one cleanup context per long-lived part."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import WSCloseCode, web

from . import signalling
from .admission import Admission
from .config import Config, worker_count
from .control import CallControl
from .engineapi import LocalLink, SipRole
from .front import Front
from .supervisor import Supervisor
from .webfiles import WebFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


@dataclasses.dataclass
class Services:
    """What the cleanup context starts; handlers reach it through the app."""

    admission: Admission
    control: CallControl | None = None
    sip_tls: str = ""
    """Where phones and trunks send SIP over TLS (the front's address), or ""."""
    sockets: set[web.WebSocketResponse] = dataclasses.field(default_factory=set)


CONFIG = web.AppKey("config", Config)
SERVICES = web.AppKey("services", Services)
FILES = web.AppKey("files", WebFiles)


def create_app(config: Config) -> web.Application:
    app = web.Application()
    app[CONFIG] = config
    app[SERVICES] = Services(Admission(config.http))
    app[FILES] = WebFiles(WEB_DIR)
    app.cleanup_ctx.append(_calls)
    app.on_shutdown.append(_close_sockets)
    app.add_routes(
        [
            web.get("/ws", _websocket),
            web.get("/health", _health),
            web.get("/", _index),
            web.get("/{name:.+}", _file),
        ]
    )
    return app


async def _calls(app: web.Application) -> AsyncIterator[None]:
    """Call control plus its media engines: embedded, or workers behind a SIP front."""
    config = app[CONFIG]
    workers = worker_count(config, os.cpu_count() or 1)
    if workers:
        async for _ in _workers(app, workers):
            yield
        return
    # The embedded default: one engine in this process, behind the same interface a worker has.
    from .pjsipleg import media_engine  # only here: a supervisor's process never loads pjsua2

    control = app[SERVICES].control = CallControl(config)
    link = LocalLink(lambda command: engine.send(command))
    engine = media_engine(config, lambda event: control.on_event(link, event), SipRole())
    control.attach(link)
    await engine.start()
    yield
    control.hang_up_all()
    await engine.stop()


async def _workers(app: web.Application, count: int) -> AsyncIterator[None]:
    config = app[CONFIG]
    front = Front(config)
    control = app[SERVICES].control = CallControl(config, sip_host=front.address, presence=front)
    app[SERVICES].sip_tls = front.tls_address
    supervisor = Supervisor(config, control, front, count)
    control.on_load = supervisor.on_load
    await front.start(config.state_dir / "front")
    try:
        await supervisor.start()
        yield
        control.hang_up_all()
    finally:
        await supervisor.stop()
        await front.stop()


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[SERVICES].sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway shutting down")


async def _websocket(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    assert services.control is not None
    config = request.app[CONFIG]
    return await signalling.websocket(request, services.control, services.admission, services.sockets, config.http.sign_in_timeout)


async def _health(request: web.Request) -> web.Response:
    """Trunk names and engine addresses only for the operator: ``status_from`` or the ``status_token``."""
    services = request.app[SERVICES]
    assert services.control is not None
    details = services.control.status() if services.admission.may_see_status(request) else {}
    return web.json_response({"status": "ok", **details})


async def _index(request: web.Request) -> web.Response:
    return await request.app[FILES].response(request, "index.html")


async def _file(request: web.Request) -> web.Response:
    return await request.app[FILES].response(request, request.match_info["name"])
