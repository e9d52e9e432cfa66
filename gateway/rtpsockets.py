"""A native call's SIP-side sockets: RTP on an even port, RTCP on the port after it.

The SDP the gateway sends names only the RTP port (:mod:`gateway.sdp` drops
pjsua2's ``a=rtcp`` line), so the far end sends RTCP to the next port (RFC
3605's default; RFC 3550 11 pairs an even RTP port with the odd one after it).
The relay's RTCP socket must be exactly there.

With ``[sip] rtp_port`` set, each engine takes its pairs from its own block
of :data:`PORTS_PER_ENGINE` ports from there, so an operator opens one known
range in a firewall; with 0 the kernel picks.
"""

from __future__ import annotations

import itertools
import socket

ATTEMPTS = 64
"""Kernel-chosen ports to try; about half are even, and most have a free neighbour."""
PORTS_PER_ENGINE = 64
"""One engine's block of RTP ports: 32 pairs for its 4 calls, so a port just freed is not taken at once."""

_turn = itertools.count()


def bind_pair(host: str, first: int = 0) -> tuple[socket.socket, socket.socket]:
    """(RTP, RTCP) UDP sockets on ``host``: RTP on an even port, RTCP on the next; the ports from
    ``first``'s block (taken in turn), or, with ``first`` 0, where the kernel picks."""
    if first:
        start = first + first % 2
        evens = list(range(start, first + PORTS_PER_ENGINE - 1, 2))
        offset = next(_turn)
        candidates = [evens[(offset + i) % len(evens)] for i in range(len(evens))]
    else:
        candidates = [0] * ATTEMPTS
    for candidate in candidates:
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, candidate))
        except OSError:
            rtp.close()
            if first:
                continue
            raise
        port = rtp.getsockname()[1]
        if port % 2 == 0:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
                return rtp, rtcp
            except OSError:
                rtcp.close()
        rtp.close()
    where = f"ports {first}-{first + PORTS_PER_ENGINE - 1}" if first else f"{ATTEMPTS} kernel-chosen ports"
    raise OSError(f"no even UDP port with a free next one on {host} among {where}")
