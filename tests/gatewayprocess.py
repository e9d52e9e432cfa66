"""The gateway as tests meet it: a real ``python -m gateway`` process on free ports."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_CHECKOUT = Path(__file__).resolve().parent.parent
_READY_SECONDS = 30
_WORKER_STARTED = re.compile(r'worker (\d+) \(pid (\d+)\) takes calls on ([^\s"]+)')
_SIP_PROCESS_STARTED = re.compile(r'SIP process \d+ \(pid (\d+)\) takes SIP on ([^\s"]+)')
_STOP_SECONDS = 20
_ANNOUNCED = r'(?:^|"message": "){}: ([^\s"]+)'
"""A start-up line as printed, or as the message of a JSON log line (``--log-format json``)."""


class GatewayProcess:
    """Starts the gateway with a configuration text and reads its addresses from its output."""

    def __init__(
        self,
        workdir: Path,
        config: str = "",
        tls: bool = False,
        log_level: str = "debug",
        http_port: int = 0,
        *,
        host: str = "127.0.0.1",
        sip_port: int = 0,
        netns: str = "",
        http_host: str = "",
        log_format: str = "plain",
        rtp_port: int = 0,
        program: Sequence[str] = (sys.executable, "-m", "gateway"),
        cwd: Path = _CHECKOUT,
        state_dir: Path | None = None,
    ) -> None:
        """``program`` and ``cwd``: the checkout's gateway by default, or e.g. an installed console script;
        ``state_dir``: another gateway's, to start where it stopped (default: ``workdir/state``)."""
        self.workdir = workdir
        self.log_path = workdir / "gateway.log"
        config_path = workdir / "gateway.toml"
        config_path.write_text(config)
        args = [
            *(["ip", "netns", "exec", netns] if netns else []),
            *program, "--config", str(config_path),
            "--http-host", http_host or ("0.0.0.0" if tls else host), "--http-port", str(http_port),
            "--sip-host", host, "--sip-port", str(sip_port), "--rtp-port", str(rtp_port),
            "--state-dir", str(state_dir or workdir / "state"), "--log-level", log_level, "--log-format", log_format,
        ]
        if not tls:
            args.append("--no-tls")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd)
        self.url, self.sip_address = self._wait_ready()

    def _wait_ready(self) -> tuple[str, str]:
        deadline = time.monotonic() + _READY_SECONDS
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            web = re.search(_ANNOUNCED.format("Web phone"), text, re.M)
            sip = re.search(_ANNOUNCED.format("SIP"), text, re.M)
            if web and sip:
                return web.group(1), sip.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    @property
    def tls_address(self) -> str:
        """Where the gateway takes SIP over TLS (its front), as it printed it."""
        found = re.search(r"^SIP over TLS: (\S+)", self.log(), re.M)
        if found is None:
            raise AssertionError("the gateway printed no SIP over TLS address")
        return found.group(1)

    @property
    def http_port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    def uri(self, user: str) -> str:
        return f"sip:{user}@{self.sip_address}"

    @property
    def sip_port(self) -> int:
        return int(self.sip_address.rsplit(":", 1)[1])

    def health(self) -> dict[str, Any]:
        """``GET /health``: SIP address, trunks, calls, and each engine's calls and capacity."""
        with urllib.request.urlopen(self.url + "health", timeout=5) as reply:
            return json.load(reply)

    def worker_starts(self) -> list[tuple[int, int, str]]:
        """Every start of a media-engine worker so far, from the log: (index, pid, SIP address)."""
        return [(int(index), int(pid), address) for index, pid, address in _WORKER_STARTED.findall(self.log())]

    def workers(self) -> dict[str, int]:
        """Each worker's SIP address -> the pid of its newest start."""
        return {address: pid for _, pid, address in self.worker_starts()}

    def sip_processes(self) -> dict[str, int]:
        """Each worker's SIP address -> the pid of its newest SIP process (native media only)."""
        return {address: int(pid) for pid, address in _SIP_PROCESS_STARTED.findall(self.log())}

    def front_rpc(self, method: str, secret: str | None = None) -> Any:
        """One JSON-RPC call to the front this gateway started, at the address and with the secret found
        in the Kamailio configuration it wrote (``secret`` overrides it; "" sends none)."""
        config = (self.workdir / "state" / "front" / "kamailio.cfg").read_text()
        port = re.search(r"!RPC_PORT!(\d+)!", config).group(1)
        host = re.search(rf"^listen=tcp:(\S+):{port}$", config, re.M).group(1)
        if secret is None:
            secret = re.search(r"!RPC_SECRET!([^!]+)!", config).group(1)
        request = urllib.request.Request(
            f"http://{host}:{port}/RPC", json.dumps({"jsonrpc": "2.0", "method": method, "id": 1}).encode(),
            {"X-Gateway-Secret": secret} if secret else {},
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            return json.load(reply)["result"]

    def front_states(self) -> dict[str, str]:
        """Each worker's state in the dispatcher of the front this gateway started (A active, I inactive)."""
        return {
            target["DEST"]["URI"].removeprefix("sip:"): target["DEST"]["FLAGS"][0]
            for record in self.front_rpc("dispatcher.list")["RECORDS"] if record["SET"]["ID"] == 1
            for target in record["SET"]["TARGETS"]
        }

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/task"))

    def stop(self) -> int:
        """SIGTERM, as an operator would; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
