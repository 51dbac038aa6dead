"""The inference-graph example's models, in plain Python and numpy, saved as JSON.

* :class:`WordBigram` – a word-bigram Markov chain that continues a prompt word by word.
* :class:`CharTrigram` – a character-trigram model (backing off to shorter contexts) that
  continues a prompt character by character.
* :class:`NaiveBayes` – a multinomial naive Bayes topic classifier over word unigrams and
  bigrams (``analyzer="word"``) or character trigrams (``analyzer="char"``).

Generation samples the next token in proportion to its training count with a numpy
generator the caller seeds, so one seed always gives one text.

>>> corpus = ["the cat sat.", "the dog ran."]
>>> bigram = WordBigram.fit(corpus)
>>> bigram.generate("the dog", np.random.default_rng(0))
'the dog ran'
>>> nb = NaiveBayes.fit(corpus, ["cats", "dogs"], "word")
>>> nb.predict(["a dog"])[0][0]
'dogs'
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

WORD_RE = re.compile(r"[a-z']+")
BOS, EOS = "<s>", "</s>"
CHAR_BOS, CHAR_EOS = "^", "$"
CHAR_ORDER = 3
ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz ,.'")


def words(text: str) -> list[str]:
    """Lower-case words of a text (letters and apostrophes).

    >>> words("The Chef, baked!")
    ['the', 'chef', 'baked']
    """
    return WORD_RE.findall(text.lower())


def chars(text: str) -> str:
    """A text lower-cased, with runs of white space as one space and characters outside
    the models' alphabet removed.

    >>> chars("  The  Chef:\\tbaked ")
    'the chef baked'
    """
    lowered = " ".join(text.lower().split())
    return "".join(c for c in lowered if c in ALPHABET)


def _sample(counts: dict[str, int], rng: np.random.Generator) -> str:
    """One key drawn in proportion to its count (keys in sorted order, for determinism)."""
    keys = sorted(counts)
    weights = np.array([counts[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=weights / weights.sum()))]


def _read(path: Path, kind: str) -> dict[str, Any]:
    """The JSON of a saved model, checked to be of ``kind``."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"model file not found: {path}; train the inference-graph "
                                "models with `python scripts/train_textgraph.py`") from None
    if data.get("kind") != kind:
        raise ValueError(f"{path} holds a {data.get('kind')!r} model, not a {kind!r} one")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file in the same folder, so no reader sees half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


class WordBigram:
    """Next-word counts given the previous word (``<s>`` before a sentence's first word,
    ``</s>`` after its last)."""

    kind = "word-bigram"

    def __init__(self, counts: dict[str, dict[str, int]]) -> None:
        self.counts = counts

    @classmethod
    def fit(cls, corpus: Sequence[str]) -> WordBigram:
        """Count the word bigrams of each sentence."""
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for sentence in corpus:
            tokens = [BOS, *words(sentence), EOS]
            for prev, nxt in pairwise(tokens):
                counts[prev][nxt] += 1
        return cls({prev: dict(nxt) for prev, nxt in counts.items()})

    def generate(self, prompt: str, rng: np.random.Generator, max_words: int = 12) -> str:
        """The prompt's words followed by up to ``max_words`` sampled ones, continuing from
        the last prompt word the model knows (from a sentence start if none)."""
        given = words(prompt)
        context = next((w for w in reversed(given) if w in self.counts), BOS)
        out: list[str] = []
        while len(out) < max_words and context in self.counts:
            context = _sample(self.counts[context], rng)
            if context == EOS:
                break
            out.append(context)
        return " ".join([*given, *out])

    def save(self, path: Path) -> None:
        """Write the model as JSON."""
        _write(path, {"kind": self.kind, "counts": self.counts})

    @classmethod
    def load(cls, path: Path) -> WordBigram:
        """Read a model :meth:`save` wrote."""
        return cls(_read(path, cls.kind)["counts"])


class CharTrigram:
    """Next-character counts given the previous two characters, and given the previous
    one and none, to back off to when a context was never seen (``^`` pads a sentence's
    start, ``$`` ends it)."""

    kind = "char-trigram"

    def __init__(self, counts: dict[str, dict[str, int]]) -> None:
        self.counts = counts

    @classmethod
    def fit(cls, corpus: Sequence[str]) -> CharTrigram:
        """Count each character after its contexts of 2, 1 and 0 characters."""
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        pad = CHAR_BOS * (CHAR_ORDER - 1)
        for sentence in corpus:
            text = pad + chars(sentence) + CHAR_EOS
            for i in range(len(pad), len(text)):
                for order in range(CHAR_ORDER):
                    counts[text[i - order:i]][text[i]] += 1
        return cls({context: dict(nxt) for context, nxt in counts.items()})

    def generate(self, prompt: str, rng: np.random.Generator, max_chars: int = 60) -> str:
        """The prompt, taken as whole words, followed by a space and up to ``max_chars``
        sampled characters, ending early at the end of a sentence."""
        text = chars(prompt) + (" " if prompt.strip() else "")
        history = CHAR_BOS * (CHAR_ORDER - 1) + text
        out: list[str] = []
        while len(out) < max_chars:
            context = next(history[len(history) - n:] for n in range(CHAR_ORDER - 1, -1, -1)
                           if history[len(history) - n:] in self.counts)
            nxt = _sample(self.counts[context], rng)
            if nxt == CHAR_EOS:
                break
            out.append(nxt)
            history += nxt
        return text + "".join(out)

    def save(self, path: Path) -> None:
        """Write the model as JSON."""
        _write(path, {"kind": self.kind, "counts": self.counts})

    @classmethod
    def load(cls, path: Path) -> CharTrigram:
        """Read a model :meth:`save` wrote."""
        return cls(_read(path, cls.kind)["counts"])


def features(text: str, analyzer: str) -> list[str]:
    """The terms a classifier counts: words and word pairs (``word``), or the character
    trigrams of the text padded by a space at each end (``char``).

    >>> features("Hot soup", "word"), features("hot", "char")
    (['hot', 'soup', 'hot soup'], [' ho', 'hot', 'ot '])
    """
    if analyzer == "word":
        tokens = words(text)
        return [*tokens, *(f"{a} {b}" for a, b in pairwise(tokens))]
    padded = f" {chars(text)} "
    return [padded[i:i + CHAR_ORDER] for i in range(len(padded) - CHAR_ORDER + 1)]


class NaiveBayes:
    """Multinomial naive Bayes with add-one smoothing; terms never seen in training are
    ignored."""

    kind = "naive-bayes"

    def __init__(self, analyzer: str, topics: list[str], vocabulary: list[str],
                 log_prior: np.ndarray, log_likelihood: np.ndarray) -> None:
        self.analyzer = analyzer
        self.topics = topics
        self.vocabulary = vocabulary
        self.index = {term: i for i, term in enumerate(vocabulary)}
        self.log_prior = log_prior
        self.log_likelihood = log_likelihood

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], analyzer: str) -> NaiveBayes:
        """Learn the topics (sorted) and the term counts of each."""
        topics = sorted(set(labels))
        vocabulary = sorted({term for text in texts for term in features(text, analyzer)})
        index = {term: i for i, term in enumerate(vocabulary)}
        counts = np.zeros((len(topics), len(vocabulary)))
        for text, label in zip(texts, labels, strict=True):
            for term in features(text, analyzer):
                counts[topics.index(label), index[term]] += 1
        prior = np.array([sum(label == t for label in labels) for t in topics], dtype=float)
        smoothed = counts + 1.0
        return cls(analyzer, topics, vocabulary, np.log(prior / prior.sum()),
                   np.log(smoothed / smoothed.sum(axis=1, keepdims=True)))

    def predict(self, texts: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
        """Each text's most probable topic and the probability of every topic."""
        counts = np.zeros((len(texts), len(self.vocabulary)))
        for row, text in enumerate(texts):
            for term in features(text, self.analyzer):
                if term in self.index:
                    counts[row, self.index[term]] += 1
        scores = counts @ self.log_likelihood.T + self.log_prior
        proba = np.exp(scores - scores.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        return [(self.topics[int(p.argmax())], dict(zip(self.topics, p.tolist(), strict=True)))
                for p in proba]

    def save(self, path: Path) -> None:
        """Write the model as JSON."""
        _write(path, {"kind": self.kind, "analyzer": self.analyzer, "topics": self.topics,
                      "vocabulary": self.vocabulary, "log_prior": self.log_prior.tolist(),
                      "log_likelihood": self.log_likelihood.tolist()})

    @classmethod
    def load(cls, path: Path) -> NaiveBayes:
        """Read a model :meth:`save` wrote."""
        data = _read(path, cls.kind)
        return cls(data["analyzer"], data["topics"], data["vocabulary"],
                   np.array(data["log_prior"]), np.array(data["log_likelihood"]))
