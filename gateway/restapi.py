"""The REST API (``/api/v1``): click-to-call and the calls in progress, for operators' systems (a CRM).

Every request but the description needs ``Authorization: Bearer <token>``
of an operator in ``[api] tokens``; without a known one it gets 401 and
nothing happens.  Handlers stay thin: check the request, ask call control,
answer with the call as :mod:`gateway.callview` describes it.  An error is
JSON ``{"status", "code", "message"}``, with ``field`` when the body is at
fault.  The routes are in :mod:`gateway.app`; ``openapi.json`` beside this
module describes them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web

from . import protocol
from .apitokens import TokenChecker
from .callstate import CallState
from .callview import describe
from .config import ApiConfig
from .control import CallControl, RequestError

log = logging.getLogger(__name__)

DESCRIPTION = Path(__file__).with_name("openapi.json")
PREFIX = "/api/v1"
_NEW_CALL: dict[str, tuple[int, str]] = {
    "user": (64, "the name of a signed-in web user"),
    "to": (256, "a number, user name or sip: URI"),
}
"""The body of POST /calls: field -> (longest, what it must be)."""
_STATUS = {"bad_request": 400, "no_such_user": 400, "rejected": 403, "no_such_call": 404, "not_signed_in": 409, "busy": 503}
"""HTTP status of each call control refusal."""


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


_Handler = Callable[["RestApi", web.Request, CallControl, str], Awaitable[web.Response]]


def _for_operators(handler: _Handler) -> Callable[[RestApi, web.Request], Awaitable[web.Response]]:
    """Authenticate first (401, and nothing else happens), then turn refusals into JSON errors."""

    @functools.wraps(handler)
    async def checked(api: RestApi, request: web.Request) -> web.Response:
        try:
            operator = api.tokens.operator(request.headers.get(hdrs.AUTHORIZATION, ""))
            if operator is None:
                raise _Refused(401, "unauthorized", "Send Authorization: Bearer <token> with a token from [api] tokens")
            control = api.control()
            assert control is not None
            return await handler(api, request, control, operator)
        except RequestError as exc:
            return _error(_Refused(_STATUS.get(exc.code, 400), exc.code, exc.message, exc.details.get("field")))
        except _Refused as exc:
            return _error(exc)

    return checked


class RestApi:
    def __init__(self, api: ApiConfig, control: Callable[[], CallControl | None]) -> None:
        self.tokens = TokenChecker({token.name: token.hash for token in api.tokens})
        self.control = control
        """Call control, once the application has started it."""
        self._description = DESCRIPTION.read_bytes()

    @_for_operators
    async def create_call(self, request: web.Request, control: CallControl, operator: str) -> web.Response:
        """Click-to-call: ring the user's pages; the one that answers dials ``to``."""
        body = await _new_call(request)
        call = control.click_to_call(body["user"], body["to"], operator)
        location = f"{PREFIX}/calls/{call.call_id}"
        return web.json_response(describe(call), status=201, headers={hdrs.LOCATION: location})

    @_for_operators
    async def list_calls(self, request: web.Request, control: CallControl, operator: str) -> web.Response:
        return web.json_response({"calls": [describe(call) for call in control.calls()]})

    @_for_operators
    async def get_call(self, request: web.Request, control: CallControl, operator: str) -> web.Response:
        return web.json_response(describe(control.call(request.match_info["id"])))

    @_for_operators
    async def end_call(self, request: web.Request, control: CallControl, operator: str) -> web.Response:
        """200 when the call is over at once (it was only ringing a page), 202 while BYE or CANCEL is on its way."""
        call = control.end_call(request.match_info["id"])
        log.info("call %s: %s ends it through the API", call.call_id, operator)
        return web.json_response(describe(call), status=200 if call.state is CallState.ENDED else 202)

    async def description(self, request: web.Request) -> web.Response:
        """The OpenAPI description, for anyone: it holds no secret."""
        return web.Response(body=self._description, content_type="application/json")


async def _new_call(request: web.Request) -> dict[str, str]:
    if request.content_type != "application/json":
        raise _Refused(415, "bad_request", "Send the body as JSON, with Content-Type: application/json", "body")
    try:
        data: dict[str, Any] = protocol.load_object((await request.read()).decode())
    except (protocol.ProtocolError, UnicodeDecodeError) as exc:
        raise _Refused(400, "bad_request", f"body: {str(exc).removeprefix('message ')}", "body") from None
    for name in data:
        if name not in _NEW_CALL:
            raise _Refused(400, "bad_request", f"{name}: unknown field (known: {', '.join(_NEW_CALL)})", name)
    for name, (longest, what) in _NEW_CALL.items():
        value = data.get(name)
        if value is None:
            raise _Refused(400, "bad_request", f"{name}: missing ({what})", name)
        if not isinstance(value, str) or not 0 < len(value) <= longest:
            raise _Refused(400, "bad_request", f"{name}: must be {what}, 1-{longest} characters", name)
    return data


def _error(refused: _Refused) -> web.Response:
    body: dict[str, Any] = {"status": refused.status, "code": refused.code, "message": refused.message}
    headers: dict[str, str] = {}
    if refused.field is not None:
        body["field"] = refused.field
    if refused.status == 401:
        headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="webrtc-sip-gateway"'
    return web.json_response(body, status=refused.status, headers=headers)
