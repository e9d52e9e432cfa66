"""Webhooks: each call's ringing, answered and ended, POSTed signed to operators' systems.

Call control reports an event and moves on: the event is put on each
receiver's bounded queue, and one task per receiver sends them in order.
A receiver that is down, slow or hangs only fills its own queue; once it is
full, new events for it are dropped with a log line.  No call ever waits.

What a receiver gets, as from Stripe or Twilio: a POST of the JSON
``{"id", "type", "created_at", "call"}`` (``call`` as :mod:`gateway.callview`
describes it) with

- ``X-Gateway-Timestamp``: Unix seconds when this attempt was signed;
- ``X-Gateway-Signature``: ``v1=`` and the hex HMAC-SHA256, keyed with the
  receiver's secret, of the timestamp, a ``.`` and the body.  Signing the
  timestamp with the body lets a receiver refuse an old delivery replayed.

An attempt that gets no answer within ``webhook_timeout``, a 5xx, 408 or 429
is made again 1, 2, 4... seconds later, up to ``webhook_attempts`` in all;
any other non-2xx answer ends it (the receiver refuses the event).  Every
attempt carries the same event ``id``, so a receiver can drop duplicates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import time
import uuid

import aiohttp

from .callview import describe, iso_time
from .config import ApiConfig
from .controlcall import ControlCall

log = logging.getLogger(__name__)

_FIRST_RETRY = 1.0
_LONGEST_RETRY = 60.0
_FLUSH_SECONDS = 2.0
"""At shutdown, how long queued events (the calls' ``ended``) may still take to go out."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Gateway-Signature`` value of ``body`` sent at ``timestamp``."""
    return "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True)
class _Event:
    type: str
    call_id: str
    body: bytes


class Receiver:
    """One URL with its secret, its queue, and the task that empties it."""

    def __init__(self, name: str, url: str, secret: str, api: ApiConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self._url = url
        self._secret = secret
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=api.webhook_timeout)
        self._attempts = api.webhook_attempts
        self._queue: asyncio.Queue[_Event] = asyncio.Queue(api.webhook_queue)
        self._task = asyncio.get_running_loop().create_task(self._send_all())

    def put(self, event: _Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning(
                "webhook for %s: %d events wait already; dropped %s of call %s",
                self.name, self._queue.maxsize, event.type, event.call_id,
            )

    async def _send_all(self) -> None:
        while True:
            event = await self._queue.get()
            await self._deliver(event)
            self._queue.task_done()

    async def _deliver(self, event: _Event) -> None:
        for attempt in range(1, self._attempts + 1):
            problem, again = await self._post(event.body)
            if problem is None:
                log.debug("webhook for %s: delivered %s of call %s", self.name, event.type, event.call_id)
                return
            if not again or attempt == self._attempts:
                log.warning(
                    "webhook for %s: gave up on %s of call %s after %d attempt(s): %s",
                    self.name, event.type, event.call_id, attempt, problem,
                )
                return
            delay = min(_FIRST_RETRY * 2 ** (attempt - 1), _LONGEST_RETRY)
            log.info(
                "webhook for %s: %s of call %s failed (%s); attempt %d of %d in %g s",
                self.name, event.type, event.call_id, problem, attempt + 1, self._attempts, delay,
            )
            await asyncio.sleep(delay)

    async def _post(self, body: bytes) -> tuple[str | None, bool]:
        """What went wrong (None: nothing), and whether another attempt may help."""
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Gateway-Timestamp": timestamp,
            "X-Gateway-Signature": sign(self._secret, timestamp, body),
        }
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as reply:
                status = reply.status
        except asyncio.TimeoutError:
            return f"no answer within {self._timeout.total:g} s", True
        except (aiohttp.ClientError, OSError) as exc:
            return str(exc) or type(exc).__name__, True
        if 200 <= status < 300:
            return None, False
        return f"answered {status}", status >= 500 or status in (408, 429)

    async def close(self, grace: float) -> None:
        """Give the events queued ``grace`` seconds to go out, then stop."""
        try:
            await asyncio.wait_for(self._queue.join(), grace)
        except asyncio.TimeoutError:
            log.warning("webhook for %s: stopping with %d event(s) not delivered", self.name, self._queue.qsize() + 1)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class Webhooks:
    """The receivers: ``[api] webhook_url`` gets every call's events, an operator's own those of the calls it placed."""

    def __init__(self, api: ApiConfig) -> None:
        self._api = api
        self._session: aiohttp.ClientSession | None = None
        self._all: Receiver | None = None
        self._operators: dict[str, Receiver] = {}

    async def start(self) -> None:
        api = self._api
        self._session = session = aiohttp.ClientSession(headers={"User-Agent": "webrtc-sip-gateway"})
        if api.webhook_url:
            self._all = Receiver("all calls", api.webhook_url, api.webhook_secret, api, session)
        for token in api.tokens:
            if token.webhook_url:
                self._operators[token.name] = Receiver(token.name, token.webhook_url, token.webhook_secret, api, session)

    def call_event(self, event: str, call: ControlCall) -> None:
        """Queue ``call.<event>`` for its receivers, described as the call is now; never blocks."""
        receivers = [receiver for receiver in (self._all, self._operators.get(call.operator)) if receiver is not None]
        if not receivers:
            return
        kind = f"call.{event}"
        body = json.dumps(
            {"id": "evt_" + uuid.uuid4().hex, "type": kind, "created_at": iso_time(time.time()), "call": describe(call)}
        ).encode()
        for receiver in receivers:
            receiver.put(_Event(kind, call.call_id, body))

    async def stop(self) -> None:
        receivers = [receiver for receiver in (self._all, *self._operators.values()) if receiver is not None]
        await asyncio.gather(*(receiver.close(_FLUSH_SECONDS) for receiver in receivers))
        if self._session is not None:
            await self._session.close()
