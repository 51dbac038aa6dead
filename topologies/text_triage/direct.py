"""The text triage computed in-process, without streamcompose: what the tokenize,
encoder and classifier agents compute, run directly on the model files, for the
training, the tests and ``benchmarks/text.py``.

:func:`embed` runs the encoder as the encoder agent does, one call per group of equal
lengths, in batches of at most ``batch_size``; :func:`classify` runs the classifier;
:data:`ROUTES` is the switch of ``text_triage.yaml`` (class index -> handler agent).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from streamcompose.runtimes.torch_runtime import load_torchscript

from .corpus import CATEGORIES
from .steps import Tokenize

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
ENCODER_FILE = "text_triage_encoder.pt"
CLASSIFIER_FILE = "text_triage_classifier.onnx"
#: the handler agent of each class index (the classifier's ``label``)
ROUTES = {i: f"{c}_desk" for i, c in enumerate(CATEGORIES)}


def load_encoder(models: Path = MODELS_DIR) -> Any:
    """The TorchScript encoder the encoder agent runs."""
    return load_torchscript(models / ENCODER_FILE)


def tokenize(texts: list[str]) -> list[dict[str, np.ndarray]]:
    """The tokenize agent's fields for each text (``input_ids``, ``attention_mask``)."""
    return Tokenize()([{"text": t} for t in texts])


def run_encoder(encoder: Any, rows: list[dict[str, np.ndarray]]) -> np.ndarray:
    """One encoder call on rows of one length: embeddings float32 [len(rows), 384]."""
    ids = torch.from_numpy(np.stack([r["input_ids"] for r in rows]))
    mask = torch.from_numpy(np.stack([r["attention_mask"] for r in rows]))
    with torch.inference_mode():
        return encoder(ids, mask).numpy()


def embed(encoder: Any, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Embeddings of ``texts`` [N,384] in their order, rows of one length bucket run
    together ``batch_size`` at a time, as the micro-batched agent runs them."""
    rows = tokenize(texts)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[len(row["input_ids"])].append(i)
    embedded: dict[int, np.ndarray] = {}
    for members in groups.values():
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            embedded.update(zip(chunk, run_encoder(encoder, [rows[i] for i in chunk]),
                                strict=True))
    return np.stack([embedded[i] for i in range(len(rows))])


def classify(embeddings: np.ndarray, models: Path = MODELS_DIR
             ) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's ``label`` (int64 [N]) and ``proba`` (float32 [N,classes])."""
    session = ort.InferenceSession(str(models / CLASSIFIER_FILE),
                                   providers=["CPUExecutionProvider"])
    label, proba = session.run(["label", "proba"],
                               {"embedding": embeddings.astype(np.float32)})
    return label, proba
