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


def psi(reference: Sequence[float] | np.ndarray, recent: Sequence[float] | np.ndarray,
        bins: int = DEFAULT_BINS) -> float:
    """The PSI of numbers ``recent`` against ``reference``, in ``bins`` bins of equal
    reference share (fewer where the reference repeats values), plus one below and one
    above the reference's range (so that even a constant reference sees a shift).

    >>> psi([1.0] * 50, [1.0] * 50), psi([1.0] * 50, [2.0] * 50) > 1
    (0.0, True)
    """
    ref = np.asarray(reference, dtype=np.float64)
    now = np.asarray(recent, dtype=np.float64)
    if not len(ref) or not len(now):
        return 0.0
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    lo, hi = ref.min(), ref.max()

    def counts(x: np.ndarray) -> np.ndarray:
        # two more bins, empty in the reference: values beyond its smallest and largest
        where = np.searchsorted(edges, x, side="right") + 1
        where[x < lo], where[x > hi] = 0, len(edges) + 2
        return np.bincount(where, minlength=len(edges) + 3)

    return _index(_shares(counts(ref)), _shares(counts(now)))


def category_psi(reference: Sequence[str], recent: Sequence[str]) -> float:
    """The PSI of categories (predicted labels) ``recent`` against ``reference``."""
    if not reference or not recent:
        return 0.0
    ref, now = Counter(reference), Counter(recent)
    names = sorted(set(ref) | set(now))
    return _index(_shares(np.array([ref[n] for n in names], dtype=np.float64)),
                  _shares(np.array([now[n] for n in names], dtype=np.float64)))
