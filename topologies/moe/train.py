"""Training of the mixture-of-experts example models on :mod:`moe.data`'s three regions.

* the gate, ``moe_gate.onnx``: a multinomial logistic regression predicting the region
  from all four features; its outputs are ``region`` (int64 [N]) and ``scores`` (float32
  [N,3], the region probabilities in :data:`moe.data.REGIONS` order, which is the
  order of the router's ``experts``);
* one expert per region, ``moe_expert_<region>.onnx``, fitted on that region's training
  samples only, each matched to its rule: ``a`` a logistic regression (half-plane),
  ``b`` a random forest (checkerboard), ``c`` a logistic regression on degree-2
  polynomial features (disc). Their outputs are ``label`` (int64 [N]) and ``proba``
  (float32 [N,2]).

Every model takes ``features`` float32 [N,4] and is exported by skl2onnx without ZipMap.
The held-out split is saved as ``moe_test.npz`` (``X`` float32 [N,4], ``y`` and
``region`` int64 [N]). Everything is seeded: two runs write the same files. The command
line is ``scripts/train_moe.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import PolynomialFeatures
from training import save_onnx, write_atomically

from .data import FEATURES, REGIONS, SEED, Split, load_split
from .direct import EXPERT_FILES, GATE_FILE, INPUT, MODELS_DIR, TEST_FILE

CLASSES = 2

Trainer = Callable[[Split, Path], float]


def _save_onnx(model: ClassifierMixin | Pipeline, outputs: tuple[str, str], classes: int,
               path: Path) -> ort.InferenceSession:
    """Save a fitted classifier as ONNX: input ``features`` float32 [N,4], outputs the
    label (int64 [N]) and the class probabilities (float32 [N,classes]) under the names
    ``outputs``, no ZipMap. Returns an ONNX Runtime session of the saved model."""
    return save_onnx(model, path, inputs=(INPUT, FEATURES), outputs=outputs, classes=classes)


def train_gate(split: Split, path: Path) -> float:
    """Fit the gate on every training sample and save it (outputs ``region``,
    ``scores``). Returns the ONNX model's held-out region accuracy."""
    gate = LogisticRegression(max_iter=1000, random_state=SEED)
    gate.fit(split.x_train, split.region_train)
    session = _save_onnx(gate, ("region", "scores"), len(REGIONS), path)
    (region,) = session.run(["region"], {INPUT: split.x_test})
    return float(np.mean(region == split.region_test))


def _expert_model(region: str) -> ClassifierMixin | Pipeline:
    """The unfitted expert of a region, suited to that region's labelling rule."""
    if region == "a":
        return LogisticRegression(max_iter=1000, random_state=SEED)
    if region == "b":
        return RandomForestClassifier(n_estimators=30, max_depth=8, random_state=SEED)
    return make_pipeline(PolynomialFeatures(degree=2),
                         LogisticRegression(C=10.0, max_iter=5000, random_state=SEED))


def expert_trainer(region: str) -> Trainer:
    """The trainer of ``region``'s expert: fits it on that region's training samples and
    saves it (outputs ``label``, ``proba``); returns the ONNX model's held-out accuracy
    on that region's test samples."""
    number = REGIONS.index(region)

    def train(split: Split, path: Path) -> float:
        model = _expert_model(region)
        mine = split.region_train == number
        model.fit(split.x_train[mine], split.y_train[mine])
        session = _save_onnx(model, ("label", "proba"), CLASSES, path)
        held_out = split.region_test == number
        (label,) = session.run(["label"], {INPUT: split.x_test[held_out]})
        return float(np.mean(label == split.y_test[held_out]))

    return train


TRAINERS: dict[str, Trainer] = {
    GATE_FILE: train_gate,
    **{EXPERT_FILES[f"expert_{r}"]: expert_trainer(r) for r in REGIONS},
}


def save_test_split(split: Split, path: Path) -> None:
    """Save the held-out samples: ``X`` float32 [N,4], ``y`` and ``region`` int64 [N]."""
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, X=split.x_test, y=split.y_test, region=split.region_test)

    write_atomically(path, write)


def train_all(out_dir: Path = MODELS_DIR, *, force: bool = False) -> dict[str, float | None]:
    """Write the test split and every model into ``out_dir``, keeping the files that
    already exist unless ``force``. Returns each model file's held-out accuracy (the
    gate's on regions, an expert's on its own region), ``None`` for a file kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    split = load_split()
    if force or not (out_dir / TEST_FILE).exists():
        save_test_split(split, out_dir / TEST_FILE)
    return {name: train(split, out_dir / name)
            if force or not (out_dir / name).exists() else None
            for name, train in TRAINERS.items()}
