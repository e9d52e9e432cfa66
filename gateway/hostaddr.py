"""This machine's addresses and free ports, for the listeners the gateway opens or writes down."""

from __future__ import annotations

import socket

import ifaddr

WILDCARD = ("0.0.0.0", "")
"""``[sip] listen`` values that mean every local address."""


def own_addresses(loopback: bool = True) -> list[str]:
    """This machine's IPv4 addresses, loopback (if wanted) last."""
    addresses = {str(ip.ip) for adapter in ifaddr.get_adapters() for ip in adapter.ips if ip.is_IPv4}
    ordered = sorted(addresses, key=lambda address: (address.startswith("127."), address))
    return [address for address in ordered if loopback or not address.startswith("127.")]


def own_address() -> str:
    """Where peers reach a wildcard listener: the first non-loopback address."""
    return own_addresses()[0]


def kernel_port(host: str) -> int:
    """A port free for both UDP and TCP on ``host``, chosen by the kernel; OSError if none is."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError(f"no port free for both UDP and TCP on {host}")
