"""Packaging: ONNX Runtime is an extra (``[cpu]`` or ``[gpu]``), so its absence must be
reported with both install commands, not as a bare ImportError."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamcompose.errors import ModelError
from streamcompose.runtimes import load_runtime
from streamcompose.topology.model import ModelSpec


def test_onnx_agent_without_onnxruntime_names_both_extras(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    spec = ModelSpec(runtime="onnx", path=tmp_path / "model.onnx")
    with pytest.raises(ModelError) as caught:
        load_runtime(spec, tmp_path, "ocr")
    message = str(caught.value)
    assert message.startswith("agent 'ocr': ONNX Runtime is not installed")
    assert "pip install 'streamcompose[cpu]'" in message
    assert "pip install 'streamcompose[gpu]'" in message
    assert isinstance(caught.value.__cause__, ImportError)
