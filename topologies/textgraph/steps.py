"""Python steps of the inference graph (entrypoints ``textgraph.steps:<class>``).

* :class:`BigramGenerator` and :class:`TrigramGenerator` continue the request's
  ``prompt`` (a few words) and write it, continued, as ``text``.
* :class:`TopicClassifier` labels ``text`` with its topic: ``label`` (the topic's name)
  and ``proba`` (each topic's probability, by name).

The ``model`` option names the model file, relative to the ``topologies`` folder (as in
the YAML) or absolute. Generation samples with a generator seeded by the request's
optional integer ``seed``, by default by a checksum of the prompt: a request always gets
the same text.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .models import CharTrigram, NaiveBayes, WordBigram

TOPOLOGIES_DIR = Path(__file__).resolve().parent.parent


def _path(model: str) -> Path:
    """A model file named relative to the topologies folder (an absolute path stays)."""
    return TOPOLOGIES_DIR / model


def request_rng(payload: dict[str, Any]) -> np.random.Generator:
    """The random generator of one request: seeded by its ``seed``, or its ``prompt``.

    >>> a, b = request_rng({"prompt": "the chef"}), request_rng({"prompt": "the chef"})
    >>> int(a.integers(1000)) == int(b.integers(1000))
    True
    """
    seed = payload.get("seed")
    if seed is None:
        seed = zlib.crc32(str(payload["prompt"]).encode())
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return np.random.default_rng(seed)


def _prompt(payload: dict[str, Any]) -> str:
    """The request's prompt, which must be a string."""
    prompt = payload["prompt"]
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    return prompt


class BigramGenerator:
    """``prompt`` -> ``text``: the prompt continued by the word-bigram chain."""

    inputs = ("prompt",)
    outputs = ("text",)

    def __init__(self, model: str = "models/textgraph_bigram.json", max_words: int = 12) -> None:
        self.model = WordBigram.load(_path(model))
        self.max_words = max_words

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Continue each prompt; a malformed request raises ValueError."""
        return [{"text": self.model.generate(_prompt(p), request_rng(p), self.max_words)}
                for p in batch]


class TrigramGenerator:
    """``prompt`` -> ``text``: the prompt continued by the character-trigram model."""

    inputs = ("prompt",)
    outputs = ("text",)

    def __init__(self, model: str = "models/textgraph_trigram.json",
                 max_chars: int = 60) -> None:
        self.model = CharTrigram.load(_path(model))
        self.max_chars = max_chars

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Continue each prompt; a malformed request raises ValueError."""
        return [{"text": self.model.generate(_prompt(p), request_rng(p), self.max_chars)}
                for p in batch]


class TopicClassifier:
    """``text`` -> ``label`` (the most probable topic) and ``proba`` (topic -> probability)."""

    inputs = ("text",)
    outputs = ("label", "proba")

    def __init__(self, model: str) -> None:
        self.model = NaiveBayes.load(_path(model))

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Classify the texts of the batch at once."""
        predicted = self.model.predict([str(p["text"]) for p in batch])
        return [{"label": label, "proba": proba} for label, proba in predicted]
