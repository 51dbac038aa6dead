"""Model runtimes (ONNX Runtime, PyTorch, plain Python) on small models built here."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from streamcompose.errors import ModelError
from streamcompose.runtimes import RecordError, describe_model, load_runtime
from streamcompose.runtimes.base import Runtime, import_entrypoint
from streamcompose.runtimes.onnx_runtime import select_providers
from streamcompose.runtimes.tensor import numpy_dtype
from streamcompose.runtimes.torch_runtime import torchscript_allowed
from streamcompose.topology.model import ModelSpec

OPSET = 17
IR_VERSION = 8


# ------------------------------------------------------------------------------ helpers


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _double_and_sum(name: str, dims: list[Any]) -> onnx.GraphProto:
    """x float32 ``dims`` -> y = x * 2, s = ReduceSum(x, axis 1)."""
    return helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"]),
         helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0)],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [dims[0]])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
                     helper.make_tensor("axes", TensorProto.INT64, [1], [1])])


@pytest.fixture
def fixed_model(tmp_path: Path) -> Path:
    return _save(_double_and_sum("fixed", ["N", 3]), tmp_path / "fixed.onnx")


@pytest.fixture
def dynamic_model(tmp_path: Path) -> Path:
    return _save(_double_and_sum("dynamic", ["N", "M"]), tmp_path / "dynamic.onnx")


@pytest.fixture
def int_model(tmp_path: Path) -> Path:
    """k int64 [N, 2] -> k1 = k + 1."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["k", "one"], ["k1"])], "ints",
        [helper.make_tensor_value_info("k", TensorProto.INT64, ["N", 2])],
        [helper.make_tensor_value_info("k1", TensorProto.INT64, ["N", 2])],
        initializer=[helper.make_tensor("one", TensorProto.INT64, [], [1])])
    return _save(graph, tmp_path / "ints.onnx")


def onnx_runtime(path: Path, base: Path, **spec: Any) -> Runtime:
    return load_runtime(ModelSpec(runtime="onnx", path=path, **spec), base, "agent")


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Write a module with a name unique to this test into tmp_path; returns its name.
    sys.path and sys.modules are restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"scmod_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def errors(results: list) -> list[int]:
    return [i for i, r in enumerate(results) if isinstance(r, RecordError)]


# --------------------------------------------------------------------------------- ONNX


def test_onnx_batched_results_equal_per_item_numpy(fixed_model: Path, tmp_path: Path) -> None:
    rt = onnx_runtime(fixed_model, tmp_path)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(3).astype(np.float32) for _ in range(5)]
    results = rt.infer([{"x": x} for x in xs])
    assert len(results) == 5
    for x, r in zip(xs, results, strict=True):
        assert set(r) == {"y", "s"}
        assert r["y"].dtype == np.float32 and r["y"].shape == (3,)
        assert r["s"].shape == ()
        np.testing.assert_allclose(r["y"], x * 2, rtol=1e-6)
        np.testing.assert_allclose(r["s"], x.sum(), rtol=1e-5)


def test_onnx_a_batch_of_arrays_gives_what_each_array_alone_gives(fixed_model: Path,
                                                                  tmp_path: Path) -> None:
    rt = onnx_runtime(fixed_model, tmp_path)
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal(3) for _ in range(6)]  # float64, cast as one
    batched = rt.infer([{"x": x} for x in xs])
    for x, r in zip(xs, batched, strict=True):
        (alone,) = rt.infer([{"x": x}])
        assert r["y"].tobytes() == alone["y"].tobytes()
        assert r["s"].tobytes() == alone["s"].tobytes()
    # one bad array among good ones: only it is refused, with its own reason
    bad = [{"x": xs[0]}, {"x": np.array([1.0, np.nan, 2.0])}, {"x": xs[1]},
           {"x": np.ones(4)}, {"x": np.array([1, 2, 3], np.int8)}]
    results = rt.infer(bad)
    assert errors(results) == [1, 3]
    assert "1 of 3 values are not finite" in str(results[1])
    assert "shape (4,)" in str(results[3])
    np.testing.assert_allclose(results[4]["y"], [2, 4, 6])


def test_onnx_reports_fields_and_providers(fixed_model: Path, tmp_path: Path) -> None:
    rt = onnx_runtime(fixed_model, tmp_path)
    assert rt.input_fields == ("x",)
    assert rt.output_fields == ("y", "s")
    assert rt.providers == ["CPUExecutionProvider"]
    (ti,) = rt.tensor_inputs
    assert (ti.name, ti.field, ti.dtype, ti.shape) == ("x", "x", np.dtype(np.float32), (3,))
    info = describe_model(ModelSpec(runtime="onnx", path=fixed_model), tmp_path)
    assert (info.inputs, info.outputs) == (("x",), ("y", "s"))
    assert info.shapes == {"y": (3,), "s": ()}
    info = describe_model(ModelSpec(runtime="onnx", path=fixed_model, output_map={"y": "d"},
                                    input_map={"x": "img"}), tmp_path)
    assert (info.inputs, info.outputs) == (("img",), ("d", "s"))
    assert info.shapes["d"] == (3,)


def test_onnx_wrong_shape_rejects_only_that_payload(fixed_model: Path, tmp_path: Path) -> None:
    rt = onnx_runtime(fixed_model, tmp_path)
    payloads = [{"x": np.ones(3, np.float32)}, {"x": np.ones(4, np.float32)},
                {"x": np.ones((1, 3), np.float32)}, {"x": np.full(3, 2, np.float32)}]
    results = rt.infer(payloads)
    assert errors(results) == [1, 2]
    msg = str(results[1])
    assert "field 'x'" in msg and "(4,)" in msg and "(3)" in msg, msg
    assert "(1, 3)" in str(results[2])
    assert results[1].agent == "agent"
    assert results[1].model == str(fixed_model)
    np.testing.assert_array_equal(results[0]["y"], [2, 2, 2])
    np.testing.assert_array_equal(results[3]["y"], [4, 4, 4])
    assert float(results[3]["s"]) == 6.0


def test_onnx_missing_field_names_it(fixed_model: Path, tmp_path: Path) -> None:
    rt = onnx_runtime(fixed_model, tmp_path)
    results = rt.infer([{"z": 1, "w": 2}, {"x": [0, 0, 1]}, {}])
    assert errors(results) == [0, 2]
    assert "missing field 'x'" in str(results[0])
    assert "the payload has: w, z" in str(results[0])
    assert "the payload has: nothing" in str(results[2])
    np.testing.assert_array_equal(results[1]["y"], [0, 0, 2])


def test_onnx_wrong_dtype_is_rejected(fixed_model: Path, int_model: Path,
                                      tmp_path: Path) -> None:
    rt = onnx_runtime(fixed_model, tmp_path)
    results = rt.infer([{"x": ["a", "b", "c"]}, {"x": [1, None, 3]}, {"x": [1.0, 2.0, 3.0]}])
    assert errors(results) == [0, 1]
    assert "field 'x' has dtype <U1" in str(results[0])
    assert "needs float32" in str(results[0])
    assert "dtype object" in str(results[1])

    ints = onnx_runtime(int_model, tmp_path)
    results = ints.infer([{"k": np.array([1.5, 2.0])}, {"k": np.array([1, 2], np.int32)},
                          {"k": [7, 8]}])
    assert errors(results) == [0]
    assert ("field 'k' has dtype float64, shape (2,); model input 'k' needs int64"
            in str(results[0]))
    assert "floats are not truncated to integers" in str(results[0])
    for r, expected in zip(results[1:], ([2, 3], [8, 9]), strict=True):
        assert r["k1"].dtype == np.int64
        np.testing.assert_array_equal(r["k1"], expected)


def test_onnx_lists_are_accepted_and_cast(fixed_model: Path, tmp_path: Path) -> None:
    rt = onnx_runtime(fixed_model, tmp_path)
    results = rt.infer([{"x": [1, 2, 3]}, {"x": [0.5, 0.25, 0.125]},
                        {"x": np.array([1, 2, 3], np.float64)}, {"x": [True, False, True]}])
    assert errors(results) == [3]
    np.testing.assert_array_equal(results[0]["y"], [2, 4, 6])
    assert results[0]["y"].dtype == np.float32
    np.testing.assert_allclose(results[1]["s"], 0.875)
    np.testing.assert_array_equal(results[2]["y"], [2, 4, 6])
    assert "booleans are not converted to numbers" in str(results[3])


def test_onnx_input_map_output_map_and_outputs(fixed_model: Path, tmp_path: Path) -> None:
    rt = onnx_runtime(fixed_model, tmp_path, input_map={"x": "pixels"},
                      output_map={"y": "doubled", "s": "total"}, outputs=("y",))
    assert rt.input_fields == ("pixels",)
    assert rt.output_fields == ("doubled",)
    (r,) = rt.infer([{"pixels": [1, 2, 3], "x": "ignored"}])
    assert set(r) == {"doubled"}
    np.testing.assert_array_equal(r["doubled"], [2, 4, 6])
    (missing,) = rt.infer([{"x": [1, 2, 3]}])
    assert "missing field 'pixels' (model input 'x')" in str(missing)

    renamed_only = onnx_runtime(fixed_model, tmp_path, output_map={"s": "total"})
    assert renamed_only.output_fields == ("y", "total")
    (r,) = renamed_only.infer([{"x": [1, 1, 1]}])
    assert set(r) == {"y", "total"}
    assert float(r["total"]) == 3.0


def test_onnx_warmup_and_options(fixed_model: Path, dynamic_model: Path,
                                 tmp_path: Path) -> None:
    rt = onnx_runtime(fixed_model, tmp_path, options={"intra_op_threads": 1})
    calls: list[dict[str, np.ndarray]] = []
    run = rt._run
    rt._run = lambda feeds: calls.append(feeds) or run(feeds)  # type: ignore[method-assign]
    rt.warmup()
    assert [{k: v.shape for k, v in c.items()} for c in calls] == [{"x": (1, 3)}]
    dyn = onnx_runtime(dynamic_model, tmp_path)
    dyn.warmup()  # dynamic dims warm up with size 1


def test_onnx_dynamic_dimension_stacks_one_call_per_shape(dynamic_model: Path,
                                                          tmp_path: Path) -> None:
    rt = onnx_runtime(dynamic_model, tmp_path)
    assert rt.tensor_inputs[0].shape == (None,)
    shapes: list[tuple[int, ...]] = []
    run = rt._run
    rt._run = lambda feeds: shapes.append(feeds["x"].shape) or run(feeds)  # type: ignore
    xs = [np.arange(2, dtype=np.float32), np.arange(4, dtype=np.float32) + 10,
          np.array([5, 6], np.float32), np.arange(4, dtype=np.float32) - 1,
          np.array([1, 1], np.float32)]
    results = rt.infer([{"x": x} for x in xs])
    assert sorted(shapes) == [(2, 4), (3, 2)]
    for x, r in zip(xs, results, strict=True):
        assert r["y"].shape == x.shape
        np.testing.assert_array_equal(r["y"], x * 2)
        assert float(r["s"]) == float(x.sum())
    # a 2-D payload is still the wrong rank
    (bad,) = rt.infer([{"x": np.ones((2, 2), np.float32)}])
    assert "needs float32, shape (?) per request" in str(bad)


def test_onnx_bad_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load ONNX model") as info:
        onnx_runtime(bad, tmp_path)
    assert info.value.agent == "agent"
    assert "agent 'agent'" in str(info.value)


def test_select_providers() -> None:
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers("cpu", everything) == ["CPUExecutionProvider"]
    assert select_providers("cuda", everything) == everything
    assert select_providers("cuda:1", ["CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers("cuda", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert select_providers("cuda", []) == ["CPUExecutionProvider"]


def test_numpy_dtype() -> None:
    assert numpy_dtype("tensor(float)") == np.float32
    assert numpy_dtype("tensor(double)") == np.float64
    assert numpy_dtype("tensor(float16)") == np.float16
    assert numpy_dtype("tensor(int64)") == np.int64
    assert numpy_dtype("tensor(uint8)") == np.uint8
    assert numpy_dtype("bool") == np.bool_


def test_empty_batch_returns_nothing(fixed_model: Path, tmp_path: Path) -> None:
    assert onnx_runtime(fixed_model, tmp_path).infer([]) == []


# -------------------------------------------------------------------------------- torch

TORCH_MODULES = """
    import torch


    class Scale(torch.nn.Module):
        def __init__(self, factor=2.0):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor


    class Pair(torch.nn.Module):
        def forward(self, x, k):
            return x * 2, x.sum(1) + k


    class Named(torch.nn.Module):
        def forward(self, x):
            return {"double": x * 2, "neg": -x}


    class Threads(torch.nn.Module):
        def forward(self, x):
            return torch.full_like(x, torch.get_num_threads())


    def make(factor=2.0):
        return Scale(factor)


    def not_a_module():
        return 42


    def broken():
        raise RuntimeError("weights missing")
"""


def torch_runtime(base: Path, **spec: Any) -> Runtime:
    return load_runtime(ModelSpec(runtime="torch", **spec), base, "agent")


X3 = {"inputs": {"x": {"dtype": "float32", "shape": [3]}}, "outputs": ["y"]}


def test_torch_entrypoint_module(module: Callable[[str], str], tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    rt = torch_runtime(tmp_path, entrypoint=f"{mod}:make", options=X3)
    assert rt.input_fields == ("x",)
    assert rt.output_fields == ("y",)
    rt.warmup()
    xs = [np.array([1, 2, 3], np.float32), np.array([-1, 0, 0.5], np.float32)]
    results = rt.infer([{"x": xs[0]}, {"x": [1, 2]}, {"x": xs[1].tolist()}])
    assert errors(results) == [1]
    assert "field 'x' has dtype int64, shape (2,)" in str(results[1])
    np.testing.assert_allclose(results[0]["y"], xs[0] * 2)
    np.testing.assert_allclose(results[2]["y"], xs[1] * 2)
    assert results[0]["y"].dtype == np.float32


def test_torch_intra_op_threads_hold_on_every_thread_that_runs_the_model(
        module: Callable[[str], str], tmp_path: Path) -> None:
    """Under OpenMP torch's thread count is a setting of each thread: a model loaded on
    the worker's model thread and run on its event loop (a quick step) runs with
    ``intra_op_threads`` there too, not with the machine's cores; and two models of a
    co-located group sharing a thread each run with their own."""
    mod = module(TORCH_MODULES)
    machine = max(2, os.cpu_count() or 2)
    restore = torch.get_num_threads()
    with ThreadPoolExecutor(1) as loader:
        one, two = (loader.submit(torch_runtime, tmp_path, entrypoint=f"{mod}:Threads",
                                  options={**X3, "intra_op_threads": n}).result()
                    for n in (1, 2))
    on_another = ThreadPoolExecutor(1)
    try:
        on_another.submit(torch.set_num_threads, machine).result()
        for rt, threads in ((one, 1), (two, 2), (one, 1)):
            (result,) = on_another.submit(rt.infer, [{"x": [1.0, 2.0, 3.0]}]).result()
            np.testing.assert_array_equal(result["y"], [threads] * 3)
    finally:
        on_another.shutdown()
        torch.set_num_threads(restore)


def test_torch_entrypoint_kwargs(module: Callable[[str], str], tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    rt = torch_runtime(tmp_path, entrypoint=f"{mod}:Scale", options={**X3, "kwargs": {
        "factor": 10.0}}, output_map={"y": "scaled"})
    (r,) = rt.infer([{"x": [1, 2, 3]}])
    np.testing.assert_allclose(r["scaled"], [10, 20, 30])


def test_torch_defaults_input_and_output(module: Callable[[str], str], tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    rt = torch_runtime(tmp_path, entrypoint=f"{mod}:make")
    assert rt.input_fields == ("input",)
    assert rt.output_fields == ("output",)
    # no declared shape: payloads of any shape, one model call per shape
    results = rt.infer([{"input": [1.0, 2.0]}, {"input": [[1.0], [2.0], [3.0]]}])
    np.testing.assert_allclose(results[0]["output"], [2, 4])
    np.testing.assert_allclose(results[1]["output"], [[2], [4], [6]])


def test_torch_tuple_outputs_are_named_in_order(module: Callable[[str], str],
                                                tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    options = {"inputs": {"x": {"dtype": "float32", "shape": [3]},
                          "k": {"dtype": "float32"}},
               "outputs": ["y", "total"]}
    rt = torch_runtime(tmp_path, entrypoint=f"{mod}:Pair", options=options,
                       input_map={"k": "offset"}, outputs=("total",))
    assert rt.input_fields == ("x", "offset")
    results = rt.infer([{"x": [1, 2, 3], "offset": 100.0}, {"x": [0, 0, 1], "offset": 0.5}])
    assert [set(r) for r in results] == [{"total"}, {"total"}]
    assert float(results[0]["total"]) == 106.0
    assert float(results[1]["total"]) == 1.5


def test_torch_output_count_mismatch_is_a_record_error(module: Callable[[str], str],
                                                       tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    options = {"inputs": {"x": {"shape": [3]}, "k": {}}, "outputs": ["only"]}
    rt = torch_runtime(tmp_path, entrypoint=f"{mod}:Pair", options=options)
    results = rt.infer([{"x": [1, 2, 3], "k": 1.0}, {"x": [1, 2, 3], "k": 2.0}])
    assert errors(results) == [0, 1]
    assert "returned 2 outputs but options name 1: only" in str(results[0])


def test_torch_dict_outputs_keep_their_keys(module: Callable[[str], str],
                                            tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    rt = torch_runtime(tmp_path, entrypoint=f"{mod}:Named",
                       options={"inputs": {"x": {"shape": [2]}}},
                       output_map={"neg": "negated"})
    (r,) = rt.infer([{"x": [1.5, -2]}])
    assert set(r) == {"double", "negated"}
    np.testing.assert_allclose(r["double"], [3, -4])
    np.testing.assert_allclose(r["negated"], [-1.5, 2])


def test_torch_entrypoint_returning_non_module(module: Callable[[str], str],
                                               tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    with pytest.raises(ModelError, match=r"returned int, not a torch\.nn\.Module") as info:
        torch_runtime(tmp_path, entrypoint=f"{mod}:not_a_module")
    assert f"{mod}:not_a_module" in str(info.value)
    with pytest.raises(ModelError, match="cannot load torch model: weights missing"):
        torch_runtime(tmp_path, entrypoint=f"{mod}:broken")
    with pytest.raises(ModelError, match="no attribute 'nothing'"):
        torch_runtime(tmp_path, entrypoint=f"{mod}:nothing")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_torch_cuda_without_cuda_is_a_model_error(module: Callable[[str], str],
                                                  tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    with pytest.raises(ModelError, match="torch sees no CUDA device"):
        torch_runtime(tmp_path, entrypoint=f"{mod}:make", device="cuda")


def test_torchscript_file(module: Callable[[str], str], tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    scale = import_entrypoint(f"{mod}:Scale", tmp_path)(3.0)
    path = tmp_path / "scale.pt"
    with torchscript_allowed():
        torch.jit.script(scale).save(str(path))
    # loading warns no more (filterwarnings = error would fail the test)
    rt = torch_runtime(tmp_path, path=path, options=X3)
    rt.warmup()
    results = rt.infer([{"x": [1, 2, 3]}, {"x": np.array([0, -1, 2], np.float64)}])
    np.testing.assert_allclose(results[0]["y"], [3, 6, 9])
    np.testing.assert_allclose(results[1]["y"], [0, -3, 6])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load torch model"):
        torch_runtime(tmp_path, path=bad, options=X3)


def test_torch_describe_reads_the_torchscript_signature(module: Callable[[str], str],
                                                       tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    pair = import_entrypoint(f"{mod}:Pair", tmp_path)()
    with torchscript_allowed():
        torch.jit.script(pair).save(str(tmp_path / "pair.pt"))
    two = {"inputs": {"x": {"shape": [3]}, "k": {"dtype": "float32"}}, "outputs": ["y", "s"]}
    info = describe_model(ModelSpec(runtime="torch", path=tmp_path / "pair.pt", options=two,
                                    output_map={"s": "total"}, outputs=("s",)), tmp_path)
    assert (info.inputs, info.outputs) == (("x", "k"), ("total",))
    with pytest.raises(ModelError, match=r"forward takes \(x, k\), 2 required, but the "
                                         r"model options declare 1 input\(s\): x"):
        describe_model(ModelSpec(runtime="torch", path=tmp_path / "pair.pt", options=X3),
                       tmp_path)
    (tmp_path / "state.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="is not a TorchScript file"):
        describe_model(ModelSpec(runtime="torch", path=tmp_path / "state.pt"), tmp_path)


def test_torch_describe_imports_the_entrypoint_without_calling_it(
        module: Callable[[str], str], tmp_path: Path) -> None:
    mod = module(TORCH_MODULES)
    info = describe_model(ModelSpec(runtime="torch", entrypoint=f"{mod}:broken", options=X3),
                          tmp_path)  # calling it would raise "weights missing"
    assert (info.inputs, info.outputs) == (("x",), ("y",))
    with pytest.raises(ModelError, match="no attribute 'nothing'"):
        describe_model(ModelSpec(runtime="torch", entrypoint=f"{mod}:nothing"), tmp_path)


# ------------------------------------------------------------------------------- python

PY_MODULE = """
    created = []


    def inc(batch):
        return [{"x": p["x"] + 1, "seen": sorted(p)} for p in batch]
    inc.outputs = ["x", "seen"]


    def short(batch):
        return batch[:-1]


    def not_dicts(batch):
        return [p["x"] for p in batch]


    def not_a_list(batch):
        return {"x": 1}


    calls = []


    def picky(batch):
        calls.append(len(batch))
        for p in batch:
            if p["x"] < 0:
                raise ValueError(f"negative x {p['x']}")
        return [{"sqrt": p["x"] ** 0.5} for p in batch]


    def mutating(batch):
        for p in batch:
            p["x"] = "changed"
            p["new"] = 1
        return [{"ok": True} for _ in batch]


    def needs_ab(batch):
        return [{"sum": p["a"] + p["b"]} for p in batch]
    needs_ab.inputs = ("a", "b")


    class Model:
        inputs = ["x"]
        outputs = ["y"]

        def __init__(self, scale=1, offset=0):
            created.append((scale, offset))
            self.scale, self.offset = scale, offset
            self.warmed = 0

        def warmup(self):
            self.warmed += 1

        def __call__(self, batch):
            return [{"y": p["x"] * self.scale + self.offset, "extra": 0} for p in batch]


    class Namespace:
        class Inner:
            @staticmethod
            def run(batch):
                return [{"inner": True} for _ in batch]
"""


def py_runtime(base: Path, entrypoint: str, **spec: Any) -> Runtime:
    return load_runtime(ModelSpec(runtime="python", entrypoint=entrypoint, **spec), base,
                        "agent")


def test_python_function_entrypoint(module: Callable[[str], str], tmp_path: Path) -> None:
    mod = module(PY_MODULE)
    rt = py_runtime(tmp_path, f"{mod}:inc", output_map={"x": "x_plus_one"})
    assert rt.input_fields is None
    assert rt.output_fields == ("x_plus_one", "seen")
    rt.warmup()  # a function has no warmup: nothing happens
    results = rt.infer([{"x": 1}, {"x": 10, "y": "z"}])
    assert results == [{"x_plus_one": 2, "seen": ["x"]},
                       {"x_plus_one": 11, "seen": ["x", "y"]}]
    only = py_runtime(tmp_path, f"{mod}:inc", outputs=("seen",))
    assert only.infer([{"x": 0}]) == [{"seen": ["x"]}]


def test_python_payloads_are_copied(module: Callable[[str], str], tmp_path: Path) -> None:
    mod = module(PY_MODULE)
    payload = {"x": 1}
    assert py_runtime(tmp_path, f"{mod}:mutating").infer([payload]) == [{"ok": True}]
    assert payload == {"x": 1}


def test_python_class_entrypoint_instantiated_once_with_options(
        module: Callable[[str], str], tmp_path: Path) -> None:
    mod = module(PY_MODULE)
    rt = py_runtime(tmp_path, f"{mod}:Model", options={"scale": 3, "offset": 1},
                    output_map={"y": "score"})
    created = importlib.import_module(mod).created
    assert created == [(3, 1)]
    assert rt.input_fields == ("x",)
    assert rt.output_fields == ("score",)
    assert rt.fn.warmed == 0
    rt.warmup()
    assert rt.fn.warmed == 1
    assert rt.infer([{"x": 2}, {"x": 0}]) == [{"score": 7, "extra": 0},
                                             {"score": 1, "extra": 0}]
    assert rt.infer([{"x": 5}]) == [{"score": 16, "extra": 0}]
    assert created == [(3, 1)]  # not instantiated again per batch


def test_python_wrong_result_length_fails_every_payload(module: Callable[[str], str],
                                                        tmp_path: Path) -> None:
    mod = module(PY_MODULE)
    results = py_runtime(tmp_path, f"{mod}:short").infer([{"x": 1}, {"x": 2}, {"x": 3}])
    assert errors(results) == [0, 1, 2]
    assert "TypeError" in str(results[0])
    assert f"entrypoint '{mod}:short' must return a list of 1 dicts, got list of 0" in str(
        results[0])
    (r,) = py_runtime(tmp_path, f"{mod}:not_a_list").infer([{"x": 1}])
    assert "got dict" in str(r)
    (r,) = py_runtime(tmp_path, f"{mod}:not_dicts").infer([{"x": 1}])
    assert "returned a int where a dict was expected" in str(r)


def test_python_one_raising_payload_fails_alone(module: Callable[[str], str],
                                                tmp_path: Path) -> None:
    mod = module(PY_MODULE)
    rt = py_runtime(tmp_path, f"{mod}:picky")
    calls = importlib.import_module(mod).calls
    results = rt.infer([{"x": 4}, {"x": -1}, {"x": 9}])
    assert errors(results) == [1]
    assert str(results[1]) == "agent 'agent': ValueError: negative x -1"
    assert results[1].agent == "agent"
    assert results[1].model == f"{mod}:picky"
    assert results[0] == {"sqrt": 2.0}
    assert results[2] == {"sqrt": 3.0}
    assert calls == [3, 1, 1, 1]  # the whole batch, then each payload alone
    calls.clear()
    assert rt.infer([{"x": 1}, {"x": 16}]) == [{"sqrt": 1.0}, {"sqrt": 4.0}]
    assert calls == [2]  # no retries when the batch succeeds


def test_python_declared_inputs_missing_field(module: Callable[[str], str],
                                              tmp_path: Path) -> None:
    mod = module(PY_MODULE)
    rt = py_runtime(tmp_path, f"{mod}:needs_ab")
    assert rt.input_fields == ("a", "b")
    assert rt.output_fields is None
    info = describe_model(ModelSpec(runtime="python", entrypoint=f"{mod}:needs_ab"), tmp_path)
    assert (info.inputs, info.outputs, dict(info.shapes)) == (("a", "b"), None, {})
    results = rt.infer([{"a": 1, "b": 2}, {"a": 1}, {}])
    assert errors(results) == [1, 2]
    assert "missing field(s) b" in str(results[1])
    assert "missing field(s) a, b" in str(results[2])
    assert results[0] == {"sum": 3}


def test_python_nested_attribute_entrypoint(module: Callable[[str], str],
                                            tmp_path: Path) -> None:
    mod = module(PY_MODULE)
    rt = py_runtime(tmp_path, f"{mod}:Namespace.Inner.run")
    assert rt.infer([{}, {}]) == [{"inner": True}, {"inner": True}]


def test_import_entrypoint_errors(module: Callable[[str], str], tmp_path: Path) -> None:
    mod = module(PY_MODULE)
    with pytest.raises(ModelError, match="cannot import module 'no_such_module_xyz'") as info:
        import_entrypoint("no_such_module_xyz:run", tmp_path)
    assert "'no_such_module_xyz:run'" in str(info.value)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ModelError, match=f"module '{mod}' has no attribute 'missing'") as info:
        import_entrypoint(f"{mod}:missing", tmp_path)
    assert f"'{mod}:missing'" in str(info.value)
    with pytest.raises(ModelError, match=r"no attribute 'Namespace\.Nope'"):
        import_entrypoint(f"{mod}:Namespace.Nope", tmp_path)
    with pytest.raises(ModelError, match="cannot import module"):
        py_runtime(tmp_path, "no_such_module_xyz:run")
    assert import_entrypoint(f"{mod}:inc", tmp_path)([{"x": 0}]) == [{"x": 1, "seen": ["x"]}]
    assert str(tmp_path) in sys.path


def test_runtime_error_helper_names_model(module: Callable[[str], str],
                                          tmp_path: Path) -> None:
    mod = module(PY_MODULE)
    rt = py_runtime(tmp_path, f"{mod}:inc")
    err = rt.error("boom")
    assert isinstance(err, RecordError) and isinstance(err, ModelError)
    assert (err.agent, err.model, err.message) == ("agent", f"{mod}:inc", "boom")


def test_python_describe_reads_a_class_without_instantiating_it(
        module: Callable[[str], str], tmp_path: Path) -> None:
    mod = module(PY_MODULE)
    info = describe_model(ModelSpec(runtime="python", entrypoint=f"{mod}:Model",
                                    options={"scale": 3}, output_map={"y": "score"}), tmp_path)
    assert (info.inputs, info.outputs) == (("x",), ("score",))
    assert importlib.import_module(mod).created == []


def test_unknown_runtime_is_an_error(tmp_path: Path) -> None:
    spec = ModelSpec(runtime="tensorflow", path=tmp_path / "m.pb")
    for call in (load_runtime, describe_model):
        with pytest.raises(ModelError, match="unknown runtime 'tensorflow'"):
            call(spec, tmp_path)
