"""Reading the parts of an agent from a topology document: values checked for type and
range, errors located by key and line.

>>> from streamcompose.topology.yamlsource import read_yaml_text
>>> doc = read_yaml_text("batch: {max_size: 8, max_wait_ms: 5}")
>>> parse_batch(Reader(doc), doc.data["batch"], "batch")
BatchSpec(max_size=8, max_wait_ms=5.0, auto_wait=False, max_cost=None, cost=None)
>>> doc = read_yaml_text("batch: {max_size: {cpu: 16, cuda: 128}}")
>>> parse_batch(Reader(doc), doc.data["batch"], "batch", device="cuda:1")
BatchSpec(max_size=128, max_wait_ms=0.0, auto_wait=False, max_cost=None, cost=None)
>>> doc = read_yaml_text("batch: {max_size: 64, max_wait_ms: auto, max_cost: 4096, cost: text}")
>>> parse_batch(Reader(doc), doc.data["batch"], "batch")
BatchSpec(max_size=64, max_wait_ms=50.0, auto_wait=True, max_cost=4096.0, cost='text')
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from streamcompose.topology.specs import (
    DEVICE_KINDS,
    JOIN_MODES,
    JOIN_STRATEGIES,
    RUNTIMES,
    BatchSpec,
    JoinSpec,
    ModelSpec,
)
from streamcompose.topology.yamlsource import YamlDocument

JOIN_KEYS = {"mode", "strategy", "field", "proba_field", "weights", "timeout_ms", "on_timeout",
             "keep_branches", "max_pending", "remember_ms", "remember_max", "model", "entrypoint",
             "options"}
MODEL_KEYS = {"runtime", "path", "entrypoint", "device", "input_map", "output_map", "outputs",
              "options", "allow_nonfinite", "fallback", "version"}
BATCH_KEYS = {"max_size", "max_wait_ms", "max_cost", "cost"}
AUTO_WAIT_CEILING_MS = 50.0  # the longest wait ``max_wait_ms: auto`` chooses
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


class Reader:
    """Typed access to a document's values, raising errors that locate the key."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc

    def mapping(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.doc.error(f"must be a mapping, got {type(value).__name__}", key)
        for name in value:
            if name not in allowed:
                raise self.doc.error(
                    f"unknown key {name!r} (expected one of: {', '.join(sorted(allowed))})",
                    f"{key}.{name}" if key else name)
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.doc.error(f"must be a non-empty string, got {value!r}", key)
        return value

    def name(self, value: Any, key: str) -> str:
        if not NAME_RE.match(self.string(value, key)):
            raise self.doc.error(f"{value!r} is not a valid name (letters, digits, _ and -)",
                                 key)
        return value

    def number(self, value: Any, key: str, *, integer: bool, minimum: float) -> Any:
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not value >= minimum:
            what = "an integer" if integer else "a number"
            raise self.doc.error(f"must be {what} >= {minimum}, got {value!r}", key)
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.doc.error("must be a non-empty list of names", key)
        return tuple(self.string(v, f"{key}.{i}") for i, v in enumerate(value))

    def string_map(self, value: Any, key: str) -> dict[str, str]:
        if not isinstance(value, dict):
            raise self.doc.error("must be a mapping of names to names", key)
        return {k: self.string(v, f"{key}.{k}") for k, v in value.items()}


def parse_model(r: Reader, raw: Any, key: str, base_dir: Path) -> ModelSpec:
    m = r.mapping(raw, key, MODEL_KEYS)
    runtime = r.string(m.get("runtime"), f"{key}.runtime")
    if runtime not in RUNTIMES:
        raise r.doc.error(f"unknown runtime {runtime!r} (expected one of: "
                          f"{', '.join(RUNTIMES)})", f"{key}.runtime")
    path = m.get("path")
    entrypoint = m.get("entrypoint")
    if runtime == "python" and not entrypoint:
        raise r.doc.error("the python runtime needs an 'entrypoint: module:callable'", key)
    if runtime != "python" and not (path or entrypoint):
        raise r.doc.error(f"the {runtime} runtime needs a 'path' to the model file", key)
    if entrypoint is not None and ":" not in r.string(entrypoint, f"{key}.entrypoint"):
        raise r.doc.error(f"{entrypoint!r} is not of the form module:callable",
                          f"{key}.entrypoint")
    device = r.string(m.get("device", "cpu"), f"{key}.device")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise r.doc.error(f"device must be cpu, cuda or cuda:N, got {device!r}", f"{key}.device")
    fallback = m.get("fallback")
    if fallback is not None and fallback != "cpu":
        raise r.doc.error(f"must be cpu, got {fallback!r}", f"{key}.fallback")
    if fallback is not None and not device.startswith("cuda"):
        raise r.doc.error(f"fallback: cpu applies to a cuda device; this model's device is "
                          f"{device}", f"{key}.fallback")
    outputs = m.get("outputs")
    allow_nonfinite = m.get("allow_nonfinite", False)
    if not isinstance(allow_nonfinite, bool):
        raise r.doc.error(f"must be true or false, got {allow_nonfinite!r}",
                          f"{key}.allow_nonfinite")
    if allow_nonfinite and runtime == "python":
        raise r.doc.error("python models get payloads as they are; allow_nonfinite applies "
                          "to onnx and torch inputs", f"{key}.allow_nonfinite")
    options = m.get("options", {})
    if not isinstance(options, dict):
        raise r.doc.error("must be a mapping", f"{key}.options")
    version = m.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, str | int)
                                or not str(version).strip()):
        raise r.doc.error(f"must be a non-empty string or number, got {version!r}",
                          f"{key}.version")
    return ModelSpec(
        runtime=runtime,
        path=(base_dir / r.string(path, f"{key}.path")).resolve() if path else None,
        entrypoint=entrypoint,
        device=device,
        input_map=r.string_map(m.get("input_map", {}), f"{key}.input_map"),
        output_map=r.string_map(m.get("output_map", {}), f"{key}.output_map"),
        outputs=r.strings(outputs, f"{key}.outputs") if outputs is not None else None,
        options=options,
        allow_nonfinite=allow_nonfinite,
        fallback=fallback,
        version=str(version).strip() if version is not None else None,
    )


def _max_size(r: Reader, raw: Any, key: str, device: str) -> int:
    """An integer, or one per device kind (``{cpu: 16, cuda: 128}``) of which the one of
    ``device`` is kept."""
    if not isinstance(raw, dict):
        return r.number(raw, key, integer=True, minimum=1)
    sizes = {kind: r.number(size, f"{key}.{kind}", integer=True, minimum=1)
             for kind, size in r.mapping(raw, key, set(DEVICE_KINDS)).items()}
    kind = device.partition(":")[0]
    if kind not in sizes:
        raise r.doc.error(f"no size for {kind}, the device of the agent's model (sizes are "
                          f"given for: {', '.join(sizes) or 'nothing'})", key)
    return sizes[kind]


def parse_batch(r: Reader, raw: Any, key: str, device: str = "cpu") -> BatchSpec:
    """The batching of an agent whose model runs on ``device``."""
    b = r.mapping(raw, key, BATCH_KEYS)
    wait = b.get("max_wait_ms", 0)
    auto = wait == "auto"
    if isinstance(wait, str) and not auto:
        raise r.doc.error(f"must be a number >= 0 or auto, got {wait!r}", f"{key}.max_wait_ms")
    if ("cost" in b) != ("max_cost" in b):
        given, missing = ("cost", "max_cost") if "cost" in b else ("max_cost", "cost")
        raise r.doc.error(f"{given} needs {missing} too (a batch closes before its total "
                          f"cost passes max_cost)", f"{key}.{given}")
    cost = b.get("cost")
    if cost is not None and (not isinstance(cost, str) or not cost.strip()):
        raise r.doc.error(f"must be a payload field or a module:function, got {cost!r}",
                          f"{key}.cost")
    return BatchSpec(
        max_size=_max_size(r, b.get("max_size", 1), f"{key}.max_size", device),
        max_wait_ms=AUTO_WAIT_CEILING_MS if auto else float(
            r.number(wait, f"{key}.max_wait_ms", integer=False, minimum=0)),
        auto_wait=auto,
        max_cost=None if cost is None else float(
            r.number(b["max_cost"], f"{key}.max_cost", integer=False, minimum=1)),
        cost=cost,
    )


def _mode(r: Reader, raw: Any, key: str) -> tuple[str, int | None]:
    if isinstance(raw, dict):
        r.mapping(raw, key, {"quorum"})
        return "quorum", r.number(raw.get("quorum"), f"{key}.quorum", integer=True, minimum=1)
    if raw not in JOIN_MODES or raw == "quorum":
        raise r.doc.error(f"must be all, any or {{quorum: K}}, got {raw!r}", key)
    return raw, None


def parse_join(r: Reader, raw: Any, key: str, base_dir: Path) -> JoinSpec:
    j = r.mapping(raw, key, JOIN_KEYS)
    strategy = r.string(j.get("strategy"), f"{key}.strategy")
    if strategy not in JOIN_STRATEGIES:
        raise r.doc.error(f"unknown strategy {strategy!r} (expected one of: "
                          f"{', '.join(JOIN_STRATEGIES)})", f"{key}.strategy")
    mode, quorum = _mode(r, j.get("mode", "all"), f"{key}.mode")
    on_timeout = j.get("on_timeout", "partial")
    if on_timeout not in ("partial", "dlq"):
        raise r.doc.error(f"must be partial or dlq, got {on_timeout!r}", f"{key}.on_timeout")
    weights = j.get("weights", {})
    if not isinstance(weights, dict):
        raise r.doc.error("must be a mapping of branch names to numbers", f"{key}.weights")
    if strategy == "stacking" and "model" not in j:
        raise r.doc.error("the stacking strategy needs a meta-model under 'model'", key)
    if strategy == "python" and not j.get("entrypoint"):
        raise r.doc.error("the python strategy needs an 'entrypoint: module:callable'", key)
    return JoinSpec(
        strategy=strategy, mode=mode, quorum=quorum,
        field=r.string(j.get("field", "proba"), f"{key}.field"),
        proba_field=r.string(j.get("proba_field", "proba"), f"{key}.proba_field"),
        weights={b: r.number(w, f"{key}.weights.{b}", integer=False, minimum=0)
                 for b, w in weights.items()},
        timeout_ms=float(r.number(j.get("timeout_ms", 2000), f"{key}.timeout_ms",
                                  integer=False, minimum=1)),
        on_timeout=on_timeout,
        keep_branches=bool(j.get("keep_branches", False)),
        max_pending=r.number(j.get("max_pending", 10000), f"{key}.max_pending", integer=True,
                             minimum=1),
        remember_ms=float(r.number(j.get("remember_ms", 600_000), f"{key}.remember_ms",
                                   integer=False, minimum=0)),
        remember_max=r.number(j.get("remember_max", 100_000), f"{key}.remember_max",
                              integer=True, minimum=1),
        model=parse_model(r, j["model"], f"{key}.model", base_dir) if "model" in j else None,
        entrypoint=r.string(j["entrypoint"], f"{key}.entrypoint") if "entrypoint" in j
        else None,
        options=r.mapping(j.get("options", {}), f"{key}.options", set(j.get("options", {}))),
    )


