"""The gateway's configuration: a TOML file, defaults that work with no file.

Validation happens once, at start: an unknown key, a wrong type or a bad
value stops the gateway with a message naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import ssl
import sys
from pathlib import Path
from typing import Any

from .dialplan import Dialplan, DialplanError, Trunk, load_plan

from . import apitokens
from .contacts import Contact, ContactError, contact
from .passwords import is_password_hash

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TIMER_B = 32.0
"""RFC 3261's INVITE timeout (64 x T1): pjsip ends a silent INVITE with 408 by then whatever we configure."""
PJSUA_ACCOUNTS = 8
"""pjsua2-python's PJSUA_MAX_ACC: each engine holds its local account and one per trunk, and pjsua
aborts the whole process (an assertion) on one more."""


class ConfigError(Exception):
    """A configuration problem, worded for the operator."""


@dataclasses.dataclass
class HttpConfig:
    """The page, its WebSocket and /health, facing whoever can reach the port."""

    listen: str = "0.0.0.0"
    port: int = 8443
    tls: bool = True
    allowed_origins: list[str] = dataclasses.field(default_factory=list)
    """Other page origins (``https://host:port``) whose WebSocket is accepted; the page's own always is."""
    max_sockets: int = 1000
    """WebSockets open at once; more get 503."""
    max_sockets_per_source: int = 20
    """WebSockets open at once from one address; more get 429."""
    sign_in_timeout: float = 20.0
    """Seconds a WebSocket may stay open without signing in."""
    sign_in_delay: float = 1.0
    """Seconds a user name or address waits after a failed sign-in, doubling with each failure."""
    sign_in_lockout_after: int = 5
    """Failed sign-ins in a row after which the name or address waits ``sign_in_lockout``."""
    sign_in_lockout: float = 300.0
    password_checks: int = 2
    """Password checks (scrypt, tens of ms of CPU each) running at once; more wait their turn."""
    status_token: str = ""
    """Bearer token that shows /health's details from anywhere; empty: none does."""
    status_from: list[str] = dataclasses.field(default_factory=lambda: ["127.0.0.1", "::1"])
    """Addresses or networks that see /health's details without a token."""


@dataclasses.dataclass
class SipConfig:
    listen: str = "0.0.0.0"
    port: int = 5060
    tcp: bool = True
    public_host: str = ""
    rtp_port: int = 4000
    max_calls: int = 4
    media_timeout: float = 15.0
    max_invites_per_second: float = 25.0
    register_retry: float = 30.0
    failover_timeout: float = 5.0
    """Seconds a target may take to ring (180/183) before the next target of a failover list is tried."""
    no_response_timeout: float = 4.0
    """Seconds an INVITE may go without any response, not even 100 Trying, before the call ends as
    "not responding" (or the next target is tried): SIP's own timeout (Timer B) is 32 s."""
    log_level: int = 1
    tls: bool = False
    """Take SIP over TLS on ``tls_port`` (the front terminates it); on by itself once a trunk uses TLS."""
    tls_port: int = 5061
    tls_certificate: str = ""
    """PEM certificate (with its chain) that SIP over TLS presents; empty: the self-signed one in state_dir/tls."""
    tls_private_key: str = ""
    tls_ca_file: str = ""
    """PEM file of the CAs a TLS trunk's certificate must chain to; empty: the system's CA bundle."""
    tls_verify: bool = True
    """Check each TLS trunk's certificate: its chain, and that it names the trunk (its ``tls_name`` or host)."""


@dataclasses.dataclass
class WebRtcConfig:
    ice_servers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    turn_urls: list[str] = dataclasses.field(default_factory=list)
    """TURN servers sharing ``turn_secret`` with the gateway; each page gets its own credentials."""
    turn_secret: str = ""
    turn_ttl: int = 86400
    ice_transport_policy: str = "all"
    """``relay`` makes pages use TURN only (for networks that allow nothing else)."""
    jitter_ms: int = 40


@dataclasses.dataclass
class CallsConfig:
    ring_timeout: float = 30.0
    direct: bool = True
    """Calls between two web users of this gateway go browser to browser (Opus, no SIP); False sends them through SIP."""


@dataclasses.dataclass
class VoicemailConfig:
    """Calls to a web user that nobody answers: a greeting, a beep and a recording in state_dir/voicemail/<user>."""

    enabled: bool = True
    after_seconds: float = 0.0
    """Seconds the pages ring before the call goes to voicemail; 0: ``calls.ring_timeout``."""
    max_seconds: float = 120.0
    """The longest message; the call is ended then."""
    greeting: str = ""
    """The greeting (WAV; other formats need ffmpeg); empty: the built-in one. A user's own
    state_dir/voicemail/<user>/greeting.wav comes first."""
    when_signed_out: bool = False
    """Also take calls for a user signed in nowhere (one in [users], or who signed in here before)."""
    when_busy: bool = False
    """Also take calls for a user whose pages are in two calls each (instead of 486 Busy Here)."""

    def ring_seconds(self, calls: CallsConfig) -> float:
        """How long a call for a user rings before it goes to voicemail (or ends unanswered)."""
        return self.after_seconds if self.enabled and self.after_seconds else calls.ring_timeout


@dataclasses.dataclass
class EnginesConfig:
    """Where media engines run: one inside this process, or worker processes behind a SIP front.

    With workers, ``[sip] listen/port/public_host`` is the front's public
    address (Kamailio); workers listen on ``internal_host``.
    """

    workers: int = 0
    """0: one engine in this process (or as many as ``capacity`` needs); N: N worker processes."""
    capacity: int = 0
    """Concurrent calls wanted; sets the worker count when ``workers`` is 0 and this is above 4."""
    internal_host: str = "127.0.0.1"
    """Address the workers' SIP and the front's control interface listen on; the front must reach it."""
    sip_port: int = 0
    """First worker's SIP port (worker i takes sip_port + i); 0 lets the kernel choose."""
    restart_delay: float = 1.0
    media: str = "auto"
    """How calls' packets are carried: "auto" (the C relay when it can be used, else Python, and the log
    says why), "native" (the relay; the gateway will not start without it) or "python" (aiortc and
    pjsua2's conference bridge)."""


@dataclasses.dataclass
class FrontConfig:
    """Kamailio in front of the workers: managed by the gateway, or one that already runs."""

    rpc_url: str = ""
    """JSON-RPC address of a Kamailio started elsewhere (``http://host:port/RPC``); empty: start our own."""
    address: str = ""
    """SIP address (host:port) of that Kamailio; empty for our own (it listens on ``[sip]``)."""
    rpc_secret: str = ""
    """Secret the JSON-RPC asks for (header X-Gateway-Secret): that of the front at ``rpc_url``, or the one
    our own front takes, so other hosts can share it; empty: our own front makes a random one each start."""
    rpc_port: int = 0
    """Our own Kamailio's JSON-RPC port on ``engines.internal_host``, for other hosts to point at (0: any)."""
    host_id: int = 1
    """This gateway among several behind one front (1-99): the dispatcher set of its workers."""
    pike_requests: int = 40
    """New requests one source may send per 2 seconds before the front ignores it for a while."""
    source_invites_per_second: int = 20
    """INVITEs a second the front admits from one source that is not a trunk; the rest get 503."""


@dataclasses.dataclass(frozen=True)
class ApiToken:
    """One operator's access to the REST API, and where the events of the calls it places go."""

    name: str
    hash: str
    """``sha256$...`` of the token, as ``--new-api-token`` prints it; the token itself is never stored."""
    webhook_url: str = ""
    webhook_secret: str = ""


@dataclasses.dataclass
class ApiConfig:
    """The REST API (``/api/v1``) and the webhooks that report calls to operators' systems."""

    tokens: list[ApiToken] = dataclasses.field(default_factory=list)
    """Operators allowed to use the API; none: every API request gets 401."""
    webhook_url: str = ""
    """Where every call's events go (POST, signed with ``webhook_secret``); empty: nowhere."""
    webhook_secret: str = ""
    webhook_queue: int = 1000
    """Events waiting per receiver; once full, new ones are dropped (and logged), so calls never wait."""
    webhook_timeout: float = 5.0
    """Seconds one delivery attempt may take."""
    webhook_attempts: int = 5
    """Tries per event, 1, 2, 4... seconds apart, while the receiver fails (no answer, 5xx, 408, 429)."""


RECORDING_FORMATS = ("wav", "mp3", "opus")


@dataclasses.dataclass
class RecordingConfig:
    """Call recording, started and stopped from the page; files per user under ``dir``."""

    enabled: bool = False
    dir: str = ""
    """Where recordings go, one folder per user; empty: ``state_dir/recordings``. Relative to the file."""
    formats: list[str] = dataclasses.field(default_factory=lambda: ["wav"])
    """WAV is always written; "mp3" and "opus" add those (with ffmpeg installed)."""
    max_minutes: float = 60.0
    """A call's recording stops by itself at this length (all its segments together)."""
    beep: bool = True
    """The far end hears a beep when recording starts."""


@dataclasses.dataclass
class Config:
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    sip: SipConfig = dataclasses.field(default_factory=SipConfig)
    webrtc: WebRtcConfig = dataclasses.field(default_factory=WebRtcConfig)
    calls: CallsConfig = dataclasses.field(default_factory=CallsConfig)
    voicemail: VoicemailConfig = dataclasses.field(default_factory=VoicemailConfig)
    engines: EnginesConfig = dataclasses.field(default_factory=EnginesConfig)
    front: FrontConfig = dataclasses.field(default_factory=FrontConfig)
    api: ApiConfig = dataclasses.field(default_factory=ApiConfig)
    recording: RecordingConfig = dataclasses.field(default_factory=RecordingConfig)
    users: dict[str, str] | None = None
    """User name -> password hash; None means open sign-in (any name, no password)."""
    sip_passwords: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    """User name -> the user's own secret at the PBX (``users.NAME.sip_password``), for ``register_users``."""
    plan: Dialplan = dataclasses.field(default_factory=lambda: load_plan({}))
    """Routing, numbers, permissions, trunks: the ``dialplan`` package's part of the file."""
    state_dir: Path = Path(".gateway")
    contacts: list[Contact] = dataclasses.field(default_factory=list)
    """``[[contacts]]``: shared contacts every web user sees (and cannot change)."""


_SECTIONS = {
    "http": HttpConfig, "sip": SipConfig, "webrtc": WebRtcConfig, "calls": CallsConfig, "voicemail": VoicemailConfig,
    "engines": EnginesConfig, "front": FrontConfig, "api": ApiConfig, "recording": RecordingConfig,
}
_DIALPLAN_SECTIONS = frozenset({"dialplan", "groups", "users", "trunks", "routes", "inbound", "rooms"})
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "bool": (bool,), "float": (int, float), "list[dict[str, Any]]": (list,),
    "list[str]": (list,), "list[ApiToken]": (list,),
}


_SIP_FILES = ("tls_certificate", "tls_private_key", "tls_ca_file")
"""Paths in [sip], read relative to the configuration file."""
SYSTEM_CA_FILE = Path(ssl.get_default_verify_paths().openssl_cafile)

_SECRET = re.compile(r"[A-Za-z0-9_-]{16,}")
"""What ``secrets.token_urlsafe`` makes, and safe inside Kamailio's configuration."""
_OPERATOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_WEBHOOK_SECRET_MIN = 16
_SIP_SECRET = re.compile(r"[\x21-\x7e]{1,64}")


def load(path: Path | None) -> Config:
    """Read ``path`` (or nothing: the embedded defaults) into a validated Config."""
    config = Config()
    if path is None:
        return config
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    for key, value in data.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [{key}] must be a table")
            _fill(path, key, getattr(config, key), value)
            if key == "sip":
                for name in _SIP_FILES:
                    if getattr(config.sip, name):
                        setattr(config.sip, name, str((path.parent / getattr(config.sip, name)).resolve()))
            if key == "recording" and config.recording.dir:
                config.recording.dir = str((path.parent / config.recording.dir).resolve())
            if key == "voicemail" and config.voicemail.greeting:
                config.voicemail.greeting = str((path.parent / config.voicemail.greeting).resolve())
        elif key == "state_dir":
            config.state_dir = (path.parent / str(value)).resolve()
        elif key == "contacts":
            config.contacts = _contacts(path, value)
        elif key not in _DIALPLAN_SECTIONS:
            known = ", ".join(sorted([*_SECTIONS, *_DIALPLAN_SECTIONS, "contacts", "state_dir"]))
            raise ConfigError(f"{path}: unknown key {key!r} (known: {known})")
    try:
        config.plan = load_plan(data)
    except DialplanError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if "users" in data:
        config.users = _passwords(path, data["users"])
        config.sip_passwords = _sip_passwords(path, data["users"])
    config.api.tokens = _tokens(path, config.api.tokens)
    validate(config, str(path))
    return config


def _fill(path: Path, section: str, target: object, values: dict[str, Any]) -> None:
    fields = {f.name: f for f in dataclasses.fields(target)}  # type: ignore[arg-type]
    for key, value in values.items():
        field = fields.get(key)
        if field is None:
            raise ConfigError(f"{path}: unknown key {section}.{key} (known: {', '.join(fields)})")
        expected = _TYPES[str(field.type)]
        if not isinstance(value, expected) or (bool not in expected and isinstance(value, bool)):
            raise ConfigError(f"{path}: {section}.{key} must be {field.type}, not {type(value).__name__}")
        setattr(target, key, value)


def _passwords(path: Path, users: dict[str, Any]) -> dict[str, str]:
    """Each user's password hash (the dialplan has checked names and the rest)."""
    hashes = {}
    for name, user in users.items():
        hashed = user.get("password")
        if not isinstance(hashed, str) or not hashed.startswith("scrypt$"):
            raise ConfigError(f"{path}: users.{name}.password: expected a hash made by `--hash-password`")
        if not is_password_hash(hashed):
            raise ConfigError(
                f"{path}: users.{name}.password: {hashed!r} is not a usable hash (a placeholder?), so nobody could "
                f"sign in as {name}: make one with `webrtc-sip-gateway --hash-password`"
            )
        hashes[name] = hashed
    return hashes


def _sip_passwords(path: Path, users: dict[str, Any]) -> dict[str, str]:
    """Each ``sip_password``: Kamailio takes a lone "." for "none", and a PBX secret is printable."""
    secrets = {}
    for name, user in users.items():
        secret = user.get("sip_password") if isinstance(user, dict) else None
        if secret is None:
            continue
        if not isinstance(secret, str) or not _SIP_SECRET.fullmatch(secret) or secret == ".":
            raise ConfigError(f"{path}: users.{name}.sip_password must be 1-64 printable characters (not \".\")")
        secrets[name] = secret
    return secrets


def _tokens(path: Path, entries: list[Any]) -> list[ApiToken]:
    """``[[api.tokens]]`` tables (or inline tables) as ApiTokens; values are checked by :func:`validate`."""
    known = [field.name for field in dataclasses.fields(ApiToken)]
    tokens = []
    for index, entry in enumerate(entries):
        where = f"{path}: api.tokens[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f'{where} must be a table like {{ name = "crm", hash = "sha256$..." }}')
        for key, value in entry.items():
            if key not in known:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{key} must be str, not {type(value).__name__}")
        if "name" not in entry or "hash" not in entry:
            raise ConfigError(f"{where} needs a name and a hash (scripts/run.sh --new-api-token makes both)")
        tokens.append(ApiToken(**entry))
    return tokens


def _contacts(path: Path, entries: Any) -> list[Contact]:
    """``[[contacts]]`` tables: ``name``, ``number`` and an optional ``favourite``, checked as the page's are."""
    if not isinstance(entries, list):
        raise ConfigError(f'{path}: contacts must be [[contacts]] tables like {{ name = "Reception", number = "200" }}')
    shared = []
    for index, entry in enumerate(entries):
        where = f"{path}: contacts[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f'{where} must be a table like {{ name = "Reception", number = "200" }}')
        unknown = set(entry) - {"name", "number", "favourite"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: name, number, favourite)")
        try:
            shared.append(contact(entry, f"shared-{index + 1}", shared=True))
        except ContactError as exc:
            raise ConfigError(f"{where}.{exc.field}: {exc.message}") from None
    return shared


def validate(config: Config, origin: str) -> None:
    """Check values that types alone do not catch."""
    for section, key in (("http", "port"), ("sip", "port"), ("sip", "rtp_port"), ("sip", "tls_port")):
        port = getattr(getattr(config, section), key)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{origin}: {section}.{key} must be 0-65535, not {port}")
    _validate_http(config.http, origin)
    _validate_api(config.api, origin)
    _validate_sip_tls(config, origin)
    _validate_recording(config.recording, origin)
    if config.webrtc.ice_transport_policy not in ("all", "relay"):
        raise ConfigError(f"{origin}: webrtc.ice_transport_policy must be \"all\" or \"relay\"")
    if bool(config.webrtc.turn_urls) != bool(config.webrtc.turn_secret):
        raise ConfigError(f"{origin}: webrtc.turn_urls and webrtc.turn_secret go together")
    if not 20 <= config.webrtc.jitter_ms <= 300:
        raise ConfigError(f"{origin}: webrtc.jitter_ms must be 20-300")
    if not 1 <= config.sip.max_calls <= 4:
        raise ConfigError(f"{origin}: sip.max_calls must be 1-4 (pjsua2-python is built for at most 4 calls)")
    if len(config.plan.trunks) > PJSUA_ACCOUNTS - 1:
        raise ConfigError(
            f"{origin}: {len(config.plan.trunks)} trunks, but a media engine holds at most {PJSUA_ACCOUNTS - 1}"
            f" (pjsua2 has room for {PJSUA_ACCOUNTS} accounts: its own and one per trunk)"
        )
    if not 0 < config.sip.max_invites_per_second <= 50:
        raise ConfigError(f"{origin}: sip.max_invites_per_second must be above 0 and at most 50 (pjlib aborts near 60)")
    if config.calls.ring_timeout <= 0 or config.sip.media_timeout <= 0:
        raise ConfigError(f"{origin}: calls.ring_timeout and sip.media_timeout must be positive")
    _validate_voicemail(config.voicemail, origin)
    _validate_user_registration(config, origin)
    if not 0 < config.sip.no_response_timeout <= TIMER_B:
        raise ConfigError(f"{origin}: sip.no_response_timeout must be above 0 and at most {TIMER_B:.0f} (SIP's own timeout)")
    engines, front = config.engines, config.front
    if engines.workers < 0 or engines.capacity < 0 or not 0 <= engines.sip_port <= 65535:
        raise ConfigError(f"{origin}: engines.workers, engines.capacity and engines.sip_port must not be negative")
    if engines.media not in ("auto", "native", "python"):
        raise ConfigError(f"{origin}: engines.media must be \"auto\", \"native\" or \"python\"")
    srtp = [trunk.name for trunk in config.plan.trunks.values() if trunk.srtp != "off"]
    if engines.media == "native" and srtp:
        raise ConfigError(f"{origin}: engines.media is \"native\" but trunk {', '.join(srtp)} uses SRTP, which only the Python media path carries")
    if not 1 <= front.host_id <= 99:
        raise ConfigError(f"{origin}: front.host_id must be 1-99")
    if bool(front.rpc_url) != bool(front.address):
        raise ConfigError(f"{origin}: front.rpc_url and front.address go together (a Kamailio started elsewhere)")
    if front.rpc_url and not front.rpc_secret:
        raise ConfigError(f"{origin}: front.rpc_url and front.address need front.rpc_secret (the secret that front was given)")
    if front.rpc_secret and not _SECRET.fullmatch(front.rpc_secret):
        raise ConfigError(f"{origin}: front.rpc_secret must be at least 16 of A-Z a-z 0-9 _ -")
    if front.pike_requests < 1 or front.source_invites_per_second < 1:
        raise ConfigError(f"{origin}: front.pike_requests and front.source_invites_per_second must be positive")
    for index, server in enumerate(config.webrtc.ice_servers):
        if not isinstance(server, dict) or "urls" not in server:
            raise ConfigError(f"{origin}: webrtc.ice_servers[{index}] needs urls = [\"stun:host:port\", ...]")


def _validate_user_registration(config: Config, origin: str) -> None:
    """``register_users`` on one trunk and ``sip_password`` on users with an extension go together."""
    registrars = [trunk.name for trunk in config.plan.trunks.values() if trunk.register_users]
    if len(registrars) > 1:
        raise ConfigError(f"{origin}: register_users is set on trunks {', '.join(registrars)}: one PBX at most")
    if registrars and not config.sip_passwords:
        raise ConfigError(f"{origin}: trunk {registrars[0]} has register_users, but no user has a sip_password")
    for name in config.sip_passwords:
        if not registrars:
            raise ConfigError(f"{origin}: users.{name}.sip_password needs a trunk with register_users = true")
        if not config.plan.extension(name):
            raise ConfigError(f"{origin}: users.{name}.sip_password needs users.{name}.extension (the PBX's name for them)")


def user_registrar(config: Config) -> Trunk | None:
    """The trunk (a PBX) where each signed-in user with a ``sip_password`` registers, if any."""
    return next((trunk for trunk in config.plan.trunks.values() if trunk.register_users), None)


def _validate_voicemail(voicemail: VoicemailConfig, origin: str) -> None:
    if voicemail.after_seconds < 0:
        raise ConfigError(f"{origin}: voicemail.after_seconds must not be negative (0: calls.ring_timeout)")
    if not 1 <= voicemail.max_seconds <= 3600:
        raise ConfigError(f"{origin}: voicemail.max_seconds must be 1-3600")
    if voicemail.greeting and not Path(voicemail.greeting).is_file():
        raise ConfigError(f"{origin}: voicemail.greeting: no such file {voicemail.greeting}")


def _validate_http(http: HttpConfig, origin: str) -> None:
    for key in ("max_sockets", "max_sockets_per_source", "sign_in_timeout", "sign_in_delay", "sign_in_lockout_after",
                "sign_in_lockout", "password_checks"):
        if getattr(http, key) <= 0:
            raise ConfigError(f"{origin}: http.{key} must be positive")
    for allowed in http.allowed_origins:
        url = allowed if isinstance(allowed, str) else ""
        scheme, _, host = url.partition("://")
        if scheme not in ("http", "https") or not host or "/" in host:
            raise ConfigError(f"{origin}: http.allowed_origins: {allowed!r} is not an origin like \"https://host:port\"")
    for source in http.status_from:
        try:
            ipaddress.ip_network(source)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: http.status_from: {source!r} is not an address or network") from None


def _validate_api(api: ApiConfig, origin: str) -> None:
    if api.webhook_queue < 1 or api.webhook_timeout <= 0 or api.webhook_attempts < 1:
        raise ConfigError(f"{origin}: api.webhook_queue, api.webhook_timeout and api.webhook_attempts must be positive")
    _validate_webhook(api.webhook_url, api.webhook_secret, f"{origin}: api")
    names: set[str] = set()
    hashes: set[str] = set()
    for index, token in enumerate(api.tokens):
        where = f"{origin}: api.tokens[{index}]"
        if not _OPERATOR.fullmatch(token.name) or token.name in names:
            raise ConfigError(f"{where}.name must be 1-32 of A-Z a-z 0-9 _ . - and unique, not {token.name!r}")
        if not apitokens.HASH.fullmatch(token.hash) or token.hash in hashes:
            raise ConfigError(f"{where}.hash must be a unique \"sha256$...\" made by --new-api-token")
        names.add(token.name)
        hashes.add(token.hash)
        _validate_webhook(token.webhook_url, token.webhook_secret, where)


def _validate_recording(recording: RecordingConfig, origin: str) -> None:
    unknown = [name for name in recording.formats if name not in RECORDING_FORMATS]
    if unknown:
        raise ConfigError(f"{origin}: recording.formats: {unknown[0]!r} is not one of {', '.join(RECORDING_FORMATS)}")
    if not 0 < recording.max_minutes <= 24 * 60:
        raise ConfigError(f"{origin}: recording.max_minutes must be above 0 and at most 1440")


def recording_dir(config: Config) -> Path:
    """Where recordings are kept: ``[recording] dir``, else ``state_dir/recordings``."""
    return Path(config.recording.dir) if config.recording.dir else config.state_dir / "recordings"


def _validate_webhook(url: str, secret: str, where: str) -> None:
    if bool(url) != bool(secret):
        raise ConfigError(f"{where}: webhook_url and webhook_secret go together")
    scheme, _, rest = url.partition("://")
    if url and (scheme not in ("http", "https") or not rest or rest.startswith("/")):
        raise ConfigError(f"{where}: webhook_url {url!r} is not a URL like \"https://host/path\"")
    if url and len(secret) < _WEBHOOK_SECRET_MIN:
        raise ConfigError(f"{where}: webhook_secret must be at least {_WEBHOOK_SECRET_MIN} characters")


def _validate_sip_tls(config: Config, origin: str) -> None:
    sip = config.sip
    if bool(sip.tls_certificate) != bool(sip.tls_private_key):
        raise ConfigError(f"{origin}: sip.tls_certificate and sip.tls_private_key go together")
    if not sip_tls(config):
        return
    for name in _SIP_FILES:
        if getattr(sip, name) and not Path(getattr(sip, name)).is_file():
            raise ConfigError(f"{origin}: sip.{name}: no such file {getattr(sip, name)}")
    if sip.tls_verify and not sip.tls_ca_file and not SYSTEM_CA_FILE.is_file():
        raise ConfigError(f"{origin}: sip.tls_ca_file: this system has no CA bundle at {SYSTEM_CA_FILE}; name one")


def sip_tls(config: Config) -> bool:
    """Whether SIP over TLS is wanted: a listener, or a trunk reached over TLS."""
    return config.sip.tls or any(trunk.transport == "tls" for trunk in config.plan.trunks.values())


def worker_count(config: Config, cores: int) -> int:
    """How many engine processes to run: 0 means the embedded engine.

    ``capacity`` alone asks for enough workers to carry it, and at least one
    per core, since one Python process uses at most one core.  SIP over TLS
    is terminated by the Kamailio front, which only workers stand behind: with
    TLS the least is one worker.
    """
    if config.engines.workers:
        return config.engines.workers
    if config.engines.capacity <= config.sip.max_calls:
        return 1 if sip_tls(config) or user_registrar(config) else 0
    return max(-(-config.engines.capacity // config.sip.max_calls), cores)
