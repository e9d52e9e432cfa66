"""The WebSocket signalling endpoint: one :class:`PageSession` per browser tab.

Handlers stay thin: parse with :mod:`gateway.protocol`, hand the request to
call control, send back its reply or error.  Replies and events leave
through one writer task per socket, so call control never waits on a slow
browser.  :mod:`gateway.admission` decides before the upgrade who may open
a socket; a socket that does not sign in soon is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from . import logs, protocol, userdata
from .admission import Admission
from .callquality import LegQuality
from .control import CallControl, RequestError

log = logging.getLogger(__name__)

_OUTBOX_LIMIT = 256


class PageSession:
    """A signed-in (or not yet) browser tab, as call control sees it."""

    def __init__(self, ws: web.WebSocketResponse, source: str) -> None:
        self.user: str | None = None
        self.source = source
        self._ws = ws
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_OUTBOX_LIMIT)
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def send(self, message: dict[str, Any]) -> None:
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("page of %s reads too slowly; closing it", self.user)
            self._writer.cancel()

    async def _write(self) -> None:
        while (message := await self._outbox.get()) is not None:
            if self._ws.closed:
                return
            await self._ws.send_str(json.dumps(message))

    async def close(self) -> None:
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)


async def websocket(
    request: web.Request, control: CallControl, admission: Admission, sockets: set[web.WebSocketResponse], sign_in_timeout: float
) -> web.WebSocketResponse:
    admission.check_origin(request)
    source = request.remote or ""
    admission.open_socket(source)
    try:
        # No permessage-deflate: its zlib state costs ~100 kB a socket, and messages are small.
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=protocol.MAX_MESSAGE_BYTES, compress=False)
        await ws.prepare(request)
        sockets.add(ws)
        session = PageSession(ws, source)
        session.send({"type": "hello", "version": protocol.VERSION, "auth": "open" if control.open_sign_in else "password"})
        try:
            await _serve(ws, control, session, sign_in_timeout)
        finally:
            control.sign_out(session)
            await session.close()
            sockets.discard(ws)
    finally:
        admission.close_socket(source)
    return ws


async def _serve(ws: web.WebSocketResponse, control: CallControl, session: PageSession, sign_in_timeout: float) -> None:
    """Read until the socket closes, or until a socket not signed in has had ``sign_in_timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    while True:
        deadline = None if session.user else deadline or loop.time() + sign_in_timeout
        try:
            message = await ws.receive(timeout=None if deadline is None else max(deadline - loop.time(), 0.001))
        except asyncio.TimeoutError:
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"not signed in in time")
            return
        if message.type == WSMsgType.TEXT:
            await _handle(control, session, message.data)
        elif message.type == WSMsgType.BINARY:
            session.send(_error("bad_message", "binary frames are not part of the protocol"))
        else:
            return


async def _handle(control: CallControl, session: PageSession, raw: str) -> None:
    try:
        request = protocol.parse(raw)
    except protocol.ProtocolError as exc:
        session.send(_error("bad_message", str(exc), exc.request_id))
        return
    fields = request.fields
    try:
        with logs.for_call(fields.get("call", "")):
            reply = await _dispatch(control, session, request.type, fields, request.id)
    except RequestError as exc:
        session.send({**_error(exc.code, exc.message, request.id, fields.get("call")), **exc.details})
        return
    if reply is not None:
        if request.id is not None:
            reply["id"] = request.id
        session.send(reply)
    if request.type == "sign_in" and session.user is not None:
        for message in control.userdata.welcome(session.user):
            session.send(message)


async def _dispatch(
    control: CallControl, session: PageSession, kind: str, fields: dict[str, Any], request_id: str | None
) -> dict[str, Any] | None:
    if kind == "sign_in":
        return await control.sign_in(session, fields["user"], fields.get("password"))
    if kind == "sign_out":
        control.sign_out(session)
        return {"type": "signed_out"}
    if kind == "call":
        if "transfer_of" in fields:
            call_id = control.transfers.place_call(session, fields["transfer_of"], fields["to"], fields["sdp"])
        else:
            call_id = control.place_call(session, fields["to"], fields["sdp"])
        calling = {"type": "calling", "call": call_id, "to": fields["to"]}
        return {**calling, "direct": True} if control.call(call_id).direct else calling
    if kind == "answer":
        control.answer(session, fields["call"], fields["sdp"])
    elif kind == "decline":
        control.decline(session, fields["call"])
    elif kind == "hangup":
        control.hangup(session, fields["call"])
    elif kind == "dtmf":
        control.send_dtmf(session, fields["call"], fields["digits"])
    elif kind == "transfer":
        _transfer(control, session, fields)
    elif kind in ("hold", "resume"):
        control.hold(session, fields["call"], kind == "hold")
    elif kind == "stats":
        browser = fields.get("browser")
        control.request_stats(session, fields["call"], request_id, None if browser is None else LegQuality(**browser))
    elif kind == "record":
        control.record(session, fields["call"], fields["on"])
    elif kind == "recordings":
        return control.recordings(session)
    elif kind == "mailbox_play":
        return control.play_message(session, fields["entry"])
    elif kind == "mailbox_heard":
        control.mark_heard(session, fields["entry"])
    elif kind == "mailbox_delete":
        control.delete_entry(session, fields["entry"])
    elif kind == "ping":
        return {"type": "pong"}
    elif kind in userdata.REQUESTS:
        if session.user is None:
            raise RequestError("not_signed_in", "Sign in first")
        reply = control.userdata.request(session.user, kind, fields)
        control.tell_user(session.user, reply, but=session)
        return {**reply}
    return None


def _transfer(control: CallControl, session: PageSession, fields: dict[str, Any]) -> None:
    """``to`` a number (blind) or ``to_call`` another call of the page (attended): exactly one of them."""
    if ("to" in fields) == ("to_call" in fields):
        raise RequestError("bad_message", "transfer: give either 'to' or 'to_call'")
    if "to" in fields:
        control.transfers.transfer(session, fields["call"], fields["to"])
    else:
        control.transfers.transfer_to_call(session, fields["call"], fields["to_call"])


def _error(code: str, message: str, request_id: str | None = None, call: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        error["id"] = request_id
    if call is not None:
        error["call"] = call
    return error
