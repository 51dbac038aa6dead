"""The OCR cascade's steps, run in-process, give what RapidOCR gives (no broker needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from streamcompose.codec.wire import JSON, decode_payload, encode_payload
from streamcompose.runtimes import RecordError, Result, Runtime, load_runtime
from streamcompose.runtimes.base import import_entrypoint
from streamcompose.topology import Topology, load_topology

rapidocr = pytest.importorskip("rapidocr_onnxruntime")

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(TOPOLOGIES / "ocr_cascade.yaml")


@pytest.fixture(scope="module")
def runtimes(topology: Topology) -> dict[str, Runtime]:
    return {a.name: load_runtime(a.model, topology.base_dir, a.name) for a in topology.agents}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    make_samples = import_entrypoint("ocr.samples:make_samples", TOPOLOGIES)
    return make_samples(tmp_path_factory.mktemp("ocr"), 6)


@pytest.fixture(scope="module")
def engine() -> Any:
    return rapidocr.RapidOCR()


@pytest.fixture(scope="module")
def expected(engine: Any, samples: list[Path]) -> dict[Path, list[list[Any]]]:
    """RapidOCR's ``[box, text, score]`` lines for each sample ([] where it finds none)."""
    return {path: engine(path)[0] or [] for path in samples}


def run_cascade(topology: Topology, runtimes: dict[str, Runtime],
                payloads: list[dict[str, Any]]) -> list[Result]:
    """Pass the payloads through the agents as the workers do: merge each model's fields
    into the payload, drop the agent's ``drop`` fields, encode and decode for the next
    hop. A payload rejected by an agent ends as its RecordError."""
    results: list[Result] = [decode_payload(encode_payload(p)) for p in payloads]
    for name in topology.order():
        live = [i for i, r in enumerate(results) if not isinstance(r, RecordError)]
        outputs = runtimes[name].infer([results[i] for i in live])
        for i, out in zip(live, outputs, strict=True):
            if isinstance(out, RecordError):
                results[i] = out
                continue
            merged = {**results[i], **out}
            for field in topology.agent(name).drop:
                merged.pop(field, None)
            results[i] = decode_payload(encode_payload(merged))
    return results


def as_input(path: Path, kind: int) -> dict[str, Any]:
    """A BGR array, PNG bytes, or (via a JSON record) base64 text of the PNG bytes."""
    if kind == 0:
        return {"image": cv2.imread(str(path))}
    payload = {"image": path.read_bytes()}
    return decode_payload(encode_payload(payload, JSON)) if kind == 2 else payload


def test_results_equal_rapidocr(topology: Topology, runtimes: dict[str, Runtime],
                                samples: list[Path], expected: dict) -> None:
    results = run_cascade(topology, runtimes,
                          [as_input(path, i % 3) for i, path in enumerate(samples)])
    for path, result in zip(samples, results, strict=True):
        assert isinstance(result, dict), result
        assert set(result) == {"texts", "boxes", "scores"}
        want = expected[path]
        assert want, f"RapidOCR reads nothing in {path.name}: the sample is useless"
        assert result["texts"] == [line[1] for line in want], path.name
        np.testing.assert_allclose(result["boxes"], [line[0] for line in want], atol=3)
        np.testing.assert_allclose(result["scores"], [line[2] for line in want], atol=1e-3)


def test_undecodable_image_fails_alone(topology: Topology, runtimes: dict[str, Runtime],
                                       samples: list[Path], expected: dict) -> None:
    good = samples[:2]
    payloads = [as_input(good[0], 1), {"image": b"not an image"}, {"image": "%%%"},
                as_input(good[1], 0)]
    first, *bad, last = run_cascade(topology, runtimes, payloads)
    for error in bad:
        assert isinstance(error, RecordError)
        assert "cannot decode the image" in str(error)
    for path, result in zip(good, (first, last), strict=True):
        assert isinstance(result, dict), result
        assert result["texts"] == [line[1] for line in expected[path]]


def test_blank_image_gives_empty_lists(topology: Topology, runtimes: dict[str, Runtime],
                                       engine: Any) -> None:
    blank = np.full((120, 160, 3), 255, dtype=np.uint8)
    assert engine(blank)[0] is None
    as_json = decode_payload(encode_payload({"image": blank}, JSON))  # nested lists
    [result] = run_cascade(topology, runtimes, [as_json])
    assert result == {"texts": [], "boxes": [], "scores": []}


def test_warmup(runtimes: dict[str, Runtime]) -> None:
    for runtime in runtimes.values():
        runtime.warmup()


def test_the_steps_keep_the_arena_unless_told_not_to(samples: list[Path]) -> None:
    detect = import_entrypoint("ocr.steps:Detect", TOPOLOGIES)
    arena = import_entrypoint("ocr.steps:ArenaSession", TOPOLOGIES)
    image = {"image": samples[0].read_bytes()}
    with_arena, without = detect(), detect(cpu_mem_arena=False)
    assert isinstance(with_arena.detector.text_det.infer, arena)
    assert not isinstance(without.detector.text_det.infer, arena)
    [a], [b] = with_arena([image]), without([image])
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    assert all(np.array_equal(x, y) for x, y in zip(a["crops"], b["crops"], strict=True))
