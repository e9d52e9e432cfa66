"""A native call's SIP-side sockets: RTP on an even port, RTCP on the port after it.

The SDP the gateway sends names only the RTP port (:mod:`gateway.sdp` drops
pjsua2's ``a=rtcp`` line), so the far end sends RTCP to the next port (RFC
3605's default; RFC 3550 11 pairs an even RTP port with the odd one after it).
The relay's RTCP socket must be exactly there.
"""

from __future__ import annotations

import socket

ATTEMPTS = 64
"""Kernel-chosen ports to try; about half are even, and most have a free neighbour."""


def bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """(RTP, RTCP) UDP sockets on ``host``: RTP on an even port the kernel picks, RTCP on the next."""
    for _ in range(ATTEMPTS):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, 0))
            port = rtp.getsockname()[1]
            if port % 2 == 0:
                rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    rtcp.bind((host, port + 1))
                    return rtp, rtcp
                except OSError:
                    rtcp.close()
        except BaseException:
            rtp.close()
            raise
        rtp.close()
    raise OSError(f"no even UDP port with a free next one on {host} in {ATTEMPTS} tries")
