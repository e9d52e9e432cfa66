"""The SIP front door: Kamailio before the media-engine workers.

Trunks, phones and Asterisk see one SIP address, the front's.  The gateway
either starts Kamailio itself (a managed child written from
:file:`front.cfg` and the gateway's configuration) or uses one that runs
elsewhere, shared by several gateway hosts.  Either way it steers it through
Kamailio's JSON-RPC: workers join and leave the dispatcher sets, a full
worker is taken out of rotation, a dead worker's dialogs get their BYE, and
who is signed in on this host is published in the ``presence`` table so an
inbound call can be sent to the right host, and, with ``register_users``,
registered at the PBX (:mod:`gateway.userregistration`).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp

from . import siptls
from .background import Background
from .config import Config, sip_tls, user_registrar
from .hostaddr import WILDCARD, kernel_port, own_address, own_addresses
from .userregistration import Rpc, UserRegistrations

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("front.cfg")
ALL_WORKERS = 1
"""Dispatcher set of every worker of every host: where new calls go."""
PRESENCE_SECONDS = 90
_REFRESH_SECONDS = PRESENCE_SECONDS / 3
_RPC_TIMEOUT = aiohttp.ClientTimeout(total=5)
SECRET_HEADER = "X-Gateway-Secret"
"""Carries the front's RPC secret; front.cfg answers 403 to a JSON-RPC request without it."""
_INACTIVE = 1
"""dispatcher destination flag: in the list, but given no calls."""
_UACREG_TABLES = {
    "version": "id(int,auto) table_name(string) table_version(int)\n0:uacreg:5\n",
    "uacreg": "id(int,auto) l_uuid(string) l_username(string) l_domain(string) r_username(string) r_domain(string)"
    " realm(string) auth_username(string) auth_password(string) auth_ha1(string) auth_proxy(string) expires(int)"
    " flags(int) reg_delay(int) contact_addr(string) socket(string)\n",
}
"""db_text files of the uac module's (empty) table: it needs one, the gateway adds its records over JSON-RPC."""
_DIALOG_ANSWERED = (3, 4)
"""Kamailio dialog states of an answered call (ACKed or not); 1 and 2 are still ringing, 5 is over."""


class FrontError(OSError):
    """The front cannot be started or does not answer."""


def host_set(host_id: int) -> int:
    """Dispatcher set of one gateway host's workers (where its signed-in users are)."""
    return 100 + host_id


class Front:
    """One Kamailio front: its addresses, perhaps its process, and the RPCs the gateway needs."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._set = host_set(config.front.host_id)
        self._process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._users: set[str] = set()
        self._background = Background(log, "SIP front request")
        self._refresher: asyncio.Task[None] | None = None
        self._dispatcher = asyncio.Lock()
        """Kamailio refuses a dispatcher change while another one is being applied."""
        self.secret = config.front.rpc_secret or secrets.token_urlsafe(24)
        """Whoever reaches the JSON-RPC port may end calls and steer new ones: it must know this."""
        self.tls_port, self.tls_address = 0, ""
        if config.front.rpc_url:
            self.address = self.proxy = config.front.address
            self.rpc_url = config.front.rpc_url
        else:
            self._own_addresses(config)
        self.registrations = _registrations(config, self.address, self.tls_address, self.rpc)
        """Each signed-in user's own registration at the PBX (a trunk with ``register_users``), if wanted."""

    def _own_addresses(self, config: Config) -> None:
        """Where our own Kamailio listens and takes JSON-RPC."""
        sip, engines = config.sip, config.engines
        bind = sip.listen if sip.listen not in WILDCARD else "0.0.0.0"
        self.port = sip.port or kernel_port(bind)
        public = sip.public_host or (sip.listen if sip.listen not in WILDCARD else own_address())
        self.address = f"{public}:{self.port}"
        """Where trunks and phones send SIP: the gateway's public SIP address."""
        self.tls_port = (sip.tls_port or kernel_port(bind)) if sip_tls(config) else 0
        self.tls_address = f"{public}:{self.tls_port}" if self.tls_port else ""
        """Where they send SIP over TLS ("" without TLS)."""
        self.proxy = f"{engines.internal_host if sip.listen in WILDCARD else sip.listen}:{self.port}"
        """Where the workers send their requests."""
        self._rpc_port = config.front.rpc_port or kernel_port(engines.internal_host)
        self.rpc_url = f"http://{engines.internal_host}:{self._rpc_port}/RPC"

    @property
    def managed(self) -> bool:
        return not self._config.front.rpc_url

    # -- life cycle -------------------------------------------------------------

    async def start(self, workdir: Path) -> None:
        """Start our own Kamailio (when managed) and wait until its RPC answers."""
        workdir = workdir.absolute()  # Kamailio runs in it: a relative path would be taken twice
        self._session = aiohttp.ClientSession(timeout=_RPC_TIMEOUT)
        if self.managed:
            self._process = _launch(self.write(workdir), workdir)
        deadline = time.monotonic() + 15
        while True:
            try:
                await self.rpc("core.version")
                break
            except FrontError:
                if (self._process is not None and self._process.poll() is not None) or time.monotonic() > deadline:
                    await self.stop()
                    if self.managed:
                        raise FrontError(f"Kamailio did not start; see {workdir / 'kamailio.log'}") from None
                    raise FrontError(f"the SIP front at {self.rpc_url} does not answer") from None
                await asyncio.sleep(0.1)
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_presence())
        log.info("SIP front %s (%s)", self.address, "Kamailio started by the gateway" if self.managed else self.rpc_url)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for user in list(self._users):
            self.signed_out(user)
        if self.registrations is not None:
            await self.registrations.close()
        await self._background.wait()
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            await asyncio.get_running_loop().run_in_executor(None, _terminate, self._process)
            self._process = None

    def write(self, workdir: Path) -> Path:
        """Kamailio's configuration and its (empty) dispatcher list in ``workdir``; returns the former."""
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "dispatcher.list").write_text("")
        if user_registrar(self._config):
            (workdir / "uacreg").mkdir(exist_ok=True)
            for name, text in _UACREG_TABLES.items():
                (workdir / "uacreg" / name).write_text(text)
        if self.tls_port:
            (workdir / "tls.cfg").write_text(siptls.kamailio_tls_config(self._config, self._tls_trunk_addresses()))
        config_path = workdir / "kamailio.cfg"
        config_path.touch(mode=0o600)
        config_path.chmod(0o600)  # it holds the RPC secret (touch's mode applies to a new file only)
        config_path.write_text(self.kamailio_config(workdir))
        return config_path

    def kamailio_config(self, workdir: Path) -> str:
        """The front's configuration: generated values, :file:`front.cfg`, the trunks' route."""
        sip, front = self._config.sip, self._config.front
        advertise = f" advertise {self.address}" if sip.public_host else ""
        values = {
            "FRONT_ADDRESS": self.address,
            "FRONT_TLS_ADDRESS": self.tls_address,
            "TLS_CONFIG": workdir / "tls.cfg",
            "PIKE_REQUESTS": front.pike_requests,
            "SOURCE_INVITES": front.source_invites_per_second,
            "PRESENCE_SECONDS": PRESENCE_SECONDS,
            "NO_RESPONSE_MS": round(sip.no_response_timeout * 1000),
            "RPC_PORT": self._rpc_port,
            "RPC_SECRET": self.secret,
            "DISPATCHER_LIST": workdir / "dispatcher.list",
            "UACREG_DB": workdir / "uacreg",
        }
        # One socket per address, never 0.0.0.0: Kamailio writes the socket's
        # address into Record-Route and picks the socket facing each peer.
        hosts = [sip.listen] if sip.listen not in WILDCARD else own_addresses()
        lines = ["#!KAMAILIO"]
        for host in hosts:
            lines += [f"listen={proto}:{host}:{self.port}{advertise}" for proto in ("udp", "tcp")[: 1 + sip.tcp]]
            if self.tls_port:
                lines.append(f"listen=tls:{host}:{self.tls_port}{f' advertise {self.tls_address}' if sip.public_host else ''}")
        lines.append(f"listen=tcp:{self._config.engines.internal_host}:{self._rpc_port}")
        if self.tls_port:
            lines.append("#!define WITH_TLS")
        if user_registrar(self._config):
            lines.append("#!define WITH_USER_REGISTRATION")
        lines += [f'#!substdef "!{name}!{value}!g"' for name, value in values.items()]
        routes = _trunk_route(self._config)
        if self.tls_port:
            routes += siptls.trunk_names_route(self._config, self._tls_trunk_addresses())
        return "\n".join([*lines, TEMPLATE.read_text(), *routes]) + "\n"

    def _tls_trunk_addresses(self) -> dict[str, list[str]]:
        return {trunk.name: _addresses(trunk.hostname) for trunk in siptls.tls_trunks(self._config)}

    # -- workers ----------------------------------------------------------------

    async def add_worker(self, address: str) -> None:
        """Known before it starts, so its first requests (a REGISTER) are taken as a worker's;
        it gets calls once :meth:`set_active` says so."""
        async with self._dispatcher:
            for group in (ALL_WORKERS, self._set):
                await self.rpc("dispatcher.add", group, f"sip:{address}", _INACTIVE)

    async def remove_worker(self, address: str) -> None:
        async with self._dispatcher:
            for group in (ALL_WORKERS, self._set):
                await self.rpc("dispatcher.remove", group, f"sip:{address}")

    async def set_active(self, address: str, active: bool) -> None:
        """Whether new calls go to a worker: not while it is full, dead or starting."""
        async with self._dispatcher:
            for group in (ALL_WORKERS, self._set):
                await self.rpc("dispatcher.set_state", "a" if active else "i", group, f"sip:{address}")

    async def end_dialogs(self, address: str) -> int:
        """End the SIP side of every call a dead worker at ``address`` carried.

        Answered calls get BYE at both ends.  A call still ringing gets its
        INVITE answered 500 (the worker was called) or cancelled (the worker
        was calling); otherwise the caller would wait for the INVITE timer.
        """
        ended = 0
        for dialog in await self.rpc("dlg.list") or []:
            variables = {key: value for pair in dialog.get("variables", []) for key, value in pair.items()}
            if variables.get("worker") != address or dialog["state"] > max(_DIALOG_ANSWERED):
                continue
            callid, cseq = dialog["call-id"], str(dialog["caller"]["cseq"])
            if dialog["state"] in _DIALOG_ANSWERED:
                await self.rpc("dlg.end_dlg", dialog["h_entry"], dialog["h_id"])
            elif variables.get("worker_is") == "callee":
                await self.rpc("tm.reply_callid", 500, "Media Engine Stopped", callid, cseq, "")
            else:
                await self.rpc("tm.cancel", callid, cseq)
            ended += 1
        return ended

    def spawn(self, work: Awaitable[Any]) -> None:
        """Run an RPC in the background; its failure is logged, not raised."""
        self._background.spawn(work)

    # -- presence (control.Presence) ----------------------------------------------

    def signed_in(self, user: str) -> None:
        self._users.add(user)
        self.spawn(self.rpc("htable.sets", "presence", user, str(self._set)))
        if self.registrations is not None:
            self.registrations.signed_in(user)

    def signed_out(self, user: str) -> None:
        self._users.discard(user)
        self.spawn(self.rpc("htable.delete", "presence", user))
        if self.registrations is not None:
            self.registrations.signed_out(user)

    async def _refresh_presence(self) -> None:
        """Entries expire after PRESENCE_SECONDS, so a host that vanished stops getting calls."""
        while True:
            await asyncio.sleep(_REFRESH_SECONDS)
            for user in list(self._users):
                self.spawn(self.rpc("htable.sets", "presence", user, str(self._set)))

    # -- conference rooms (rooms.RoomRouter) ------------------------------------------

    def room_opened(self, number: str, engine: str) -> None:
        """INVITEs to ``number`` go to the worker at ``engine``, where the room is mixed."""
        self.spawn(self.rpc("htable.sets", "rooms", number, engine))

    def room_closed(self, number: str) -> None:
        self.spawn(self.rpc("htable.delete", "rooms", number))

    # -- inside -----------------------------------------------------------------

    async def rpc(self, method: str, *params: Any) -> Any:
        assert self._session is not None
        request = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
        try:
            async with self._session.post(self.rpc_url, json=request, headers={SECRET_HEADER: self.secret}) as response:
                if response.status == 403:
                    raise FrontError(f"{method}: {self.rpc_url} refused this gateway's front.rpc_secret")
                reply = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise FrontError(f"{method}: no answer from {self.rpc_url}: {exc}") from None
        if "error" in reply:
            raise FrontError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result")


def _registrations(config: Config, address: str, tls_address: str, rpc: Rpc) -> UserRegistrations | None:
    """The PBX sends a user's calls to their Contact: the front's TLS address for a PBX reached over TLS."""
    trunk = user_registrar(config)
    if trunk is None:
        return None
    contact = f"{tls_address};transport=tls" if trunk.transport == "tls" and tls_address else address
    return UserRegistrations(config, rpc, contact)


def _trunk_route(config: Config) -> list[str]:
    """Trunks are exempt from the flood limits: a carrier sends many calls from one address."""
    hosts = {trunk.hostname for trunk in config.plan.trunks.values()}
    addresses = sorted({address for host in hosts for address in _addresses(host)})
    checks = [f'\tif ($si == "{address}") return 1;' for address in addresses]
    return ["route[FROM_TRUNK] {", *checks, "\treturn -1;", "}"]


def _addresses(host: str) -> list[str]:
    """A trunk host's IPv4 addresses."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        log.warning("trunk host %s does not resolve: the front treats it like any other source", host)
        return []
    return sorted({str(info[4][0]) for info in infos})


def _launch(config_path: Path, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
    if not Path(binary).exists():
        raise FrontError("the SIP front needs Kamailio (Debian package kamailio); it is not installed")
    args = [binary, "-DD", "-E", "-f", str(config_path), "-Y", str(workdir), "-w", str(workdir)]
    args += ["-P", str(workdir / "kamailio.pid")]
    with open(workdir / "kamailio.log", "ab") as output:
        return subprocess.Popen(
            args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )


def _die_with_parent() -> None:
    """Kamailio must not outlive a gateway that was killed (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    try:
        process.terminate()
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
