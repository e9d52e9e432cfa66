"""Plumbing shared by the peers: free ports, this machine's address, waiting,
unique log names and process teardown.

Ports always come from the kernel (bind to port 0) and are checked on the wildcard
address: peers never rely on 5060 being free, and tests running in parallel only
collide in the moment between picking a port and the peer binding it.
"""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import socket
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

LOOPBACK = "127.0.0.1"
T = TypeVar("T")
_SIOCGIFADDR = 0x8915


def free_port(*, udp: bool = True, tcp: bool = False, block: int = 1) -> int:
    """First port of `block` consecutive ports free for every protocol asked for.

    `block` serves programs that bind neighbours of the port they are given: sipp's
    RTP echo uses media_port and media_port + 2, baresip listens TLS on sip_port + 1.
    """
    kinds = [kind for kind, wanted in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)) if wanted]
    if not kinds or block < 1:
        raise ValueError("ask for udp and/or tcp, and a block of at least one port")
    for _ in range(100):
        with socket.socket(socket.AF_INET, kinds[0]) as probe:
            probe.bind(("", 0))
            first = probe.getsockname()[1]
        if first + block - 1 <= 65535 and all(
            _bindable(kind, first + offset) for kind in kinds for offset in range(block)
        ):
            return first
    raise RuntimeError(f"no block of {block} free port(s) found")


def free_udp_port(block: int = 1) -> int:
    """A kernel-assigned UDP port (first of `block` consecutive free ones)."""
    return free_port(udp=True, block=block)


def free_tcp_port() -> int:
    """A kernel-assigned TCP port."""
    return free_port(udp=False, tcp=True)


def _bindable(kind: socket.SocketKind, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def udp_port_bound(port: int) -> bool:
    """Whether any socket is bound to UDP `port`, read from /proc so as not to race its owner."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(int(row.split()[1].rsplit(":", 1)[1], 16) == port for row in rows):
            return True
    return False


def local_ip() -> str:
    """This machine's own non-loopback IPv4 address, found without sending any packet.

    Chromium and aioice offer no loopback ICE candidates, so WebRTC tests need a real
    interface address. The interface of the default route is preferred (read from
    /proc/net/route), then any other interface that has an IPv4 address.
    """
    names = [name for _, name in socket.if_nameindex() if name != "lo"]
    default = _default_route_interface()
    if default in names:
        names.remove(default)
        names.insert(0, default)
    for name in names:
        address = _interface_ipv4(name)
        if address and not address.startswith("127."):
            return address
    raise RuntimeError("this machine has no non-loopback IPv4 address")


def _default_route_interface() -> str | None:
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 1 and fields[1] == "00000000":
            return fields[0]
    return None


def _interface_ipv4(name: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            request = struct.pack("256s", name.encode()[:15])
            answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
        except OSError:  # interface without an IPv4 address
            return None
    return socket.inet_ntoa(answer[20:24])


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy; return it, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], object | Awaitable[object]], timeout: float, interval: float = 0.05
) -> object:
    """Like wait_for, for asyncio tests; `predicate` may be a plain or an async function."""

    async def poll() -> object:
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(interval)

    try:
        return await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"condition not met within {timeout} s") from None


def unique_name(parent: Path, name: str, suffix: str = "") -> str:
    """`name`, or name-2, name-3... whichever has no parent/NAME+suffix yet, so that
    several peers of one kind can keep their files in one test directory."""
    candidate, counter = name, 1
    while (parent / f"{candidate}{suffix}").exists():
        counter += 1
        candidate = f"{name}-{counter}"
    return candidate


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate `process`, kill it if it outlives `grace` seconds, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()
