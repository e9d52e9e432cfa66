"""The gateway's Prometheus metrics, every one defined here and updated where its event happens.

Call control (the main process) updates them from what it already hears:
page requests, and engine events, also those of worker processes, so no
multiprocess mode is needed.  Each gateway has its own registry: nothing
is kept in module globals, and several gateways in one process count
apart.  ``GET /metrics`` serves them to the same callers ``/health``
shows its details to.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

from .callquality import LegQuality

_SETUP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
_JITTER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
_LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)
_RTT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0)
_MOS_BUCKETS = (1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4)


class Metrics:
    """The metrics of one gateway; call sites use the attributes directly (``.labels(...).inc()``)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # the main process's CPU, memory and open files
        self.calls_in_progress = Gauge(
            "gateway_calls_in_progress", "Calls not ended yet, by direction: outbound-dial (a page), outbound-api (click-to-call), inbound",
            ["direction"], registry=registry,
        )
        self.calls = Counter(
            "gateway_calls", "Calls ended, by direction and end cause (docs/protocol.md)",
            ["direction", "cause"], registry=registry,
        )
        self.call_setup = Histogram(
            "gateway_call_setup_seconds", "From a call's start (page, API request or INVITE) to its answer, ringing included",
            ["direction"], buckets=_SETUP_BUCKETS, registry=registry,
        )
        last = "Each answered call's last reported {}, per leg (sip, browser, direct: browser to browser)"
        self.jitter = self._per_leg("gateway_call_jitter_seconds", last.format("jitter"), _JITTER_BUCKETS)
        self.loss = self._per_leg("gateway_call_loss_ratio", last.format("packet loss"), _LOSS_BUCKETS)
        self.rtt = self._per_leg("gateway_call_rtt_seconds", last.format("round trip"), _RTT_BUCKETS)
        self.mos = self._per_leg("gateway_call_mos", last.format("estimated MOS (E-model, where all three were measured)"), _MOS_BUCKETS)
        self.trunk_registered = Gauge(
            "gateway_trunk_registered", "1 while a trunk's registration stands, else 0", ["trunk"], registry=registry,
        )
        self.engine_calls = Gauge(
            "gateway_engine_calls", "Calls a media engine carries (a built-in extension's call counts twice)",
            ["engine"], registry=registry,
        )
        self.engine_capacity = Gauge(
            "gateway_engine_capacity", "Calls a media engine can carry; 0 while it is down", ["engine"], registry=registry,
        )
        self.engine_restarts = Counter(
            "gateway_engine_restarts", "Worker processes started again after they stopped", ["engine"], registry=registry,
        )
        self.sign_in_failures = Counter(
            "gateway_sign_in_failures", "Sign-ins refused: wrong password, locked (waiting after failures) or bad name",
            ["reason"], registry=registry,
        )
        self.sip_refused = Counter(
            "gateway_sip_refused", "SIP requests refused: malformed, transfer, replaces, error (the SIP side), dialplan (a call not admitted)",
            ["reason", "code"], registry=registry,
        )
        self.websockets_refused = Counter(
            "gateway_websockets_refused", "WebSockets refused before the upgrade: origin, full, source_full",
            ["reason"], registry=registry,
        )
        # Known label values start at 0, so rates and sums work from the first scrape.
        for direction in ("outbound-dial", "outbound-api", "inbound"):
            self.calls_in_progress.labels(direction)
            self.call_setup.labels(direction)
        for reason in ("password", "locked", "name"):
            self.sign_in_failures.labels(reason)
        for reason in ("origin", "full", "source_full"):
            self.websockets_refused.labels(reason)

    def _per_leg(self, name: str, documentation: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, documentation, ["leg"], buckets=buckets, registry=self.registry)

    def quality(self, leg: str, figures: LegQuality) -> None:
        """One answered call's last figures for ``leg``; a figure nobody measured is left out."""
        if figures.jitter_ms is not None:
            self.jitter.labels(leg).observe(figures.jitter_ms / 1000)
        if figures.loss_pct is not None:
            self.loss.labels(leg).observe(figures.loss_pct / 100)
        if figures.rtt_ms is not None:
            self.rtt.labels(leg).observe(figures.rtt_ms / 1000)
        if figures.mos is not None:
            self.mos.labels(leg).observe(figures.mos)

    def exposition(self) -> tuple[bytes, str]:
        """The text ``/metrics`` answers, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
