"""The digits ensembles computed directly, in-process, without streamcompose.

The members (``logreg``, ``forest``, ``mlp``, ``cnn``) are run with onnxruntime and torch
on the inputs :func:`digits.steps.to_input` makes, and their probabilities fused as the
joiners of ``digits_ensemble.yaml`` (soft vote) and ``digits_stacking.yaml`` (stacking)
fuse them: in the member order :data:`MEMBERS`, which is the joiners' ``inputs`` order.
The report script and the tests compare what the topologies give with these. The soft
vote weighs the members as the joiner's ``weights`` say (1 for a member not named); the
training writes the weights it chose into ``digits_weights.json``, which
:func:`trained_weights` reads.

>>> probas = {m: np.eye(10, dtype=np.float32)[[i]] for i, m in enumerate(MEMBERS)}
>>> soft_vote(probas).argmax(axis=1), stacking_features(probas).shape
(array([0]), (1, 40))
>>> soft_vote(probas, {"mlp": 2})[0, :4].tolist()
[0.2, 0.2, 0.4, 0.2]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from streamcompose.runtimes.torch_runtime import load_torchscript

from .steps import to_input

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: the ensemble members in the joiners' ``inputs`` order
MEMBERS = ("logreg", "forest", "mlp", "cnn")
#: each member's model file and the ``Features`` field it reads (``flat`` or ``image``)
MEMBER_FILES = {"logreg": ("digits_logreg.onnx", "flat"), "forest": ("digits_forest.onnx", "flat"),
                "mlp": ("digits_mlp.pt", "flat"), "cnn": ("digits_cnn.pt", "image")}
STACK_FILE = "digits_stack.onnx"
#: the soft vote's weights chosen by the training, a JSON mapping of members to numbers
WEIGHTS_FILE = "digits_weights.json"


def features(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The members' inputs for raw digits [N,64] (0..16): ``flat`` float32 [N,64] and
    ``image`` float32 [N,1,8,8], pixels divided by 16 as the ``Features`` step does."""
    image = np.stack([to_input(row) for row in pixels])
    return {"flat": image.reshape(len(image), 64), "image": image}


def onnx_outputs(path: Path, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    """The named outputs of an ONNX model whose single input takes ``x`` (CPU provider)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(outputs, {name: x})


def torch_proba(path: Path, x: np.ndarray) -> np.ndarray:
    """The output of a TorchScript model of one input (the digits models give ``proba``)."""
    module = load_torchscript(path)
    with torch.inference_mode():
        return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def member_probabilities(pixels: np.ndarray, models_dir: Path = MODELS_DIR
                         ) -> dict[str, np.ndarray]:
    """Each member's class probabilities, float32 [N,10], for raw digits [N,64]; keyed in
    :data:`MEMBERS` order."""
    inputs = features(pixels)
    probas = {}
    for member in MEMBERS:
        file, field = MEMBER_FILES[member]
        path = models_dir / file
        probas[member] = (onnx_outputs(path, inputs[field], ["proba"])[0]
                          if path.suffix == ".onnx" else torch_proba(path, inputs[field]))
    return probas


def trained_weights(models_dir: Path = MODELS_DIR) -> dict[str, float]:
    """The soft vote's weights the training chose (``digits_weights.json``), by member."""
    weights = json.loads((models_dir / WEIGHTS_FILE).read_text(encoding="utf-8"))
    return {member: weights[member] for member in MEMBERS}


def soft_vote(probas: Mapping[str, np.ndarray],
              weights: Mapping[str, float] | None = None) -> np.ndarray:
    """The soft vote's probabilities, float64 [N,10]: the weighted mean of the members'
    probabilities (``weights`` by member, 1 for a member not named, as the joiner's
    ``weights``), summed in :data:`MEMBERS` order and divided by the sum of the weights,
    as the joiner computes it."""
    weights = weights or {}
    factors = [float(weights.get(member, 1.0)) for member in MEMBERS]
    total = np.zeros_like(np.asarray(probas[MEMBERS[0]], dtype=np.float64))
    for member, factor in zip(MEMBERS, factors, strict=True):
        total = total + factor * np.asarray(probas[member], dtype=np.float64)
    return total / np.sum(factors)


def stacking_features(probas: Mapping[str, np.ndarray]) -> np.ndarray:
    """The meta-model's input, float32 [N,40]: the members' probabilities side by side in
    :data:`MEMBERS` order."""
    return np.concatenate([np.asarray(probas[m], dtype=np.float32) for m in MEMBERS], axis=1)


def stack(probas: Mapping[str, np.ndarray], path: Path = MODELS_DIR / STACK_FILE
          ) -> tuple[np.ndarray, np.ndarray]:
    """The stacking meta-model on the members' probabilities: its ``label`` int64 [N] and
    ``proba`` float32 [N,10]."""
    label, proba = onnx_outputs(path, stacking_features(probas), ["label", "proba"])
    return label, proba


def accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    """The share of ``labels`` equal to ``truth``."""
    return float(np.mean(np.asarray(labels) == np.asarray(truth)))
