"""The one place where pjsua2's threads meet asyncio.

pjsua2 is a C library with threads of its own.  It is run here with
``threadCnt=0`` and ``mainThreadOnly=True``: every pjsua2 call and every
call/account callback happens on the single thread this module owns.  The
conference bridge's clock thread additionally calls the audio ports'
``onFrameRequested``/``onFrameReceived``.

Crossing happens in exactly three ways, all defined here:

- asyncio -> SIP thread: ``await sip.run(fn, *args)`` queues ``fn`` and waits
  for its result;
- SIP or clock thread -> asyncio: ``sip.to_loop(fn, *args)``, a
  ``call_soon_threadsafe`` that is silently dropped once the loop is gone;
- audio towards pjsua2: a :class:`FrameQueue`, a bounded deque the clock
  thread pops and asyncio appends to (both operations are atomic in CPython).

pjsua2 objects must also be *deleted* on the SIP thread (a destructor on an
unregistered thread aborts the process), so they are only ever referenced by
code that runs there.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import queue
import threading
from typing import Any, Callable, TypeVar

import pjsua2 as pj

log = logging.getLogger(__name__)

T = TypeVar("T")

_POLL_MS = 10


class SipThread:
    """Runs the pjsua2 event loop on a dedicated thread and hands work across."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoint: pj.Endpoint | None = None

    async def start(self, create: Callable[[], pj.Endpoint]) -> None:
        """Start the thread; ``create`` builds and starts the endpoint on it."""
        self._loop = asyncio.get_running_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, args=(create, started), name="pjsua2", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(started)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the SIP thread and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((lambda: fn(*args), future))
        return await asyncio.wrap_future(future)

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
                self._endpoint.libHandleEvents(_POLL_MS)
        self._endpoint = None

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
            except BaseException as exc:  # noqa: BLE001 - the caller gets it
                log.debug("job on the SIP thread failed", exc_info=True)
                # Without its traceback: the frames hold pjsua2 objects, and if
                # they were freed by the garbage collector on the asyncio thread
                # their destructors would run on an unregistered thread and crash.
                future.set_exception(exc.with_traceback(None))
            del fn


class FrameQueue:
    """Bounded hand-off of PCM frames from asyncio to the clock thread.

    Old frames are dropped when it is full, so latency cannot grow; an empty
    queue yields silence, so the SIP side never stalls.
    """

    def __init__(self, depth: int, silence: bytes) -> None:
        self._frames: collections.deque[bytes] = collections.deque(maxlen=depth)
        self._silence = silence

    def put(self, frame: bytes) -> None:
        self._frames.append(frame)

    def take(self) -> bytes:
        try:
            return self._frames.popleft()
        except IndexError:
            return self._silence
