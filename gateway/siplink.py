"""The channel between a media engine and its SIP process (:mod:`gateway.sipprocess`).

One Unix ``SOCK_SEQPACKET`` socket pair made by the engine's host: each
message is one packet, a pickle, with file descriptors beside it when it
carries sockets (an incoming call's RTP pair).  Both ends are this program's
own processes, started from the same code, so pickle is safe here and the
messages need no schema of their own: they are the :mod:`gateway.sipapi`
events and method calls themselves.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import pickle
import socket
from collections.abc import Sequence
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_MESSAGE = 1 << 20
_MAX_FDS = 4


def pair() -> tuple[socket.socket, socket.socket]:
    """Two connected ends; messages larger than the default socket buffer (a whole configuration) fit."""
    ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in ends:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_MESSAGE)
    return ends


class PacketLink:
    """Sends and receives pickled messages on the running event loop; never blocks it.

    ``on_message(message, fds)`` gets each message (the fds are the receiver's
    to close), ``on_closed()`` runs once when the other end is gone or
    :meth:`close` was called.
    """

    def __init__(
        self, sock: socket.socket, on_message: Callable[[Any, list[int]], None], on_closed: Callable[[], None]
    ) -> None:
        self._sock = sock
        self._on_message = on_message
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._out: collections.deque[tuple[bytes, Sequence[int]]] = collections.deque()
        self._writing = False
        self.closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._readable)

    def send(self, message: object, fds: Sequence[int] = ()) -> None:
        """Queue ``message`` (and a duplicate of each fd, which the caller may close at once)."""
        if self.closed:
            return
        self._out.append((pickle.dumps(message, pickle.HIGHEST_PROTOCOL), [os.dup(fd) for fd in fds]))
        self._flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._sock.fileno())
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
        for _, fds in self._out:
            for fd in fds:
                os.close(fd)
        self._out.clear()
        self._sock.close()
        self._on_closed()

    def _flush(self) -> None:
        while self._out:
            data, fds = self._out[0]
            try:
                socket.send_fds(self._sock, [data], fds) if fds else self._sock.send(data)
            except BlockingIOError:
                if not self._writing:
                    self._writing = True
                    self._loop.add_writer(self._sock.fileno(), self._flush)
                return
            except OSError as exc:
                log.debug("SIP link: cannot send: %s", exc)
                self.close()
                return
            self._out.popleft()
            for fd in fds:
                os.close(fd)
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._sock.fileno())

    def _readable(self) -> None:
        while not self.closed:
            try:
                data, fds, _, _ = socket.recv_fds(self._sock, MAX_MESSAGE, _MAX_FDS)
            except BlockingIOError:
                return
            except OSError as exc:
                log.debug("SIP link: cannot receive: %s", exc)
                data, fds = b"", []
            if not data:
                self.close()
                return
            self._on_message(pickle.loads(data), fds)
