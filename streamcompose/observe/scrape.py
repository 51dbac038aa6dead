"""Reading the Prometheus metrics a worker serves, for ``streamcompose top`` and tests.

>>> samples = parse_metrics('streamcompose_lag{agent="cnn",replica="0"} 3.0\\n')
>>> samples[0].name, samples[0].labels["agent"], samples[0].value
('streamcompose_lag', 'cnn', 3.0)
>>> value(samples, "streamcompose_lag", agent="cnn")
3.0
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from streamcompose.errors import DeploymentError


@dataclass(frozen=True)
class Sample:
    """One sample: the series name (with ``_total``, ``_bucket``... suffixes), its labels
    and value."""

    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition."""
    return [Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]


def read_metrics(port: int, host: str = "127.0.0.1", timeout_s: float = 2.0) -> list[Sample]:
    """Scrape the metrics endpoint of a worker."""
    url = f"http://{host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return parse_metrics(response.read().decode())
    except OSError as exc:
        raise DeploymentError(f"cannot read the metrics at {url}: {exc}") from exc


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples of series ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
