"""What the example trainings share: writing files atomically, exporting scikit-learn
classifiers to ONNX, and the command line of ``scripts/train_*.py``.

``scripts/train_digits.py``, ``scripts/train_moe.py`` and ``scripts/train_textgraph.py``
each call :func:`main` with their docstring and the module whose ``train_all(out_dir, *,
force)`` writes the models; ``digits/train.py`` and ``moe/train.py`` save their models
with :func:`write_atomically` and :func:`save_onnx`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnxruntime as ort

TOPOLOGIES = Path(__file__).resolve().parent
MODELS_DIR = TOPOLOGIES / "models"
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}
KEPT = "exists, kept (--force retrains)"


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, so no reader sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def save_onnx(model: Any, path: Path, *, inputs: tuple[str, int], outputs: tuple[str, str],
              classes: int) -> ort.InferenceSession:
    """Save a fitted scikit-learn classifier (or a pipeline ending in one) as ONNX, no
    ZipMap: input ``inputs[0]`` float32 [N,inputs[1]], outputs the label (int64 [N]) and
    the class probabilities (float32 [N,classes]) under the names ``outputs``, the opsets
    of :data:`ONNX_OPSET` listed in domain order. Returns an ONNX Runtime session of the
    saved model."""
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
    from sklearn.pipeline import Pipeline

    classifier = model.steps[-1][1] if isinstance(model, Pipeline) else model
    onx = to_onnx(model, initial_types=[(inputs[0], FloatTensorType([None, inputs[1]]))],
                  final_types=[(outputs[0], Int64TensorType([None])),
                               (outputs[1], FloatTensorType([None, classes]))],
                  options={id(classifier): {"zipmap": False}}, target_opset=ONNX_OPSET)
    # skl2onnx lists the opsets in set order, which varies with the hash seed
    opsets = sorted(onx.opset_import, key=lambda opset: opset.domain)
    del onx.opset_import[:]
    onx.opset_import.extend(opsets)
    data = onx.SerializeToString()
    write_atomically(path, lambda tmp: tmp.write_bytes(data))
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def status(result: float | str | None) -> str:
    """What the command line says of a model file: :data:`KEPT` for ``None`` (or an empty
    summary), the held-out accuracy for a float, else the trainer's summary."""
    if result is None or result == "":
        return KEPT
    if isinstance(result, float):
        return f"held-out accuracy {result:.4f}"
    return result


def main(description: str, module: str, argv: list[str] | None = None, *,
         after: Callable[[Path], None] | None = None, options: bool = False) -> int:
    """The command line of a training script: parse ``--out`` and ``--force`` (and, with
    ``options``, ``--only FILE`` and ``--seed N``, passed on when given), import ``module``
    from the topologies folder, run its ``train_all`` and print each model file's
    :func:`status`; then ``after(out)``, if given. Returns the exit status."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=MODELS_DIR,
                        help="folder for the model files (default: topologies/models)")
    parser.add_argument("--force", action="store_true",
                        help="retrain and overwrite the files that already exist")
    if options:
        parser.add_argument("--only", metavar="FILE", help="train only this model file")
        parser.add_argument("--seed", type=int, help="seed the training with this instead "
                            "(another version of the model)")
    args = parser.parse_args(argv)
    if str(TOPOLOGIES) not in sys.path:
        sys.path.insert(0, str(TOPOLOGIES))
    train_all = importlib.import_module(module).train_all
    chosen = {k: getattr(args, k) for k in ("only", "seed") if getattr(args, k, None) is not None}
    for name, result in train_all(args.out, force=args.force, **chosen).items():
        print(f"{args.out / name}: {status(result)}")
    if after is not None and "only" not in chosen:
        after(args.out)
    return 0
