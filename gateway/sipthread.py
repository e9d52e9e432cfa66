"""The one place where pjsua2's threads meet asyncio.

pjsua2 is a C library with threads of its own.  It is run here with
``threadCnt=0`` and ``mainThreadOnly=True``: every pjsua2 call and every
call/account callback happens on the single thread this module owns.  The
conference bridge's clock thread additionally calls the audio ports'
``onFrameRequested``/``onFrameReceived``.

Crossing happens in exactly four ways, all defined here or in
:mod:`gateway.sipapi`:

- asyncio -> SIP thread: ``await sip.run(fn, *args)`` queues ``fn`` and waits
  for its result; a ``pjsua2.Error`` comes back as :class:`~gateway.sipapi.SipError`;
- SIP or clock thread -> asyncio: ``sip.to_loop(fn, *args)``, a
  ``call_soon_threadsafe`` that is silently dropped once the loop is gone;
- audio towards pjsua2: a :class:`~gateway.sipapi.FrameQueue`, a bounded
  deque the clock thread pops and asyncio appends to;
- an answer asyncio must give inside a pjsua2 callback: a :class:`Reply` the
  SIP thread waits for, briefly.  Only a REFER needs it: pjsua2 answers it
  when ``onCallTransferRequest`` returns, and only call control may say yes.

Every pjsua2 callback is wrapped in :func:`guarded`: an exception in it is
logged and handed to the object's ``callback_failed``, never left to SWIG,
which would only print it and leave the call in limbo.  A call's callbacks
log as that call (:func:`gateway.logs.for_call`).

pjsua2 objects must also be *deleted* on the SIP thread (a destructor on an
unregistered thread aborts the process), so they are only ever referenced by
code that runs there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import queue
import socket
import threading
from typing import Any, Callable, Generic, TypeVar

import pjsua2 as pj

from . import logs
from .sipapi import SipError

log = logging.getLogger(__name__)

T = TypeVar("T")
Callback = TypeVar("Callback", bound=Callable[..., Any])

_POLL_MS = 10
_IDLE_POLL_MS = 500
"""How long the SIP thread waits for network events when asyncio has nothing for it.

pjsip still fires its timers on time (it waits no longer than its next
timer), and :meth:`SipThread.run` wakes the thread at once with a CRLF
keep-alive (RFC 5626) to the endpoint's own UDP port, which pjsip ignores.
Polling every 10 ms instead cost about 0.5 % of a core per idle engine.
"""
_KEEPALIVE = b"\r\n\r\n"


class SipThread:
    """Runs the pjsua2 event loop on a dedicated thread and hands work across."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoint: pj.Endpoint | None = None
        self._wake: socket.socket | None = None

    async def start(self, create: Callable[[], pj.Endpoint]) -> None:
        """Start the thread; ``create`` builds and starts the endpoint on it."""
        self._loop = asyncio.get_running_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, args=(create, started), name="pjsua2", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(started)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the SIP thread and return its result, in the caller's context (its call's logs)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        context = contextvars.copy_context()
        self._jobs.put((lambda: context.run(fn, *args), future))
        if self._wake is not None:
            try:
                self._wake.send(_KEEPALIVE)
            except OSError:
                pass  # the thread still finds the job within _IDLE_POLL_MS
        return await asyncio.wrap_future(future)

    def after_callback(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the SIP thread once the pjsua2 callback that asks (on this thread) has returned.

        pjsua 2.15 aborts the process (``pjsip_rx_data_free_cloned``) when an
        INVITE without SDP gets its final response inside ``onIncomingCall``.
        """
        self._jobs.put((fn, concurrent.futures.Future()))

    def wake_through(self, address: tuple[str, int]) -> None:
        """Where :meth:`run` sends its wake-up: the endpoint's own UDP transport (set on the SIP thread)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(address)
        self._wake = sock

    def to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the asyncio loop; safe from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop closed during shutdown; nobody is left to tell

    async def stop(self, destroy: Callable[[], None]) -> None:
        """Run ``destroy`` on the SIP thread, then end the thread.

        The endpoint is never referenced from this coroutine: a pjsua2 object
        freed on the asyncio thread would abort the process.
        """
        if self._thread is None:
            return
        await self.run(destroy)
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None

    def handle_events(self, seconds: float) -> None:
        """Keep pjsua2 busy for a while; only for code already on the SIP thread."""
        assert threading.current_thread() is self._thread
        if self._endpoint is None:
            return
        ticks = max(1, int(seconds * 1000 / _POLL_MS))
        for _ in range(ticks):
            self._endpoint.libHandleEvents(_POLL_MS)

    def forget_endpoint(self) -> None:
        """After ``libDestroy``: stop polling (SIP thread only)."""
        self._endpoint = None

    def _main(self, create: Callable[[], pj.Endpoint], started: concurrent.futures.Future[None]) -> None:
        try:
            self._endpoint = create()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
            started.set_exception(exc)
            return
        started.set_result(None)
        while self._drain():
            if self._endpoint is not None:
                self._endpoint.libHandleEvents(_POLL_MS if self._wake is None else _IDLE_POLL_MS)
        self._endpoint = None
        if self._wake is not None:
            self._wake.close()

    def _drain(self) -> bool:
        """Run queued jobs; False when asked to stop."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return True
            if job is None:
                return False
            fn, future = job
            del job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except pj.Error as exc:
                future.set_exception(SipError(exc.status, exc.reason))
            except BaseException as exc:  # noqa: BLE001 - the caller gets it
                log.debug("job on the SIP thread failed", exc_info=True)
                # Without its traceback: the frames hold pjsua2 objects, and if
                # they were freed by the garbage collector on the asyncio thread
                # their destructors would run on an unregistered thread and crash.
                future.set_exception(exc.with_traceback(None))
            del fn


class Reply(Generic[T]):
    """A value the SIP thread waits for, given from the asyncio loop (or any thread).

    The SIP thread stops while it waits, so every other dialog waits too: use
    it only where pjsua2 leaves no choice, with a short ``timeout``.
    """

    def __init__(self) -> None:
        self._future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def give(self, value: T) -> None:
        """Answer; an answer after the first, or after the wait gave up, is dropped."""
        try:
            self._future.set_result(value)
        except concurrent.futures.InvalidStateError:
            pass

    def wait(self, timeout: float, otherwise: T) -> T:
        """The answer, or ``otherwise`` when none came within ``timeout`` seconds (SIP thread)."""
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            self._future.cancel()
            return otherwise


def guarded(callback: Callback) -> Callback:
    """Wrap a pjsua2 callback so that an exception in it ends only what it belongs to.

    The exception is logged with its traceback here, on the thread that
    raised it, and the object's ``callback_failed()`` (when it has one)
    turns it into a clean failure: a call is hung up, a frame is skipped.
    """

    @functools.wraps(callback)
    def run(self: Any, *args: Any) -> Any:
        with logs.for_call(getattr(self, "call_id", "")):
            try:
                return callback(self, *args)
            except Exception:  # noqa: BLE001 - nothing may escape into SWIG
                log.exception("pjsua2 callback %s.%s failed", type(self).__name__, callback.__name__)
                failed = getattr(self, "callback_failed", None)
                if failed is not None:
                    try:
                        failed()
                    except Exception:  # noqa: BLE001
                        log.exception("cleaning up after %s.%s failed too", type(self).__name__, callback.__name__)
                return None

    return run  # type: ignore[return-value]
