"""Training of the inference-graph models on the templated corpus (:mod:`textgraph.corpus`).

Writes four small JSON files (tens of kilobytes) into ``topologies/models``, in seconds:

=============================  ==================================================
file                           model
=============================  ==================================================
``textgraph_bigram.json``      word-bigram Markov chain (the ``bigram`` generator)
``textgraph_trigram.json``     character-trigram model (the ``trigram`` generator)
``textgraph_words_nb.json``    naive Bayes over words and word pairs
``textgraph_chars_nb.json``    naive Bayes over character trigrams
=============================  ==================================================

The classifiers learn from four fifths of the corpus and are scored on the rest; the
generators learn from all of it. ``scripts/train_textgraph.py`` is the command line over
:func:`train_all`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .corpus import sentences
from .models import CharTrigram, NaiveBayes, WordBigram

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
HELD_OUT_EVERY = 5


def _classifier(analyzer: str) -> Callable[[Path], str]:
    """The trainer of a naive Bayes topic classifier over ``analyzer`` terms."""

    def train(path: Path) -> str:
        """Fit, save and score the classifier; returns a summary."""
        corpus = sentences()
        fit = [pair for i, pair in enumerate(corpus) if i % HELD_OUT_EVERY]
        test = [pair for i, pair in enumerate(corpus) if not i % HELD_OUT_EVERY]
        model = NaiveBayes.fit([s for s, _ in fit], [t for _, t in fit], analyzer)
        model.save(path)
        predicted = model.predict([s for s, _ in test])
        right = sum(label == topic for (label, _), (_, topic) in zip(predicted, test,
                                                                     strict=True))
        return (f"{len(model.vocabulary)} terms, held-out accuracy "
                f"{right / len(test):.4f} ({len(test)} sentences)")

    return train


def train_bigram(path: Path) -> str:
    """Fit and save the word-bigram generator; returns a summary."""
    model = WordBigram.fit([s for s, _ in sentences()])
    model.save(path)
    return f"{len(model.counts)} contexts"


def train_trigram(path: Path) -> str:
    """Fit and save the character-trigram generator; returns a summary."""
    model = CharTrigram.fit([s for s, _ in sentences()])
    model.save(path)
    return f"{len(model.counts)} contexts"


TRAINERS: dict[str, Callable[[Path], str]] = {
    "textgraph_bigram.json": train_bigram,
    "textgraph_trigram.json": train_trigram,
    "textgraph_words_nb.json": _classifier("word"),
    "textgraph_chars_nb.json": _classifier("char"),
}


def train_all(out_dir: Path = MODELS_DIR, *, force: bool = False) -> dict[str, str | None]:
    """Write every model into ``out_dir``, keeping the files that already exist unless
    ``force``. Returns a summary of each model trained, ``None`` for one kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: train(out_dir / name) if force or not (out_dir / name).exists() else None
            for name, train in TRAINERS.items()}
