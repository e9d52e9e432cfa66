"""``GET /metrics`` as tests read it: parsed with prometheus_client's own parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str, token: str = "") -> Samples:
    """Each sample name -> its (labels, value) pairs; raises ``HTTPError`` when refused."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as reply:
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels``; 0 when there are none."""
    return sum(v for sample_labels, v in samples.get(name, []) if labels.items() <= sample_labels.items())
