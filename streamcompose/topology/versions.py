"""The version of an agent's model, as results name it in their lineage and ``status``
shows it: the ``version`` the topology gives the model, or else a short hash of what the
model is made of (its file, every file of a model folder, or the module file of a python
entrypoint). An agent without a model (a switch, a split, a joiner voting) is versioned
by a hash of its settings, so that changing them shows too.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "m.onnx").write_bytes(b"weights")
>>> model_version(ModelSpec(runtime="onnx", path=folder / "m.onnx"), folder)
'9a129038'
>>> model_version(ModelSpec(runtime="onnx", path=folder / "m.onnx", version="3"), folder)
'3'
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from streamcompose.topology.model import Topology
from streamcompose.topology.specs import AgentSpec, ModelSpec

HASH_CHARS = 8
_CHUNK = 1 << 20


def _digest_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:HASH_CHARS]


def _digest_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def module_file(entrypoint: str, base_dir: Path) -> Path | None:
    """The file of an entrypoint's module (``module:callable``): looked up under
    ``base_dir`` first, as workers import it, then on the import path; None if not
    found."""
    module = entrypoint.split(":", 1)[0]
    local = base_dir.joinpath(*module.split("."))
    for candidate in (local.with_suffix(".py"), local / "__init__.py"):
        if candidate.is_file():
            return candidate
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and Path(origin).is_file() else None


def model_version(model: ModelSpec, base_dir: Path) -> str:
    """The model's declared version, or a short content hash of its file(s)."""
    if model.version is not None:
        return model.version
    if model.path is not None:
        path = Path(model.path)
        if path.is_dir():
            return _digest_files(sorted(p for p in path.rglob("*") if p.is_file()))
        if path.is_file():
            return _digest_files([path])
    if model.entrypoint is not None:
        file = module_file(model.entrypoint, base_dir)
        return _digest_files([file]) if file is not None else _digest_text(model.entrypoint)
    return _digest_text(repr(model))


def _settings_version(spec: AgentSpec) -> str:
    return _digest_text(repr((spec.inputs, spec.join, spec.router, spec.drop)))


def agent_version(topology: Topology, agent: str) -> str:
    """The version of ``agent``: its model's, the meta-model's or python aggregator's
    of a joiner, the gate's of a mixture-of-experts router, else of its settings."""
    spec = topology.agent(agent)
    base = topology.base_dir
    model = spec.model or (spec.join.model if spec.join else None) or (
        spec.router.model if spec.router else None)
    if model is not None:
        return model_version(model, base)
    if spec.join is not None and spec.join.entrypoint is not None:
        file = module_file(spec.join.entrypoint, base)
        if file is not None:
            return _digest_files([file])
    return _settings_version(spec)
