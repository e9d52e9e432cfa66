"""sipp (3.6.1) as a real SIP peer for integration tests, plus raw malformed UDP requests.

Every sipp binds 127.0.0.1 (or the `ip` given) on kernel-picked ports, including its
control port (it would take 8888 otherwise), and keeps its output and -trace_err,
-trace_msg and -trace_shortmsg logs in `log_dir` as NAME.out, NAME_errors.log,
NAME_messages.log and NAME_shortmessages.log, to read when a test fails.

    with echo_uas(tmp_path) as phone:          # answers with 200 and echoes RTP
        ...dial phone.uri("bob") through the gateway...
    assert uac(tmp_path, "sip:alice@127.0.0.1:5080").run().final_status == 404
"""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .net import LOOPBACK, free_udp_port, stop_process, udp_port_bound, unique_name, wait_for

SCENARIOS = Path(__file__).with_name("scenarios")
SIPP = "sipp"
_FATAL_EXIT_CODES = (254, 255)  # sipp exits -2 when it cannot bind, -1 on other fatal errors
GARBAGE = b"\x00\xff\xfeNOT SIP AT ALL\r\n\x80\x81\r\n\r\n"

_URI = re.compile(r"^sips?:(?:[^@;>]+@)?(?P<host>[^:;>]+)(?::(?P<port>\d+))?")


def uri_address(uri: str) -> tuple[str, int]:
    """(host, port) that a SIP URI points at; port 5060 when the URI has none."""
    match = _URI.match(uri)
    if not match:
        raise ValueError(f"not a SIP URI: {uri!r}")
    return match["host"], int(match["port"] or 5060)


@dataclass(frozen=True)
class SippResult:
    """How a sipp run ended: its exit code (0: every call went as scripted) and the
    final status code the request got (None when no final response came)."""

    returncode: int
    final_status: int | None


class Sipp:
    """One sipp process: ports, logs, start and guaranteed teardown (a context manager)."""

    def __init__(
        self,
        log_dir: Path,
        name: str,
        scenario: Sequence[str],
        *,
        remote: str | None = None,
        variables: Mapping[str, str] | None = None,
        options: Sequence[str] = (),
        rtp_echo: bool = False,
        ip: str = LOOPBACK,
        lifetime_s: int = 120,
        port: int = 0,
    ) -> None:
        self.ip = ip
        self.port = port or free_udp_port()
        # sipp's RTP echo binds media_port and media_port + 2 (audio and "video").
        self.media_port = free_udp_port(block=3) if rtp_echo else None
        self.log_dir = Path(log_dir)
        self.name = unique_name(self.log_dir, name, ".out")
        args = [SIPP, *scenario, "-i", ip, "-p", str(self.port), "-bind_local"]
        args += ["-cp", str(free_udp_port()), "-nostdin", "-timeout", f"{lifetime_s}s"]
        args += ["-trace_err", "-error_file", str(self.log_path("_errors.log"))]
        args += ["-trace_msg", "-message_file", str(self.log_path("_messages.log"))]
        args += ["-trace_shortmsg", "-shortmessage_file", str(self.log_path("_shortmessages.log"))]
        if self.media_port is not None:
            args += ["-mi", ip, "-mp", str(self.media_port), "-rtp_echo"]
        for key, value in (variables or {}).items():
            args += ["-set", key, value]
        args += [*options, *([remote] if remote else [])]
        self.args = args
        self._process: subprocess.Popen[bytes] | None = None

    def log_path(self, suffix: str) -> Path:
        """Path of one of this peer's log files, e.g. log_path("_errors.log")."""
        return self.log_dir / f"{self.name}{suffix}"

    def uri(self, user: str = "sipp") -> str:
        """SIP URI at which this sipp receives requests."""
        return f"sip:{user}@{self.ip}:{self.port}"

    def start(self, ready_timeout: float = 5.0) -> Sipp:
        """Launch sipp and return once its SIP port is bound."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(".out"), "wb") as out:
            self._process = subprocess.Popen(
                self.args, cwd=self.log_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        process = self._process
        try:
            wait_for(lambda: process.poll() is not None or udp_port_bound(self.port), ready_timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"sipp did not bind port {self.port}; see {self.log_path('.out')}") from None
        if process.returncode in _FATAL_EXIT_CODES:
            raise RuntimeError(f"sipp failed to start; see {self.log_path('.out')}")
        return self

    def result(self, timeout: float) -> SippResult:
        """Wait for sipp to finish its scenario (for UAC peers, run with -m)."""
        if self._process is None:
            raise RuntimeError("sipp was not started")
        try:
            returncode = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"sipp still running after {timeout} s; see {self.log_dir}") from None
        return SippResult(returncode, self.final_status())

    def run(self, timeout: float = 30.0) -> SippResult:
        """Start, wait for the end of the scenario, clean up: for one-shot UAC peers."""
        with self:
            return self.result(timeout)

    def final_status(self) -> int | None:
        """Last final status received in answer to the first request this sipp sent."""
        try:
            rows = [line.split("\t") for line in self.log_path("_shortmessages.log").read_text().splitlines()]
        except FileNotFoundError:
            return None
        # Columns: date, time, epoch, S(ent)/R(eceived), Call-ID, "CSeq:N METHOD", first line.
        rows = [row for row in rows if len(row) >= 7]
        first_cseq = next((row[5] for row in rows if row[3] == "S"), None)
        codes = [
            int(row[6].split()[1])
            for row in rows
            if row[3] == "R" and row[5] == first_cseq and row[6].startswith("SIP/2.0 ")
        ]
        finals = [code for code in codes if code >= 200]
        return finals[-1] if finals else None

    def stop(self) -> None:
        """Terminate sipp (kill if it lingers). Safe to call more than once."""
        if self._process is not None:
            stop_process(self._process)

    def __enter__(self) -> Sipp:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def received(peer: Sipp, method: str) -> list[str]:
    """Every `method` request `peer` has received, whole, from its message log (complete once it has stopped)."""
    messages = re.split(r"\n(?=-{10,} )", peer.log_path("_messages.log").read_text(errors="replace"))
    return [m for m in messages if re.search(rf"message received .*\n+{method} ", m)]


def echo_uas(log_dir: Path, *, ip: str = LOOPBACK, max_calls: int | None = None) -> Sipp:
    """A SIP phone that answers every INVITE (180, then 200 with PCMU) and echoes RTP back."""
    options = ["-m", str(max_calls)] if max_calls else []
    return Sipp(log_dir, "echo_uas", ["-sn", "uas"], options=options, rtp_echo=True, ip=ip)


def early_media_uas(log_dir: Path, *, ip: str = LOOPBACK) -> Sipp:
    """A SIP phone that sends 183 with SDP and echoes RTP at once, then answers 3 s later."""
    return Sipp(log_dir, "early_media_uas", ["-sf", str(SCENARIOS / "uas_early_media.xml")], rtp_echo=True, ip=ip)


def trying_uas(log_dir: Path, *, ip: str = LOOPBACK) -> Sipp:
    """A SIP phone that answers an INVITE with 100 Trying only, until the caller cancels it (one call)."""
    return Sipp(log_dir, "trying_uas", ["-sf", str(SCENARIOS / "uas_trying.xml"), "-m", "1"], ip=ip)


def reject_uas(log_dir: Path, status: int = 486, reason: str = "Busy Here", *, ip: str = LOOPBACK) -> Sipp:
    """A SIP phone that rejects every INVITE with `status` `reason` (404, 480, 486, 603...)."""
    if not 300 <= status <= 699:
        raise ValueError(f"a rejection needs a final non-2xx status, not {status}")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    scenario = log_dir / f"uas_reject_{status}.xml"
    text = (SCENARIOS / "uas_reject.xml").read_text()
    scenario.write_text(text.replace("SIP/2.0 486 Busy Here", f"SIP/2.0 {status} {reason}"))
    return Sipp(log_dir, f"reject_uas_{status}", ["-sf", str(scenario)], ip=ip)


def uac(
    log_dir: Path,
    target_uri: str,
    *,
    hold_ms: int = 1000,
    answer_timeout_s: float = 15.0,
    ip: str = LOOPBACK,
    from_user: str = "sipp",
) -> Sipp:
    """One call to `target_uri` from `from_user`; echoes the RTP it gets while answered, hangs up after `hold_ms`.

    `.run().final_status` is the final response to the INVITE, whatever it was, or
    None if none came within `answer_timeout_s`.
    """
    options = ["-d", str(hold_ms), "-recv_timeout", str(int(answer_timeout_s * 1000))]
    scenario = SCENARIOS / "uac_final.xml"
    if from_user != "sipp":
        log_dir.mkdir(parents=True, exist_ok=True)
        text = scenario.read_text().replace("From: <sip:sipp@", f"From: <sip:{from_user}@")
        scenario = log_dir / f"uac_from_{from_user.lstrip('+')}.xml"
        scenario.write_text(text)
    return _one_request(log_dir, "uac", str(scenario), target_uri, options, rtp_echo=True, ip=ip)


def refer_attempt(log_dir: Path, target_uri: str, refer_to: str, *, ip: str = LOOPBACK, port: int = 0) -> Sipp:
    """A call to `target_uri` that, a second after the answer, REFERs the gateway to `refer_to`; the
    scenario succeeds when the REFER gets 403 (a stranger's) or 202 (a trunk's: NOTIFYs are answered)
    and the gateway later ends the call with BYE. From `port` (default: a free one), to be known as a trunk."""
    scenario = ["-sf", str(SCENARIOS / "uac_refer.xml"), "-m", "1"]
    variables = {"ruri": target_uri, "refer_to": refer_to}
    remote = "{}:{}".format(*uri_address(target_uri))
    return Sipp(log_dir, "refer", scenario, remote=remote, variables=variables, rtp_echo=True, ip=ip, port=port)


def malformed_request(log_dir: Path, target_uri: str, *, ip: str = LOOPBACK) -> Sipp:
    """One OPTIONS to `target_uri` without From and with a non-numeric Max-Forwards.

    Run with -nd, so that a response other than 400 is recorded without sipp
    "aborting" the non-existent call with a BYE.
    """
    return _one_request(log_dir, "malformed", "malformed.xml", target_uri, ["-nd"], rtp_echo=False, ip=ip)


def _one_request(
    log_dir: Path, name: str, scenario: str, target_uri: str, options: list[str], *, rtp_echo: bool, ip: str
) -> Sipp:
    host, port = uri_address(target_uri)
    return Sipp(
        log_dir,
        name,
        ["-sf", str(SCENARIOS / scenario), "-m", "1"],
        remote=f"{host}:{port}",
        variables={"ruri": target_uri},
        options=options,
        rtp_echo=rtp_echo,
        ip=ip,
    )


def sip_request(
    method: str, target_uri: str, via: tuple[str, int], *, omit: Iterable[str] = (), headers: Mapping[str, str] | None = None
) -> bytes:
    """A minimal request with every mandatory header, minus those named in `omit`
    (e.g. {"Via"} or {"Call-ID"}) to make it malformed on purpose; `headers` replace
    or add to them (e.g. a To with a tag and a Route, to forge an in-dialog request)."""
    host, port = via
    tag = secrets.token_hex(6)
    fields = {
        "Via": f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{tag}",
        "Max-Forwards": "70",
        "From": f"<sip:probe@{host}:{port}>;tag={tag}",
        "To": f"<{target_uri}>",
        "Call-ID": f"{tag}@{host}",
        "CSeq": f"1 {method}",
        "Content-Length": "0",
    }
    omitted = set(omit)
    if omitted - set(fields):
        raise ValueError(f"cannot omit unknown header(s) {sorted(omitted - set(fields))}")
    fields.update(headers or {})
    lines = [f"{method} {target_uri} SIP/2.0"] + [f"{k}: {v}" for k, v in fields.items() if k not in omitted]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_udp(target_uri: str, payload: bytes, *, reply_timeout: float = 1.0) -> bytes | None:
    """Send one datagram (e.g. GARBAGE) to where `target_uri` points; the first reply, if any."""
    with _socket_towards(target_uri) as sock:
        return _exchange(sock, payload, reply_timeout, final_only=False)


def send_request(
    target_uri: str,
    *,
    method: str = "OPTIONS",
    omit: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
    proxy: str | None = None,
    reply_timeout: float = 1.0,
) -> int | None:
    """Send sip_request(...) from a fresh UDP socket, to `proxy` (host:port) if given, else
    where `target_uri` points; the final status it got, or None.

    Use OPTIONS, or a request the peer will reject: nothing here ACKs or ends a dialog.
    """
    return send_built(
        f"sip:{proxy}" if proxy else target_uri,
        lambda via: sip_request(method, target_uri, via, omit=omit, headers=headers),
        reply_timeout=reply_timeout,
    )


def send_built(target_uri: str, build: Callable[[tuple[str, int]], bytes], *, reply_timeout: float = 1.0) -> int | None:
    """Send the request ``build`` makes for the socket's own (host, port), for its Via,
    to where `target_uri` points; the final status it got, or None."""
    with _socket_towards(target_uri) as sock:
        reply = _exchange(sock, build(sock.getsockname()), reply_timeout, final_only=True)
    return int(reply.split()[1]) if reply else None


def _socket_towards(target_uri: str) -> socket.socket:
    """A UDP socket connected to the URI's address (connecting sends nothing; it picks
    the source address that the Via header must name)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect(uri_address(target_uri))
    except OSError:
        sock.close()
        raise
    return sock


def _exchange(sock: socket.socket, payload: bytes, timeout: float, *, final_only: bool) -> bytes | None:
    """Send `payload`; return the first reply (the first final response if `final_only`)."""
    deadline = time.monotonic() + timeout
    sock.send(payload)
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            reply = sock.recv(65535)
            if not final_only or re.match(rb"SIP/2\.0 [2-6]\d\d ", reply):
                return reply
    except (socket.timeout, ConnectionRefusedError):  # refused: ICMP port unreachable
        pass
    return None
