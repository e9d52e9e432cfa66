"""Kamailio (5.6) as a real SIP trunk provider for integration tests: a registrar and
proxy with digest authentication, everything in memory, no database.

Each instance gets its own directory in `workdir` holding the generated
kamailio.cfg (from kamailio.cfg.template next to this file), kamailio.log (kept
across restarts), the pid file and the control socket. It listens on UDP and TCP on
one kernel-picked port of 127.0.0.1 (or the `ip` given), kept by restart(); given
`tls` (TlsFiles), on TLS too, on another (tls_port; needs kamailio-tls-modules).

    with Kamailio(tmp_path, {"gw": "secret", "1001": "pw1"}, routes={"500": echo.uri("echo")}) as trunk:
        ...point the gateway's trunk at trunk.uri, user "gw", password "secret"...
        trunk.wait_registered("gw")
        ...dial 500 (relayed to the echo UAS) or 1001 (a phone registered with
        register_phone(phone, trunk, "1001"))...

What it does (see the template for the details):
  REGISTER  401 (qop=auth), then 200 with the contact stored for the Expires asked
            for; wrong password, unknown user, or an auth user other than the To
            user: 403 (after the challenge, never instead of it).
  INVITE    `respond` set: that final response at once, before any challenge.
            Otherwise 407 (qop=auth), then to the contact registered for the R-URI's
            user, else to routes[user], else 404. Any authenticated user may call.
  dialog    Record-Route on the INVITE; later requests loose-routed through it.
  OPTIONS   to the server itself (no user part): 200, e.g. for trunk keepalives.

Registrations live in memory: restart() forgets them, as a crashed provider would.
State can be read from the log (events(), register_count()) or from usrloc through
kamcmd (contacts(), registered()).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .net import LOOPBACK, free_port, free_tcp_port, stop_process, unique_name, wait_for
from .sipp import send_request, uri_address

if TYPE_CHECKING:
    from .baresip import Baresip

KAMAILIO = "kamailio"
KAMCMD = "kamcmd"
TEMPLATE = Path(__file__).with_name("kamailio.cfg.template")
CTL_SOCKET = "kamailio_ctl"  # relative to the instance directory (Kamailio runs with -w there)
REASONS = {
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    500: "Server Internal Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    603: "Decline",
}
_USER = re.compile(r"^[A-Za-z0-9_.+-]+$")  # safe inside $sht(table=>KEY) and a SIP user part
_UNSAFE = re.compile(r'["\\$\x00-\x1f]')  # would break out of a Kamailio string literal
_HARNESS_LINE = re.compile(r"HARNESS (?P<kind>[A-Z-]+) (?P<fields>.*)$")
_FIELD = re.compile(r'(\w+)=("[^"]*"|\S*)')
_CONTACT = re.compile(r"^\s*Address: (?P<uri>\S+)\s*\n\s*Expires: (?P<expires>\S+)", re.MULTILINE)


@dataclass(frozen=True)
class TlsFiles:
    """What a TLS-speaking Kamailio presents (`cert`, `key`) and trusts when it connects out (`ca`)."""

    cert: Path
    key: Path
    ca: Path

    def kamailio_config(self) -> str:
        """Its tls.cfg: TLS 1.2 and newer; as a client it verifies the server's chain against `ca`."""
        return (
            f"[server:default]\nmethod = TLSv1.2+\ncertificate = {self.cert}\nprivate_key = {self.key}\n"
            "verify_certificate = no\nrequire_certificate = no\n\n"
            f"[client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\nca_list = {self.ca}\n"
        )


class KamailioError(RuntimeError):
    """Kamailio did not start, or kamcmd failed."""


@dataclass(frozen=True)
class Event:
    """One HARNESS line of the log: `kind` (REQUEST, REGISTER, REGISTERED, AUTH-FAILED,
    ROUTE, RESPOND) and its key=value fields, unquoted."""

    kind: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Contact:
    """A registered contact as usrloc holds it; `expires` is seconds left."""

    uri: str
    expires: int


class Kamailio:
    """One Kamailio process: config, ports, logs, start/restart and guaranteed teardown."""

    def __init__(
        self,
        workdir: Path,
        users: Mapping[str, str],
        *,
        realm: str = "gateway.test",
        ip: str = LOOPBACK,
        port: int | None = None,
        routes: Mapping[str, str] | None = None,
        respond: int | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        for user, password in users.items():
            _check(user, password)
        for number, target in (routes or {}).items():
            _check(number, target)
            uri_address(target)  # raises ValueError unless it is a SIP URI
        if respond is not None and not 300 <= respond <= 699:
            raise ValueError(f"respond must be a final non-2xx status, not {respond}")
        if not _USER.match(realm):
            raise ValueError(f"unsupported realm {realm!r}")
        self.users, self.routes = dict(users), dict(routes or {})
        self.realm, self.ip, self.respond, self.tls = realm, ip, respond, tls
        self._fixed_port = port is not None
        self._port = port or 0
        self.tls_port = 0
        self.dir = Path(workdir) / unique_name(Path(workdir), "kamailio")
        self.dir.mkdir(parents=True)
        self.log_path = self.dir / "kamailio.log"
        self.config_path = self.dir / "kamailio.cfg"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """UDP and TCP port it listens on (0 until the first start)."""
        return self._port

    @property
    def uri(self) -> str:
        """SIP URI of the server itself: the registrar and outbound proxy address."""
        return f"sip:{self.ip}:{self.port}"

    @property
    def tls_address(self) -> str:
        """ip:port where it takes SIP over TLS (with `tls` only)."""
        return f"{self.ip}:{self.tls_port}"

    def user_uri(self, user: str) -> str:
        """URI that reaches `user` through this proxy (a number to dial, or an AoR)."""
        return f"sip:{user}@{self.ip}:{self.port}"

    # --- process ------------------------------------------------------------------

    def start(self, ready_timeout: float = 10.0, attempts: int = 3) -> Kamailio:
        """Launch Kamailio and return once it answers OPTIONS; a kernel-picked port
        taken meanwhile by someone else is replaced by a fresh one (not a fixed one)."""
        if self._process is not None and self._process.poll() is None:
            raise KamailioError("Kamailio is already running")
        for _ in range(attempts):
            if not self._fixed_port:
                self._port = free_port(udp=True, tcp=True)
                self.tls_port = free_tcp_port() if self.tls else 0
            if self._launch(ready_timeout):
                self._fixed_port = True  # restart() must come back on the same port
                return self
            if self._fixed_port:
                break
        raise KamailioError(f"Kamailio could not bind port {self.port}; see {self.log_path}")

    def _launch(self, ready_timeout: float) -> bool:
        """Run Kamailio once: True when ready, False if its port was taken."""
        self.config_path.write_text(self._config())
        start_of_run = self.log_path.stat().st_size if self.log_path.exists() else 0
        args = [KAMAILIO, "-DD", "-E", "-f", str(self.config_path), "-P", str(self.dir / "kamailio.pid")]
        args += ["-Y", str(self.dir), "-w", str(self.dir)]
        with open(self.log_path, "ab") as log:
            # Its own session: Kamailio forks workers, and stop() can then reach any
            # the main process left behind, by this group's id.
            self._process = process = subprocess.Popen(
                args,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(
                lambda: process.poll() is not None or send_request(self.uri, reply_timeout=0.2) == 200, ready_timeout
            )
        except TimeoutError:
            self.stop()
            raise KamailioError(f"Kamailio did not answer OPTIONS on {self.uri}; see {self.log_path}") from None
        if process.poll() is None:
            return True
        self.stop()
        with open(self.log_path, "rb") as log:
            log.seek(start_of_run)
            if b"Address already in use" in log.read():
                return False
        raise KamailioError(f"Kamailio exited at start with {process.returncode}; see {self.log_path}")

    def _config(self) -> str:
        tables = [f'\t$sht(users=>{user}) = "{password}";' for user, password in self.users.items()]
        tables += [f'\t$sht(routes=>{number}) = "{target}";' for number, target in self.routes.items()]
        fields = {
            "IP": self.ip,
            "PORT": str(self.port),
            "REALM": self.realm,
            "CTL_SOCKET": CTL_SOCKET,
            "RESPOND_CODE": str(self.respond or 0),
            "RESPOND_REASON": REASONS.get(self.respond or 0, "Rejected By Test Trunk"),
            "TABLES": "\n".join(tables) or "\t;",
            "DEFINES": "#!define WITH_TLS" if self.tls else "",
            "TLS_PORT": str(self.tls_port),
            "TLS_CONFIG": str(self.dir / "tls.cfg"),
        }
        if self.tls is not None:
            (self.dir / "tls.cfg").write_text(self.tls.kamailio_config())
        text = TEMPLATE.read_text()
        for name, value in fields.items():
            text = text.replace("{{" + name + "}}", value)
        return text

    def stop(self) -> None:
        """Stop Kamailio and all its workers (SIGTERM, SIGKILL if it lingers). Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process)
        try:  # workers orphaned if the main process had to be killed
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def restart(self) -> Kamailio:
        """Stop and start again on the same port, forgetting every registration."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        """Whether the main Kamailio process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the main Kamailio process (also its workers' process group)."""
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> Kamailio:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- state --------------------------------------------------------------------

    def events(self, kind: str | None = None, **match: str) -> list[Event]:
        """HARNESS lines logged so far (across restarts), oldest first, optionally only
        those of `kind` whose fields equal `match`, e.g. events("ROUTE", number="500")."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            parsed = _HARNESS_LINE.search(line)
            if not parsed or (kind is not None and parsed["kind"] != kind):
                continue
            fields = {key: value.strip('"') for key, value in _FIELD.findall(parsed["fields"])}
            if all(fields.get(key) == value for key, value in match.items()):
                found.append(Event(parsed["kind"], fields))
        return found

    def register_count(self, user: str) -> int:
        """REGISTER requests received for `user` (the To user), challenged or not: a
        client that retries wrong credentials in a loop shows up here."""
        return len(self.events("REGISTER", user=user))

    def rpc(self, *command: str) -> str:
        """Output of one kamcmd command over the control socket, e.g. rpc("ul.dump")."""
        if not self.running:
            raise KamailioError("Kamailio is not running")
        done = subprocess.run(
            [KAMCMD, "-s", f"unix:{CTL_SOCKET}", *command],
            check=False,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if done.returncode != 0:
            raise KamailioError(f"kamcmd {' '.join(command)}: {done.stderr or done.stdout}")
        return done.stdout

    def contacts(self, user: str) -> list[Contact]:
        """Unexpired contacts registered for `user`, from usrloc (kamcmd ul.lookup)."""
        output = self.rpc("ul.lookup", "location", f"s:{user}")  # s: keeps "+49..." a string
        if "AOR not found" in output or "AOR has no contacts" in output:  # kamcmd still exits 0
            return []
        if output.startswith("error"):
            raise KamailioError(f"ul.lookup location {user}: {output}")
        found = []
        for match in _CONTACT.finditer(output):
            expires = match["expires"]
            seconds = 2**31 if expires == "permanent" else int(expires) if expires.lstrip("-").isdigit() else 0
            if seconds > 0:
                found.append(Contact(match["uri"], seconds))
        return found

    def registered(self, user: str) -> bool:
        """Whether `user` has at least one unexpired contact."""
        return bool(self.contacts(user))

    def wait_registered(self, user: str, timeout: float = 10.0) -> list[Contact]:
        """Contacts of `user` once there is at least one; TimeoutError otherwise."""
        return wait_for(lambda: self.contacts(user), timeout, interval=0.1)

    # --- clients ------------------------------------------------------------------

    def register(
        self,
        user: str,
        contact: str,
        *,
        password: str | None = None,
        auth_user: str | None = None,
        expires: int = 60,
        timeout: float = 2.0,
    ) -> int | None:
        """REGISTER `contact` as `user` from Python, answering the digest challenge as
        `auth_user` (default: `user`) with `password` (default: that user's own); the
        final status, None if none came.

        A third-party registration: it puts a peer that cannot register itself (e.g.
        a sipp echo UAS) behind a number. expires=0 removes the contact.
        """
        auth_user = auth_user or user
        secret = self.users.get(auth_user, "") if password is None else password
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((self.ip, self.port))
            call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
            request = _register_request(self, sock.getsockname(), user, contact, expires, call_id, tag, 1)
            reply = _transact(sock, request, timeout)
            if reply is None or _status(reply) != 401:
                return _status(reply) if reply else None
            challenge = _header(reply, "WWW-Authenticate")
            authorization = _digest(challenge, auth_user, secret, "REGISTER", f"sip:{self.ip}:{self.port}")
            request = _register_request(
                self, sock.getsockname(), user, contact, expires, call_id, tag, 2, authorization
            )
            reply = _transact(sock, request, timeout)
        return _status(reply) if reply else None


class SilentSipPort:
    """A UDP port that takes SIP requests and never answers: a trunk that times out.

    Being bound, it also keeps the kernel from answering ICMP port unreachable,
    which a client would take as a fast failure instead of a timeout.
    """

    def __init__(self, ip: str = LOOPBACK) -> None:
        self.ip = ip
        self.port = 0
        self._sock: socket.socket | None = None
        self._received: list[bytes] = []

    @property
    def uri(self) -> str:
        """SIP URI of the silent "server"."""
        return f"sip:{self.ip}:{self.port}"

    def start(self) -> SilentSipPort:
        """Bind a kernel-picked port."""
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((self.ip, 0))
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        return self

    def received(self) -> list[bytes]:
        """Every datagram that arrived so far (read from the socket's queue)."""
        while self._sock is not None:
            try:
                self._received.append(self._sock.recv(65535))
            except BlockingIOError:
                break
        return list(self._received)

    def stop(self) -> None:
        """Close the socket. Safe to call more than once."""
        if self._sock is not None:
            self.received()
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SilentSipPort:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def baresip_account(
    kamailio: Kamailio, user: str, *, password: str | None = None, regint: int = 60, mediaenc: str = ""
) -> str:
    """baresip account line registering `user` at `kamailio` (password: the user's own).

    baresip 1.0.0 sends REGISTER to the AoR's host and port, re-registers before
    regint runs out, and answers 401/407 with auth_user/auth_pass. `mediaenc`: as
    the phone's own account (SRTP).
    """
    secret = kamailio.users.get(user, "") if password is None else password
    return (
        f"<sip:{user}@{kamailio.ip}:{kamailio.port}>;auth_user={user};auth_pass={secret};"
        f"regint={regint};answermode=auto;audio_codecs=PCMU,PCMA{f';mediaenc={mediaenc}' if mediaenc else ''}"
    )


def register_phone(
    phone: Baresip,
    kamailio: Kamailio,
    user: str,
    *,
    password: str | None = None,
    regint: int = 60,
    timeout: float = 10.0,
) -> str:
    """Give a running baresip a second account, `user` at `kamailio`, and make it the
    one that dials; returns its REGISTER_OK or REGISTER_FAIL event's "param".

    The phone keeps its first, unregistered account too: calls to phone.uri still
    reach it directly.
    """
    phone.command("uanew", baresip_account(kamailio, user, password=password, regint=regint, mediaenc=phone.mediaenc))
    phone.command("uafind", f"sip:{user}@{kamailio.ip}:{kamailio.port}")
    deadline = time.monotonic() + timeout
    while True:
        for event in phone.events:
            if event["type"] in ("REGISTER_OK", "REGISTER_FAIL") and f"sip:{user}@" in event.get("accountaor", ""):
                return str(event.get("param", ""))
        if time.monotonic() > deadline:
            raise TimeoutError(f"baresip did not register {user} within {timeout} s; see {phone.log_path}")
        time.sleep(0.05)


# --- a minimal digest-authenticating REGISTER client ------------------------------


def _check(name: str, value: str) -> None:
    if not _USER.match(name):
        raise ValueError(f"unsupported user or number {name!r}: use letters, digits and _.+-")
    if _UNSAFE.search(value):
        raise ValueError(f"unsupported value for {name!r}: no quotes, backslashes, $ or control characters")


def _register_request(
    kamailio: Kamailio,
    local: tuple[str, int],
    user: str,
    contact: str,
    expires: int,
    call_id: str,
    tag: str,
    cseq: int,
    authorization: str | None = None,
) -> bytes:
    host, port = local
    aor = f"sip:{user}@{kamailio.realm}"
    lines = [
        f"REGISTER sip:{kamailio.ip}:{kamailio.port} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};rport;branch=z9hG4bK{secrets.token_hex(8)}",
        "Max-Forwards: 70",
        f"From: <{aor}>;tag={tag}",
        f"To: <{aor}>",
        f"Call-ID: {call_id}@{host}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <{contact}>",
        f"Expires: {expires}",
        *([f"Authorization: {authorization}"] if authorization else []),
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _transact(sock: socket.socket, request: bytes, timeout: float) -> bytes | None:
    """Send `request` (resent every 0.5 s, as over UDP); the first final response."""
    deadline = time.monotonic() + timeout
    resend = 0.0
    while (remaining := deadline - time.monotonic()) > 0:
        if time.monotonic() >= resend:
            sock.send(request)
            resend = time.monotonic() + 0.5
        sock.settimeout(min(remaining, max(resend - time.monotonic(), 0.01)))
        try:
            reply = sock.recv(65535)
        except TimeoutError:
            continue
        except ConnectionRefusedError:
            return None
        if _status(reply) >= 200:
            return reply
    return None


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def _header(reply: bytes, name: str) -> str:
    for line in reply.decode(errors="replace").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    raise ValueError(f"no {name} header in {reply[:200]!r}")


def _digest(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    """Authorization header value answering an MD5 digest challenge (RFC 2617; qop=auth)."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.partition(" ")[2]))
    realm, nonce = params["realm"], params["nonce"]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = f'username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm=MD5'
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        return f'Digest {fields}, response="{response}", qop=auth, nc={nc}, cnonce="{cnonce}"'
    return f'Digest {fields}, response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
