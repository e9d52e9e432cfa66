"""A host behind a slow link: a network namespace reached through two TUN devices and a thread that holds
every IP packet for a while, for tests that need a real round trip and real jitter on one machine.

This kernel has no netem, so the delay is made here: the root namespace's TUN end and the host's TUN
end are point-to-point peers, and what the kernel writes into one comes out of the other ``delay``
seconds later (towards the host, ``delay`` plus or minus up to ``jitter``, packets kept in order).

    with delayed_host(0.02, jitter=0.005) as (outside, host):
        ...  # run a program with `ip netns exec host.netns`, reach it at host.address from `outside`
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import itertools
import os
import random
import select
import struct
import threading
import time
from collections.abc import Iterator

from .netns import Host, remove, run_ip

_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000
_SERIAL = itertools.count()


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


class _Link(threading.Thread):
    """Moves packets between two TUN fds, each after its direction's delay."""

    def __init__(self, outside: int, inside: int, delay: float, jitter: float) -> None:
        super().__init__(name="delaylink", daemon=True)
        self._ends = {outside: (inside, jitter), inside: (outside, 0.0)}  # towards the host: jittered
        self._delay = delay
        self._due: list[tuple[float, int, int, bytes]] = []  # (when, order, to fd, packet)
        self._last_due = dict.fromkeys(self._ends, 0.0)
        self._order = itertools.count()
        self._stop_read, self._stop_write = os.pipe()
        self._random = random.Random(1)

    def run(self) -> None:
        while True:
            wait = max(0.0, self._due[0][0] - time.monotonic()) if self._due else None
            readable, _, _ = select.select([*self._ends, self._stop_read], [], [], wait)
            if self._stop_read in readable:
                return
            now = time.monotonic()
            for fd in readable:
                to, jitter = self._ends[fd]
                due = max(now + self._delay + self._random.uniform(-jitter, jitter), self._last_due[to])
                self._last_due[to] = due
                heapq.heappush(self._due, (due, next(self._order), to, os.read(fd, 65535)))
            while self._due and self._due[0][0] <= time.monotonic():
                _, _, to, packet = heapq.heappop(self._due)
                with contextlib.suppress(OSError):  # an end that is going away
                    os.write(to, packet)

    def stop(self) -> None:
        os.write(self._stop_write, b"x")
        self.join()
        for fd in (self._stop_read, self._stop_write):
            os.close(fd)


@contextlib.contextmanager
def delayed_host(delay: float, jitter: float = 0.0) -> Iterator[tuple[str, Host]]:
    """A fresh namespace behind a link of ``delay`` seconds each way (``jitter`` more or less towards it);
    yields (this namespace's address on the link, the host)."""
    serial = next(_SERIAL)
    tag = f"{os.getpid() % 10000}x{serial % 100}"
    net = f"10.{150 + os.getpid() % 40}.{(os.getpid() // 40 + serial) % 250}"
    host = Host(f"gwslow{tag}", f"{net}.2")
    outside_name, inside_name = f"slo{tag}", f"sli{tag}"
    fds: list[int] = []
    link: _Link | None = None
    try:
        run_ip("netns", "add", host.netns)
        fds += [_open_tun(outside_name), _open_tun(inside_name)]
        run_ip("link", "set", inside_name, "netns", host.netns)  # its fd stays ours
        run_ip("addr", "add", f"{net}.1", "peer", host.address, "dev", outside_name)
        run_ip("link", "set", outside_name, "up")
        run_ip("-n", host.netns, "addr", "add", host.address, "peer", f"{net}.1", "dev", inside_name)
        run_ip("-n", host.netns, "link", "set", inside_name, "up")
        run_ip("-n", host.netns, "link", "set", "lo", "up")
        link = _Link(fds[0], fds[1], delay, jitter)
        link.start()
        yield f"{net}.1", host
    finally:
        if link is not None:
            link.stop()
        remove(host)
        for fd in fds:
            os.close(fd)
