"""The aiohttp application: routes in one table, one cleanup context per long-lived part."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import WSCloseCode, web

from . import signalling
from .admission import Admission
from .config import Config, recording_dir, worker_count
from .control import CallControl
from .engineapi import LocalLink, SipRole
from .front import Front
from .metrics import Metrics
from .recordings import RecordingsApi, RecordingStore
from .restapi import PREFIX, RestApi
from .supervisor import Supervisor
from .userdata import UserData
from .userfiles import UserFiles
from .userregistration import UserRegistrations
from .webfiles import WebFiles
from .webhooks import Webhooks

WEB_DIR = Path(__file__).with_name("web")
"""The page, installed as package data; in a checkout ``gateway/web`` links to the top-level ``web/``."""


@dataclasses.dataclass
class Services:
    """What the cleanup context starts; handlers reach it through the app."""

    admission: Admission
    webhooks: Webhooks
    metrics: Metrics
    recordings: RecordingStore
    control: CallControl | None = None
    sip_tls: str = ""
    """Where phones and trunks send SIP over TLS (the front's address), or ""."""
    registrations: UserRegistrations | None = None
    """Signed-in users' own registrations at the PBX (``register_users``), for /health."""
    sockets: set[web.WebSocketResponse] = dataclasses.field(default_factory=set)


CONFIG = web.AppKey("config", Config)
SERVICES = web.AppKey("services", Services)
FILES = web.AppKey("files", WebFiles)


def create_app(config: Config) -> web.Application:
    app = web.Application()
    app[CONFIG] = config
    metrics = Metrics()
    recordings = RecordingStore(recording_dir(config))
    services = app[SERVICES] = Services(Admission(config.http, metrics), Webhooks(config.api), metrics, recordings)
    app[FILES] = WebFiles(WEB_DIR)
    api = RestApi(config.api, lambda: services.control)
    recordings_api = RecordingsApi(recordings)
    app.cleanup_ctx.append(_webhooks)  # before the calls, so it outlives them and reports their end
    app.cleanup_ctx.append(_calls)
    app.on_shutdown.append(_close_sockets)
    app.add_routes(
        [
            web.get("/ws", _websocket),
            web.get("/health", _health),
            web.post(f"{PREFIX}/calls", api.create_call),
            web.get(f"{PREFIX}/calls", api.list_calls),
            web.get(f"{PREFIX}/calls/{{id}}", api.get_call),
            web.delete(f"{PREFIX}/calls/{{id}}", api.end_call),
            web.get(f"{PREFIX}/openapi.json", api.description),
            web.get("/metrics", _metrics),
            web.get("/recordings", recordings_api.list),
            web.get("/recordings/{name}", recordings_api.file),
            web.get("/voicemail/{user}/{entry}.wav", _voicemail),
            web.get("/", _index),
            web.get("/{name:.+}", _file),
        ]
    )
    return app


async def _webhooks(app: web.Application) -> AsyncIterator[None]:
    webhooks = app[SERVICES].webhooks
    await webhooks.start()
    yield
    await webhooks.stop()


def _install(app: web.Application, control: CallControl) -> CallControl:
    """Make ``control`` the one handlers reach, reporting its calls to the webhooks."""
    app[SERVICES].control = control
    control.on_call = app[SERVICES].webhooks.call_event
    return control


async def _calls(app: web.Application) -> AsyncIterator[None]:
    """Call control plus its media engines: embedded, or workers behind a SIP front."""
    config = app[CONFIG]
    workers = worker_count(config, os.cpu_count() or 1)
    if workers:
        async for _ in _workers(app, workers):
            yield
        return
    # The embedded default: one engine in this process, behind the same interface a worker has.
    from .enginefactory import media_engine  # only here: a supervisor's process never loads pjsua2

    services = app[SERVICES]
    control = _install(app, CallControl(config, metrics=services.metrics, userdata=_userdata(config), recordings=services.recordings))
    link = LocalLink(lambda command: engine.send(command))
    engine = media_engine(config, lambda event: control.on_event(link, event), SipRole())
    control.attach(link)
    await engine.start()
    yield
    control.hang_up_all()
    await engine.stop()
    await control.userdata.flush()


async def _workers(app: web.Application, count: int) -> AsyncIterator[None]:
    config = app[CONFIG]
    front = Front(config)
    services = app[SERVICES]
    control = _install(
        app,
        CallControl(
            config, sip_host=front.address, presence=front, metrics=services.metrics,
            userdata=_userdata(config), recordings=services.recordings, room_router=front,
        ),
    )
    app[SERVICES].sip_tls = front.tls_address
    app[SERVICES].registrations = front.registrations
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
        await control.userdata.flush()


def _userdata(config: Config) -> UserData:
    """Users' contacts and call history, a file each in ``state_dir/users``."""
    return UserData(config.plan.country, config.contacts, UserFiles(config.state_dir / "users"))


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
    if details and services.registrations is not None:
        details["registrations"] = services.registrations.status()
    return web.json_response({"status": "ok", **details})


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus metrics, for the same callers as /health's details; anyone else gets 403."""
    services = request.app[SERVICES]
    if not services.admission.may_see_status(request):
        raise web.HTTPForbidden(text="metrics are for status_from or the status_token\n")
    body, content_type = services.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _voicemail(request: web.Request) -> web.StreamResponse:
    """A voicemail message, for the URL its user's page was given (``mailbox_play``)."""
    control = request.app[SERVICES].control
    assert control is not None
    query, match = request.query, request.match_info
    path = control.mailboxes.message_file(match["user"], match["entry"], query.get("expires", ""), query.get("sig", ""), time.time())
    if path is None:
        raise web.HTTPNotFound(text="no such message, or its link has expired\n")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav", "Cache-Control": "private, no-store"})


async def _index(request: web.Request) -> web.Response:
    return await request.app[FILES].response(request, "index.html")


async def _file(request: web.Request) -> web.Response:
    return await request.app[FILES].response(request, request.match_info["name"])
