"""rtpengine (Debian's ``rtpengine-daemon``, userspace only) as a bench target, steered over its ng protocol.

It runs in the foreground without the kernel module (``--table=-1``), its
media on ``host`` in a block of ports the kernel found free, its ng control
on 127.0.0.1. One call is WebRTC (ICE, DTLS-SRTP, Opus) towards the
client and plain RTP PCMU towards the far end, transcoded both ways, as the
gateway does it.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

from bench import bencode
from tests.peers.net import LOOPBACK, free_port, free_udp_port, stop_process, wait_for

RTPENGINE = "rtpengine"
PORTS_PER_CALL = 4  # RTP and RTCP ports for each side
REPLACE = ["origin", "session-connection"]
OFFER_FLAGS = {
    "transport-protocol": "RTP/AVP", "ICE": "remove", "rtcp-mux": ["demux"],
    "codec": {"mask": ["opus"], "transcode": ["PCMU"]},
    "DTLS-reverse": "passive",  # or it starts DTLS before the client has its answer, and aiortc rejects that
    "replace": REPLACE,
}
ANSWER_FLAGS = {"ICE": "force", "DTLS": "passive", "replace": REPLACE}


class NgError(RuntimeError):
    """rtpengine answered an ng command with an error, or not at all."""


class Rtpengine:
    """One rtpengine daemon with room for ``calls`` calls; a context manager."""

    def __init__(self, workdir: Path, host: str, calls: int) -> None:
        self.ng_port = free_udp_port()
        ports = PORTS_PER_CALL * calls + 16
        first = free_port(block=ports)
        self.log_path = Path(workdir) / "rtpengine.log"
        self.args = [
            RTPENGINE, "--config-file=none", "--table=-1", "--foreground", "--log-stderr", "--log-level=4",
            f"--interface={host}", f"--listen-ng={LOOPBACK}:{self.ng_port}",
            f"--port-min={first}", f"--port-max={first + ports - 1}", f"--pidfile={Path(workdir) / 'rtpengine.pid'}",
        ]
        self._process: subprocess.Popen[bytes] | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.settimeout(5)
        self._sock.connect((LOOPBACK, self.ng_port))

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def command(self, name: str, **fields: Any) -> dict[str, Any]:
        """One ng command (bencoded over UDP, with a cookie); its reply, or NgError."""
        cookie = secrets.token_hex(8).encode()
        self._sock.send(cookie + b" " + bencode.encode({"command": name, **fields}))
        try:
            while True:
                reply = self._sock.recv(65535)
                if reply.startswith(cookie + b" "):
                    break
        except (socket.timeout, ConnectionRefusedError):
            raise NgError(f"rtpengine did not answer {name}; see {self.log_path}") from None
        answer = bencode.decode(reply[len(cookie) + 1 :])
        if answer.get("result") not in ("ok", "pong"):
            raise NgError(f"rtpengine refused {name}: {answer.get('error-reason', answer)}")
        return answer

    def offer(self, call_id: str, from_tag: str, sdp: str) -> str:
        """The WebRTC client's offer in; the plain RTP/AVP PCMU offer for the far end out."""
        return self.command("offer", **{"call-id": call_id, "from-tag": from_tag, "sdp": sdp, **OFFER_FLAGS})["sdp"]

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
        """The far end's answer in; the answer for the WebRTC client (ICE, DTLS passive, Opus) out."""
        fields = {"call-id": call_id, "from-tag": from_tag, "to-tag": to_tag, "sdp": sdp, **ANSWER_FLAGS}
        return self.command("answer", **fields)["sdp"]

    def delete(self, call_id: str) -> None:
        self.command("delete", **{"call-id": call_id})

    def __enter__(self) -> Rtpengine:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: self._process.poll() is not None or self._pings(), 10)
        except TimeoutError:
            self.stop()
            raise
        if self._process.poll() is not None:
            raise RuntimeError(f"rtpengine exited with {self._process.returncode}:\n{self.log_path.read_text()[-2000:]}")
        return self

    def _pings(self) -> bool:
        try:
            self.command("ping")
        except NgError:
            return False
        return True

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
        self._sock.close()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
