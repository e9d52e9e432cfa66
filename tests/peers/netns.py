"""Gateway hosts on one machine: network namespaces on a bridge.

Each :class:`Host` is a namespace (``ip netns``) with one veth leg on a
bridge in the root namespace, so hosts reach each other and the test (in the
root namespace, at the bridge's address) reaches every host, all at layer 2
with no forwarding.  A fresh namespace has every port free, so programs in
it may use fixed ports.  :func:`two_address_host` is a host alone with two
addresses (a Docker host's ``docker0`` beside its own), and :func:`inside`
puts the test's own thread in a host, so that its sockets are the host's.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


_SERIAL = itertools.count()


@dataclasses.dataclass(frozen=True)
class Host:
    netns: str
    address: str


def run_ip(*args: str) -> None:
    """``ip`` with these arguments; CalledProcessError if it fails."""
    subprocess.run(["ip", *args], check=True, capture_output=True)


def remove(host: Host) -> None:
    """Delete the host's namespace, killing whatever a test left running in it."""
    left = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True).stdout.split()
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "delete", host.netns], capture_output=True)


@contextlib.contextmanager
def hosts(count: int) -> Iterator[tuple[str, list[Host]]]:
    """``count`` hosts on a fresh bridge; yields (the root namespace's address on it, the hosts)."""
    # Unique per call: a deleted namespace's veth pair disappears only a little later.
    serial = next(_SERIAL)
    tag = f"{os.getpid() % 1000}{serial % 100}"
    subnet = f"10.{200 + os.getpid() % 50}.{(os.getpid() + serial) % 250}"
    bridge = f"gwbr{tag}"
    made: list[Host] = []
    try:
        run_ip("link", "add", bridge, "type", "bridge")
        run_ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        run_ip("link", "set", bridge, "up")
        for index in range(count):
            host = Host(f"gwhost{tag}-{index}", f"{subnet}.{index + 2}")
            outside, inside = f"gw{tag}o{index}", f"gw{tag}i{index}"
            run_ip("netns", "add", host.netns)
            made.append(host)
            run_ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            run_ip("link", "set", outside, "master", bridge, "up")
            run_ip("link", "set", inside, "netns", host.netns)
            run_ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", inside)
            run_ip("-n", host.netns, "link", "set", inside, "up")
            run_ip("-n", host.netns, "link", "set", "lo", "up")
        yield f"{subnet}.1", made
    finally:
        for host in made:
            remove(host)
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)


_CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def two_address_host(ipv6: bool = False) -> Iterator[Host]:
    """A fresh namespace with two addresses, one on each end of a veth pair inside it (``address`` is the
    first, IPv4; the second IPv4 too, or with ``ipv6`` a global IPv6 one), which reach each other through
    its loopback; programs in it and :func:`inside` it see both."""
    serial = next(_SERIAL)
    tag = f"{os.getpid() % 1000}{serial % 100}"
    first = f"10.{100 + os.getpid() % 40}.{(os.getpid() // 40 + serial) % 250}"
    host = Host(f"gwtwo{tag}", f"{first}.1")
    second = ["fd00:77::1/64", "nodad"] if ipv6 else [f"{first}.129/25"]  # nodad: usable at once
    try:
        run_ip("netns", "add", host.netns)
        run_ip("-n", host.netns, "link", "set", "lo", "up")
        run_ip("-n", host.netns, "link", "add", "two0", "type", "veth", "peer", "name", "two1")
        for index, address in enumerate(([f"{host.address}/25"], second)):
            # No link-local IPv6 either: it would appear a moment later, and Chromium, seeing the network
            # change, aborts what it is loading (net::ERR_NETWORK_CHANGED).
            run_ip("-n", host.netns, "link", "set", f"two{index}", "addrgenmode", "none")
            run_ip("-n", host.netns, "addr", "add", address[0], "dev", f"two{index}", *address[1:])
            run_ip("-n", host.netns, "link", "set", f"two{index}", "up")
        yield host
    finally:
        remove(host)


def delete_address(host: Host, address: str) -> None:
    """Take ``address`` off its interface in ``host`` (what an interface going away does to the sockets on it)."""
    shown = subprocess.run(
        ["ip", "-n", host.netns, "-o", "addr", "show", "to", address], check=True, capture_output=True, text=True
    )
    fields = shown.stdout.split()  # "3: two0 inet 10.1.2.1/25 ...", or inet6
    prefix = fields[fields.index("inet" if "inet" in fields else "inet6") + 1]
    run_ip("-n", host.netns, "addr", "del", prefix, "dev", fields[1])


def program_inside(host: Host, program: str, directory: Path) -> Path:
    """A script in ``directory`` that runs ``program`` with its arguments in ``host``'s namespace, for a
    launcher that takes an executable (Playwright's Chromium: the pipe it talks over is inherited)."""
    script = directory / f"{Path(program).name}-in-{host.netns}"
    script.write_text(f'#!/bin/sh\nexec ip netns exec {host.netns} {program} "$@"\n')
    script.chmod(0o755)
    return script


@contextlib.contextmanager
def inside(host: Host) -> Iterator[None]:
    """Run this thread in ``host``'s namespace: the sockets it makes meanwhile stay the host's after it leaves
    (a network namespace is per thread; threads it starts meanwhile are the host's too)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net", "rb") as home, open(f"/run/netns/{host.netns}", "rb") as there:
        if libc.setns(there.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"cannot enter network namespace {host.netns}")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "cannot return to this thread's network namespace")
