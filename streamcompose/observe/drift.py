"""Drift scores: the population stability index (PSI) of recent values against a
reference sample, for numbers (binned at the reference's quantiles) and for categories.

PSI = Σ (recent share − reference share) · ln(recent share / reference share) over the
bins; shares are floored at ``FLOOR`` so that an empty bin counts without dividing by
zero. Conventionally below 0.1 means no change, 0.1–0.25 a moderate one, above 0.25 a
large one.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> reference = rng.normal(0, 1, 2000)
>>> round(psi(reference, rng.normal(0, 1, 2000)), 2) < 0.05
True
>>> psi(reference, rng.normal(1.5, 1, 2000)) > 1
True
>>> round(category_psi(["a", "b"] * 50, ["a"] * 100), 2)
4.6
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

FLOOR = 1e-4
DEFAULT_BINS = 10


def _shares(counts: np.ndarray) -> np.ndarray:
    return np.maximum(counts / max(counts.sum(), 1), FLOOR)


def _index(expected: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sum((actual - expected) * np.log(actual / expected)))


class NumericReference:
    """A reference sample of numbers, binned once: in ``bins`` bins of equal reference
    share (fewer where it repeats values), plus one below and one above its range (so
    that even a constant reference sees a shift)."""

    def __init__(self, values: Sequence[float] | np.ndarray, bins: int = DEFAULT_BINS) -> None:
        ref = np.asarray(values, dtype=np.float64)
        self.empty = not len(ref)
        self.edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1])) \
            if len(ref) else np.array([])
        self.lo, self.hi = (ref.min(), ref.max()) if len(ref) else (0.0, 0.0)
        self.shares = _shares(self._counts(ref))

    def _counts(self, x: np.ndarray) -> np.ndarray:
        where = np.searchsorted(self.edges, x, side="right") + 1
        where[x < self.lo], where[x > self.hi] = 0, len(self.edges) + 2
        return np.bincount(where, minlength=len(self.edges) + 3)

    def psi(self, recent: Sequence[float] | np.ndarray) -> float:
        now = np.asarray(recent, dtype=np.float64)
        if self.empty or not len(now):
            return 0.0
        return _index(self.shares, _shares(self._counts(now)))


class CategoryReference:
    """A reference sample of categories (predicted labels), counted once."""

    def __init__(self, values: Sequence[str]) -> None:
        self.counts = Counter(values)

    def psi(self, recent: Sequence[str]) -> float:
        if not self.counts or not recent:
            return 0.0
        now = Counter(recent)
        names = sorted(set(self.counts) | set(now))
        return _index(_shares(np.array([self.counts[n] for n in names], dtype=np.float64)),
                      _shares(np.array([now[n] for n in names], dtype=np.float64)))


def psi(reference: Sequence[float] | np.ndarray, recent: Sequence[float] | np.ndarray,
        bins: int = DEFAULT_BINS) -> float:
    """The PSI of numbers ``recent`` against ``reference`` (:class:`NumericReference`).

    >>> psi([1.0] * 50, [1.0] * 50), psi([1.0] * 50, [2.0] * 50) > 1
    (0.0, True)
    """
    return NumericReference(reference, bins).psi(recent)


def category_psi(reference: Sequence[str], recent: Sequence[str]) -> float:
    """The PSI of categories (predicted labels) ``recent`` against ``reference``."""
    return CategoryReference(reference).psi(recent)
