"""The GPU path exercised without a GPU: device selection, the CPU fallback, the
per-device batch sizes, and the torch runtime's queued calls run with ``device: cpu``.

Availability checks are monkeypatched so that every branch choosing a device runs here;
nothing is skipped on a machine without CUDA.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fixtures import write_double_onnx

from streamcompose.errors import ModelError, TopologyError
from streamcompose.runtimes import load_runtime
from streamcompose.runtimes.base import Runtime
from streamcompose.runtimes.device import ENGINE_CACHE_ENV
from streamcompose.runtimes.onnx_runtime import CUDA, TENSORRT
from streamcompose.runtimes.torch_runtime import torchscript_allowed
from streamcompose.topology import load_topology_text
from streamcompose.topology.model import ModelSpec

CPU = "CPUExecutionProvider"
X3 = {"inputs": {"x": {"dtype": "float32", "shape": [3]}}, "outputs": ["y"]}
ANY = {"inputs": {"x": {"dtype": "float32"}}, "outputs": ["y"]}


class Affine(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 + 1


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    """x float32 [N, 3] -> y = x * 2."""
    return write_double_onnx(tmp_path / "models" / "double.onnx")


@pytest.fixture
def torch_model(tmp_path: Path) -> Path:
    path = tmp_path / "affine.pt"
    with torchscript_allowed():
        torch.jit.save(torch.jit.script(Affine()), str(path))
    return path


def run(rt: Runtime, xs: list[list[float]]) -> list[np.ndarray]:
    rt.warmup()
    results = rt.infer([{"x": x} for x in xs])
    return [r["y"] for r in results]  # type: ignore[index]


# -- the CPU path, unchanged ---------------------------------------------------------------

def test_torch_cpu_runs_every_shape_group(torch_model: Path) -> None:
    rt = load_runtime(ModelSpec(runtime="torch", path=torch_model, options=ANY), ".", "a")
    calls: list[str] = []
    submit, collect = rt._submit, rt._collect  # type: ignore[attr-defined]
    rt._submit = lambda feeds: (calls.append("submit"), submit(feeds))[1]  # type: ignore
    rt._collect = lambda call: (calls.append("collect"), collect(call))[1]  # type: ignore
    xs = [[1.0, 2.0], [3.0], [4.0, 5.0], [6.0]]
    ys = rt.infer([{"x": x} for x in xs])
    assert calls == ["submit", "submit", "collect", "collect"]  # both queued, then awaited
    for x, y in zip(xs, ys, strict=True):
        assert isinstance(y, dict)
        np.testing.assert_array_equal(y["y"], np.array(x, np.float32) * 2 + 1)
    assert rt.device.type == "cpu" and rt.stream is None  # type: ignore[attr-defined]


def test_onnx_cpu_uses_the_cpu_provider_only(onnx_model: Path) -> None:
    rt = load_runtime(ModelSpec(runtime="onnx", path=onnx_model), ".", "a")
    assert rt.providers == [CPU]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(run(rt, [[1, 2, 3]])[0], [2, 4, 6])


# -- device: cuda where there is none ------------------------------------------------------

@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])


@pytest.mark.usefixtures("no_cuda")
def test_torch_cuda_without_cuda_names_what_is_missing(torch_model: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_runtime(ModelSpec(runtime="torch", path=torch_model, device="cuda", options=X3),
                     ".", "enc")
    text = str(info.value)
    assert "device 'cuda' asked for, but torch sees no CUDA device" in text
    assert "fallback: cpu" in text and info.value.agent == "enc"


def test_torch_cuda_index_beyond_the_devices(torch_model: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ModelError, match=r"'cuda:3' asked for, but torch sees 1 CUDA device"):
        load_runtime(ModelSpec(runtime="torch", path=torch_model, device="cuda:3"), ".")


@pytest.mark.usefixtures("no_cuda")
def test_onnx_cuda_without_the_provider_names_what_is_missing(onnx_model: Path) -> None:
    with pytest.raises(ModelError, match=f"has no {CUDA} .*install onnxruntime-gpu"):
        load_runtime(ModelSpec(runtime="onnx", path=onnx_model, device="cuda"), ".", "a")


@pytest.mark.usefixtures("no_cuda")
def test_fallback_warns_and_runs_on_the_cpu(torch_model: Path, onnx_model: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "streamcompose.runtimes")
    rt = load_runtime(ModelSpec(runtime="torch", path=torch_model, device="cuda",
                                fallback="cpu", options=X3), ".", "enc")
    assert rt.device.type == "cpu"  # type: ignore[attr-defined]
    np.testing.assert_array_equal(run(rt, [[1, 2, 3]])[0], [3, 5, 7])
    ox = load_runtime(ModelSpec(runtime="onnx", path=onnx_model, device="cuda:1",
                                fallback="cpu"), ".", "cls")
    assert ox.providers == [CPU]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(run(ox, [[1, 2, 3]])[0], [2, 4, 6])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2
    assert "agent enc: device 'cuda' asked for, but torch sees no CUDA" in warned[0]
    assert "agent cls: device 'cuda:1' asked for" in warned[1]
    assert all("running on the CPU" in w for w in warned)


# -- ONNX provider selection, as on a GPU machine ------------------------------------------

@pytest.fixture
def gpu_ort(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """onnxruntime claiming TensorRT and CUDA; sessions record what they were asked for
    and run on the CPU, as when the CUDA provider fails to start."""
    asked: list[dict[str, Any]] = []
    session = ort.InferenceSession

    def fake(path: str, options: Any, providers: list[str],
             provider_options: list[dict[str, str]]) -> Any:
        asked.append(dict(zip(providers, provider_options, strict=True)))
        return session(path, options, providers=[CPU])

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TENSORRT, CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", fake)
    return asked


def test_onnx_gpu_providers_and_engine_cache(onnx_model: Path, tmp_path: Path,
                                             gpu_ort: list[dict[str, Any]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec(runtime="onnx", path=onnx_model, device="cuda:2", fallback="cpu")
    load_runtime(spec, ".")
    assert gpu_ort[0] == {
        TENSORRT: {"device_id": "2", "trt_engine_cache_enable": "True",
                   "trt_engine_cache_path": str(onnx_model.parent)},
        CUDA: {"device_id": "2"}, CPU: {}}
    monkeypatch.setenv(ENGINE_CACHE_ENV, str(tmp_path / "engines"))
    load_runtime(spec, ".")
    assert gpu_ort[1][TENSORRT]["trt_engine_cache_path"] == str(tmp_path / "engines")
    assert (tmp_path / "engines").is_dir()


@pytest.mark.usefixtures("gpu_ort")
def test_onnx_cuda_provider_that_fails_to_start(onnx_model: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ModelError, match=f"could not start its {CUDA}"):
        load_runtime(ModelSpec(runtime="onnx", path=onnx_model, device="cuda"), ".")
    rt = load_runtime(ModelSpec(runtime="onnx", path=onnx_model, device="cuda",
                                fallback="cpu"), ".")
    assert rt.device == "cpu"  # type: ignore[attr-defined]
    np.testing.assert_array_equal(run(rt, [[1, 0, -1]])[0], [2, 0, -2])
    assert "could not start" in caplog.text


# -- the topology keys ---------------------------------------------------------------------

def agent_yaml(model: str, batch: str) -> str:
    return f"name: g\nagents:\n  a:\n    inputs: [$input]\n    model: {model}\n" \
           f"    batch: {batch}\n"


CUDA_MODEL = "{runtime: torch, path: m.pt, device: 'cuda:1', fallback: cpu}"
CPU_MODEL = "{runtime: torch, path: m.pt}"


@pytest.mark.parametrize(("model", "batch", "size"), [
    (CUDA_MODEL, "{max_size: {cpu: 16, cuda: 128}, max_wait_ms: 5}", 128),
    (CPU_MODEL, "{max_size: {cpu: 16, cuda: 128}, max_wait_ms: 5}", 16),
    (CUDA_MODEL, "{max_size: 32}", 32),
])
def test_max_size_per_device(model: str, batch: str, size: int) -> None:
    (agent,) = load_topology_text(agent_yaml(model, batch), ".").agents
    assert agent.batch.max_size == size
    assert agent.model is not None
    assert agent.model.fallback == ("cpu" if "fallback" in model else None)


def test_max_size_per_device_of_a_router() -> None:
    text = ("name: g\nagents:\n  a: {inputs: [$input], model: {runtime: python, entrypoint: "
            "'copy:copy'}}\n  j:\n    inputs: [a]\n    join: {strategy: merge}\n"
            "    batch: {max_size: {cpu: 4}}\n")
    assert load_topology_text(text, ".").agents[1].batch.max_size == 4


@pytest.mark.parametrize(("model", "batch", "key", "fragments"), [
    (CUDA_MODEL, "{max_size: {cpu: 16}}", "agents.a.batch.max_size",
     ["no size for cuda, the device of the agent's model", "given for: cpu"]),
    (CPU_MODEL, "{max_size: {cuda: 0}}", "agents.a.batch.max_size.cuda",
     ["must be an integer >= 1, got 0"]),
    (CPU_MODEL, "{max_size: {tpu: 8}}", "agents.a.batch.max_size.tpu",
     ["unknown key 'tpu'", "cpu, cuda"]),
    ("{runtime: torch, path: m.pt, device: cuda, fallback: gpu}", "{}",
     "agents.a.model.fallback", ["must be cpu, got 'gpu'"]),
    ("{runtime: torch, path: m.pt, fallback: cpu}", "{}", "agents.a.model.fallback",
     ["fallback: cpu applies to a cuda device", "device is cpu"]),
])
def test_bad_device_keys(model: str, batch: str, key: str, fragments: list[str]) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology_text(agent_yaml(model, batch), ".")
    line = 6 if "batch" in key else 5
    assert (info.value.key, info.value.line) == (key, line), str(info.value)
    assert str(info.value).startswith(f"<string>:{line}: {key}: ")
    for fragment in fragments:
        assert fragment in info.value.message
