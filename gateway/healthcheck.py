"""``webrtc-sip-gateway --check-health``: ask the gateway running on this host whether it serves, for a
container's HEALTHCHECK (the image has neither curl nor the port, which only the configuration knows)."""

from __future__ import annotations

import json
import ssl
import urllib.request

from .config import Config

TIMEOUT = 5.0


def health_url(config: Config) -> str:
    """/health on the address the page listens on, loopback when it listens on every address."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(config.http.listen, config.http.listen)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if config.http.tls else 'http'}://{host}:{config.http.port}/health"


def check(config: Config) -> tuple[bool, str]:
    """Whether /health answers ``{"status": "ok"}``, and what was seen; the certificate is not checked
    (it is often the gateway's self-signed one, and this only asks whether the process serves)."""
    url = health_url(config)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as reply:
            status = json.load(reply).get("status")
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"
    return status == "ok", f"{url}: status {status!r}"
