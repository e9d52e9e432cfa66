"""Who the HTTP side lets in: WebSocket origins and counts, and /health's details and /metrics.

Checks happen before the WebSocket upgrade, so a refused connection costs
one HTTP response and no per-socket state.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections import Counter
from collections.abc import Iterable

from aiohttp import hdrs, web
from yarl import URL

from .config import HttpConfig
from .metrics import Metrics

_Origin = tuple[str, str, int | None]


def _origin(url: URL) -> _Origin | None:
    if not url.is_absolute() or url.scheme not in ("http", "https") or not url.host:
        return None
    return url.scheme, url.host.lower(), url.port


class Admission:
    def __init__(self, http: HttpConfig, metrics: Metrics) -> None:
        self._metrics = metrics
        self._allowed = {_origin(URL(origin)) for origin in http.allowed_origins} - {None}
        self._max_sockets = http.max_sockets
        self._max_per_source = http.max_sockets_per_source
        self._sockets: Counter[str] = Counter()
        self._total = 0
        self._token = http.status_token
        self._status_from = [ipaddress.ip_network(source) for source in http.status_from]

    def check_origin(self, request: web.Request) -> None:
        """403 unless the Origin is the page's own or allow-listed; no Origin (not a browser) passes."""
        header = request.headers.get(hdrs.ORIGIN)
        if header is None:
            return
        try:
            origin = _origin(URL(header))
        except ValueError:
            origin = None
        if origin is None or (origin != _origin(request.url) and origin not in self._allowed):
            self._metrics.websockets_refused.labels("origin").inc()
            raise web.HTTPForbidden(text=f"WebSocket from origin {header[:100]!r} not allowed\n")

    def open_socket(self, source: str) -> None:
        """Count a WebSocket in, or refuse it: 503 when the gateway is full, 429 when its source is."""
        if self._total >= self._max_sockets:
            self._metrics.websockets_refused.labels("full").inc()
            raise web.HTTPServiceUnavailable(text="too many WebSockets open\n", headers={hdrs.RETRY_AFTER: "10"})
        if self._sockets[source] >= self._max_per_source:
            self._metrics.websockets_refused.labels("source_full").inc()
            raise web.HTTPTooManyRequests(text="too many WebSockets open from your address\n", headers={hdrs.RETRY_AFTER: "10"})
        self._sockets[source] += 1
        self._total += 1

    def close_socket(self, source: str) -> None:
        self._total -= 1
        self._sockets[source] -= 1
        if not self._sockets[source]:
            del self._sockets[source]

    def may_see_status(self, request: web.Request) -> bool:
        """A request from ``status_from`` or with the ``status_token`` sees /health's details."""
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if self._token and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._token.encode()):
            return True
        return _address_in(request.remote, self._status_from)


def _address_in(address: str | None, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
