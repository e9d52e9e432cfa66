"""The gateway's configuration: a TOML file, defaults that work with no file.

Validation happens once, at start: an unknown key, a wrong type or a bad
value stops the gateway with a message naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


class ConfigError(Exception):
    """A configuration problem, worded for the operator."""


@dataclasses.dataclass
class HttpConfig:
    listen: str = "0.0.0.0"
    port: int = 8443
    tls: bool = True


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
    log_level: int = 1


@dataclasses.dataclass
class WebRtcConfig:
    ice_servers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    jitter_ms: int = 40


@dataclasses.dataclass
class CallsConfig:
    ring_timeout: float = 30.0


@dataclasses.dataclass
class Config:
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    sip: SipConfig = dataclasses.field(default_factory=SipConfig)
    webrtc: WebRtcConfig = dataclasses.field(default_factory=WebRtcConfig)
    calls: CallsConfig = dataclasses.field(default_factory=CallsConfig)
    users: dict[str, str] | None = None
    """User name -> password hash; None means open sign-in (any name, no password)."""
    state_dir: Path = Path(".gateway")


_SECTIONS = {"http": HttpConfig, "sip": SipConfig, "webrtc": WebRtcConfig, "calls": CallsConfig}
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "bool": (bool,), "float": (int, float), "list[dict[str, Any]]": (list,),
}


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
        elif key == "users":
            config.users = _users(path, value)
        elif key == "state_dir":
            config.state_dir = (path.parent / str(value)).resolve()
        else:
            raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join([*_SECTIONS, 'users', 'state_dir'])})")
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


def _users(path: Path, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [users] must be a table of name = \"password hash\"")
    for name, hashed in value.items():
        if not USER_NAME.match(name):
            raise ConfigError(f"{path}: users.{name}: a user name is 1-32 of a-z 0-9 . _ -")
        if not isinstance(hashed, str) or not hashed.startswith("scrypt$"):
            raise ConfigError(f"{path}: users.{name}: expected a hash made by `python -m gateway hash-password`")
    return dict(value)


def validate(config: Config, origin: str) -> None:
    """Check values that types alone do not catch."""
    for section, key in (("http", "port"), ("sip", "port"), ("sip", "rtp_port")):
        port = getattr(getattr(config, section), key)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{origin}: {section}.{key} must be 0-65535, not {port}")
    if not 20 <= config.webrtc.jitter_ms <= 300:
        raise ConfigError(f"{origin}: webrtc.jitter_ms must be 20-300")
    if not 1 <= config.sip.max_calls <= 4:
        raise ConfigError(f"{origin}: sip.max_calls must be 1-4 (pjsua2-python is built for at most 4 calls)")
    if not 0 < config.sip.max_invites_per_second <= 50:
        raise ConfigError(f"{origin}: sip.max_invites_per_second must be above 0 and at most 50 (pjlib aborts near 60)")
    if config.calls.ring_timeout <= 0 or config.sip.media_timeout <= 0:
        raise ConfigError(f"{origin}: calls.ring_timeout and sip.media_timeout must be positive")
    for index, server in enumerate(config.webrtc.ice_servers):
        if not isinstance(server, dict) or "urls" not in server:
            raise ConfigError(f"{origin}: webrtc.ice_servers[{index}] needs urls = [\"stun:host:port\", ...]")
