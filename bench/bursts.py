"""Bursts of a call's own tone: how the benches time round trips and check that each call hears itself.

Every call sends a BURST_S burst of its own frequency every PERIOD_S and
silence between. The far end echoes it; the sender times each burst's
return (its onset in what comes back) and checks that what came back loud
is its own frequency, not silence and not another call's.
"""

from __future__ import annotations

import numpy as np

from tests.audio import dominant_frequency
from tests.webclient import RATE

PERIOD_S = 0.5
BURST_S = 0.04
LOUD = 3000


def frequency(i: int) -> float:
    """Call i's own tone: 37 Hz apart, all below G.711's 4 kHz (distinct for up to 96 calls)."""
    return 400.0 + 37.0 * (i % 96)


def burst_mask(first: int, count: int) -> np.ndarray:
    """Which of ``count`` samples from sample ``first`` on fall in a burst."""
    t = (np.arange(count) + first) / RATE
    return (t % PERIOD_S) < BURST_S


def onsets(received: list[tuple[float, np.ndarray]], since: float) -> list[float]:
    """Arrival times of burst starts (first loud frame after a quiet one)."""
    times, quiet = [], True
    for arrived, samples in received:
        if arrived < since:
            continue
        loud = np.abs(samples).max() > LOUD
        if loud and quiet:
            times.append(arrived + int(np.argmax(np.abs(samples) > LOUD)) / RATE)
        quiet = not loud
    return times


def tone_intact(received: list[tuple[float, np.ndarray]], since: float, freq: float) -> bool:
    """Whether the bursts that came back are this call's own frequency (not silence, not another call's)."""
    loud = [samples for arrived, samples in received if arrived >= since and np.abs(samples).max() > LOUD]
    return bool(loud) and abs(dominant_frequency(np.concatenate(loud), RATE) - freq) < 20


def round_trips(sent: list[float], back: list[float]) -> list[float]:
    """Pair each returned burst with the latest burst sent before it."""
    trips = []
    for arrived in back:
        earlier = [s for s in sent if s < arrived]
        if earlier and arrived - earlier[-1] < PERIOD_S:
            trips.append(arrived - earlier[-1])
    return trips


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")
