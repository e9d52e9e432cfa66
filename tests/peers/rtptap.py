"""What reaches a SIP phone's RTP port on loopback, read off the wire, for audio a phone cannot report itself.

baresip 1.0.0 stops its decode dump at the first re-INVITE that holds the call (the dump ends there
although RTP keeps arriving), so what a held-then-resumed phone hears is read here instead: a packet
socket on ``lo`` (root or CAP_NET_RAW, as the netns tests need) keeps every RTP payload sent to one
UDP port, with its arrival time. Only IPv4 UDP datagrams whose payload looks like RTP (version 2)
are kept.

    with RtpTap(port) as tap:
        ...
        samples = tap.pcm(since=time.monotonic() - 2.0)  # G.711 decoded, 8 kHz
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import TracebackType

import numpy as np

from gateway import g711

_ETH_P_ALL = 0x0003
_ETH_IPV4 = b"\x08\x00"
_UDP = 17


class RtpTap:
    """Collects (monotonic time, payload type, payload) of each RTP packet sent to `port` on lo."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.packets: list[tuple[float, int, bytes]] = []
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        except PermissionError as err:
            raise PermissionError("reading RTP off lo needs root or CAP_NET_RAW") from err
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._read, name=f"rtptap-{port}", daemon=True)

    def _read(self) -> None:
        while self._running:
            try:
                frame, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            # lo shows each datagram twice (sent, then received): keep the received copy.
            if address[2] == socket.PACKET_OUTGOING or frame[12:14] != _ETH_IPV4 or frame[23] != _UDP:
                continue
            udp = 14 + (frame[14] & 0x0F) * 4
            rtp = frame[udp + 8 :]
            if struct.unpack("!H", frame[udp + 2 : udp + 4])[0] == self.port and len(rtp) > 12 and rtp[0] >> 6 == 2:
                self.packets.append((time.monotonic(), rtp[1] & 0x7F, rtp[12:]))

    def pcm(self, since: float) -> np.ndarray:
        """The G.711 audio (PCMU or PCMA) that arrived after the monotonic time `since`, as 8 kHz int16."""
        payloads = [g711.decode(payload, pt) for arrived, pt, payload in list(self.packets) if arrived >= since and pt in (g711.PCMU, g711.PCMA)]
        return np.frombuffer(b"".join(payloads), dtype="<i2")

    def __enter__(self) -> RtpTap:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._running = False
        self._thread.join(2)
        self._sock.close()
