"""The ``monitor:`` key of an agent: which of its outputs and inputs to watch for drift.

>>> from streamcompose.topology.parse_specs import Reader
>>> from streamcompose.topology.yamlsource import read_yaml_text
>>> doc = read_yaml_text("monitor: {label: label, confidence: proba, inputs: [pixels]}")
>>> m = parse_monitor(Reader(doc), doc.data["monitor"], "monitor", Path("."))
>>> m.features()
('output:label', 'output:confidence', 'input:pixels')
>>> m.window, m.reference_size, m.threshold
(500, 500, 0.2)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamcompose.topology.parse_specs import Reader

MONITOR_KEYS = {"label", "confidence", "inputs", "window", "reference", "threshold", "bins"}
MIN_WINDOW = 10


@dataclass(frozen=True)
class MonitorSpec:
    """What a model agent watches: the predicted ``label`` and the ``confidence`` (a
    probability vector's largest value, or a number) among its results, and ``inputs``
    (numbers or arrays, an array counting as its mean) among the payloads it receives.
    Each is compared, over the latest ``window`` requests, with a reference: the first
    ``reference_size`` requests after the worker starts, or the values stored in
    ``reference_file``. A population stability index above ``threshold`` raises the
    drift alert. Numbers are binned in ``bins`` bins of equal reference share."""

    label: str | None = None
    confidence: str | None = None
    inputs: tuple[str, ...] = ()
    window: int = 500
    reference_size: int = 500
    reference_file: Path | None = None
    threshold: float = 0.2
    bins: int = 10

    def features(self) -> tuple[str, ...]:
        """The names the drift scores are exported under."""
        outputs = [f"output:{n}" for n, f in (("label", self.label),
                                               ("confidence", self.confidence)) if f]
        return (*outputs, *(f"input:{f}" for f in self.inputs))


def parse_monitor(r: Reader, raw: Any, key: str, base_dir: Path) -> MonitorSpec:
    m = r.mapping(raw, key, MONITOR_KEYS)
    label = r.string(m["label"], f"{key}.label") if "label" in m else None
    confidence = r.string(m["confidence"], f"{key}.confidence") if "confidence" in m else None
    inputs = r.strings(m["inputs"], f"{key}.inputs") if "inputs" in m else ()
    if not (label or confidence or inputs):
        raise r.doc.error("a monitor watches at least one of: label, confidence, inputs", key)
    reference = m.get("reference", 500)
    size, file = 0, None
    if isinstance(reference, str) and reference:
        file = (base_dir / reference).resolve()
        if not file.is_file():
            raise r.doc.error(f"no reference file {str(file)!r} (a JSON file of reference "
                              "values, as a worker saves one after capturing it)",
                              f"{key}.reference")
    else:
        size = r.number(reference, f"{key}.reference", integer=True, minimum=MIN_WINDOW)
    bins = r.number(m.get("bins", 10), f"{key}.bins", integer=True, minimum=2)
    if bins > 100:
        raise r.doc.error(f"must be at most 100, got {bins}", f"{key}.bins")
    threshold = r.number(m.get("threshold", 0.2), f"{key}.threshold", integer=False,
                         minimum=0)
    if threshold <= 0:
        raise r.doc.error(f"must be a number > 0, got {threshold!r}", f"{key}.threshold")
    return MonitorSpec(
        label=label, confidence=confidence, inputs=inputs,
        window=r.number(m.get("window", 500), f"{key}.window", integer=True,
                        minimum=MIN_WINDOW),
        reference_size=size, reference_file=file, threshold=float(threshold), bins=bins)
