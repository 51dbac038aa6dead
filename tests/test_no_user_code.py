"""Checking a topology runs no user code and loads only what it needs.

``validate`` and ``graph`` import python entrypoints to check that they exist, but never
instantiate nor call them: an entrypoint ``subprocess:Popen`` whose options would run a
shell command runs nothing. Loading a topology, an ONNX model or a python model never
imports torch, and neither does the model check of ONNX, python and TorchScript models.
Each case runs in a fresh interpreter, as the CLI does. Unit tests: no broker needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures import write_double_onnx

from streamcompose.runtimes.torch_runtime import torchscript_allowed

ROOT = Path(__file__).resolve().parents[1]
ENSEMBLE = ROOT / "topologies" / "digits_ensemble.yaml"


def popen(marker: Path, kwargs: bool = False) -> str:
    """An entrypoint that, instantiated with its options, would create ``marker``."""
    options = f'{{args: "touch {marker}", shell: true}}'
    return ('entrypoint: "subprocess:Popen", options: '
            + (f"{{kwargs: {options}}}" if kwargs else options))


def shell_topology(folder: Path, extra: str = "") -> tuple[Path, list[Path]]:
    """A topology whose every kind of user code is ``subprocess:Popen``: an agent's
    model, a torch module factory, a router's gate, a stacking meta-model and a python
    aggregator. Returns its file and the files instantiating any of them would create."""
    markers = [folder / f"ran_{i}" for i in range(5)]
    path = folder / "shell.yaml"
    path.write_text(f"""\
name: shell
agents:
  gate:
    inputs: [$input]
    route:
      model: {{runtime: python, {popen(markers[0])}}}
      experts: [a, b]
  a: {{inputs: [gate], model: {{runtime: python, {popen(markers[1])}}}}}
  b: {{inputs: [gate], model: {{runtime: torch, {popen(markers[2], kwargs=True)}}}}}
  stack:
    inputs: [a, b]
    join: {{strategy: stacking, model: {{runtime: python, {popen(markers[3])}}}}}
  mix:
    inputs: [a, b]
    join: {{strategy: python, {popen(markers[4])}}}
{extra}""", encoding="utf-8")
    return path, markers


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    return subprocess.run([sys.executable, "-m", "streamcompose.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def assert_nothing_ran(markers: list[Path]) -> None:
    time.sleep(0.5)  # a shell started by Popen would have touched its file by now
    assert [m.name for m in markers if m.exists()] == []


@pytest.mark.parametrize("args", [["validate"], ["validate", "--json"], ["graph"],
                                  ["graph", "--format", "png", "-o", "g.png"]])
def test_validate_and_graph_never_instantiate_entrypoints(tmp_path: Path, args: list[str]):
    path, markers = shell_topology(tmp_path)
    result = cli(args[0], path, *[tmp_path / a if a.endswith(".png") else a for a in args[1:]])
    assert result.returncode == 0, result.stderr
    assert_nothing_ran(markers)


def test_failing_validate_never_instantiates_entrypoints(tmp_path: Path):
    path, markers = shell_topology(
        tmp_path, "  late: {inputs: [stack], model: {runtime: onnx, path: nope.onnx}}\n")
    result = cli("validate", path, "--json")
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert (error["key"], error["line"]) == ("agents.late.model.path", 16)
    assert "model file not found" in error["message"]
    assert_nothing_ran(markers)


NO_TORCH = """
import sys
from pathlib import Path

import numpy as np

from streamcompose.topology import load_topology, load_topology_text
import streamcompose.runtimes
assert "torch" not in sys.modules, "importing the packages"

topology = load_topology(sys.argv[1])
assert topology.agent("cnn").model.runtime == "torch"
assert "torch" not in sys.modules, "load_topology of a topology with torch agents"

from streamcompose.runtimes import check_models, load_runtime
from streamcompose.topology.model import ModelSpec

folder = Path(sys.argv[2])
onnx = load_runtime(ModelSpec(runtime="onnx", path=folder / "double.onnx"), folder, "m")
onnx.warmup()
assert onnx.infer([{"x": np.ones(3, np.float32)}])[0]["y"].tolist() == [2, 2, 2]
assert load_runtime(ModelSpec(runtime="python", entrypoint="copy:copy"), folder).infer(
    [{"x": 1}]) == [{"x": 1}]
assert "torch" not in sys.modules, "loading and running ONNX and python models"

check_models(load_topology_text('''
name: checked
fields: [x]
agents:
  double: {inputs: [$input], model: {runtime: onnx, path: double.onnx}}
  copy: {inputs: [double], model: {runtime: python, entrypoint: "copy:copy"}}
  script:
    inputs: [double]
    model: {runtime: torch, path: identity.pt, input_map: {input: y}}
''', folder))
assert "torch" not in sys.modules, "the model check of ONNX, python and TorchScript models"
print("no torch")
"""


def test_loading_never_imports_torch(tmp_path: Path):
    write_double_onnx(tmp_path / "double.onnx")
    with torchscript_allowed():
        torch.jit.script(torch.nn.Identity()).save(str(tmp_path / "identity.pt"))
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(ENSEMBLE), str(tmp_path)],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no torch"
