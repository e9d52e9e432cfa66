"""One leg's quality as last reported, and the MOS estimated from it.

A figure that was not measured stays None (the round trip until the far
end reports on one of our SRs; a SIP peer that sends no RTCP never does), and then there is no MOS
either: a missing figure must not look like a perfect one.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LegQuality:
    jitter_ms: float | None = None
    loss_pct: float | None = None
    rtt_ms: float | None = None

    @property
    def mos(self) -> float | None:
        if self.jitter_ms is None or self.loss_pct is None or self.rtt_ms is None:
            return None
        return estimate_mos(self.rtt_ms, self.jitter_ms, self.loss_pct)

    def for_page(self) -> dict[str, float]:
        """The measured figures, rounded, as the page's ``stats`` message carries them."""
        figures = {"jitter_ms": self.jitter_ms, "loss_pct": self.loss_pct, "rtt_ms": self.rtt_ms}
        return {name: round(value, 2) for name, value in figures.items() if value is not None}


def estimate_mos(rtt_ms: float, jitter_ms: float, loss_pct: float) -> float:
    """The simplified E-model of the page's quality panel (``web/js/quality.js``), so both agree."""
    latency = rtt_ms + 2 * jitter_ms + 10
    r = 93.2 - (latency / 40 if latency < 160 else (latency - 120) / 10) - 2.5 * loss_pct
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return min(4.5, max(1.0, 1 + 0.035 * r + 0.000007 * r * (r - 60) * (100 - r)))
