"""coturn as a real TURN server on loopback, with the shared-secret (REST) scheme."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType

from .net import LOOPBACK, free_port, free_udp_port, stop_process, udp_port_bound, wait_for

TURNSERVER = "turnserver"


class Coturn:
    """One turnserver: ``use-auth-secret`` with ``secret``, relaying on loopback."""

    def __init__(self, workdir: Path, secret: str) -> None:
        self.port = free_udp_port()
        relay = free_port(block=20)
        self.log_path = Path(workdir) / "coturn.log"
        self.args = [
            TURNSERVER, "-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log", f"--log-file={self.log_path}",
            f"--pidfile={Path(workdir) / 'turnserver.pid'}", f"--db={Path(workdir) / 'turndb'}",
            f"--listening-ip={LOOPBACK}", f"--listening-port={self.port}", f"--relay-ip={LOOPBACK}",
            f"--min-port={relay}", f"--max-port={relay + 19}", "--realm=gateway.test",
            "--use-auth-secret", f"--static-auth-secret={secret}", "--allow-loopback-peers",
        ]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"turn:{LOOPBACK}:{self.port}?transport=udp"

    def __enter__(self) -> Coturn:
        self._process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: udp_port_bound(self.port), 10)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._process is not None:
            stop_process(self._process)
