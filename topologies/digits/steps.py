"""Python steps of the digits topologies (entrypoints ``digits.steps:<class>``).

* :class:`Preprocess` checks the ``pixels`` of one 8×8 digit, as scikit-learn's
  ``load_digits`` gives them (64 values 0..16), and writes the model input ``x``.
* :class:`Postprocess` turns the class probabilities ``proba`` into a ``label``.
* :class:`Features` checks the ``pixels`` like :class:`Preprocess` and writes both model
  inputs the ensemble members read: ``image`` [1,8,8] (the CNN) and ``flat`` [64] (the
  others).

>>> out = Preprocess()([{"pixels": [16] * 64}])
>>> out[0]["x"].shape, out[0]["x"].dtype, float(out[0]["x"].max())
((1, 8, 8), dtype('float32'), 1.0)
>>> feats = Features()([{"pixels": [8] * 64}])[0]
>>> feats["image"].shape, feats["flat"].shape, feats["flat"].dtype, float(feats["flat"][0])
((1, 8, 8), (64,), dtype('float32'), 0.5)
>>> Postprocess()([{"proba": [0.1, 0.7] + [0.025] * 8}])[0]["label"]
1
"""

from __future__ import annotations

from typing import Any

import numpy as np

PIXEL_MAX = 16.0


SHAPES = ((64,), (8, 8))  # one digit's pixels: flat, or 8 rows of 8


def to_input(pixels: Any) -> np.ndarray:
    """The model input for one digit: float32 [1,8,8], pixels divided by 16.

    Raises ValueError unless ``pixels`` holds 64 finite numbers in 0..16, flat (64) or
    as 8 rows of 8.
    """
    try:
        values = np.asarray(pixels, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pixels must be 64 numbers (an 8×8 digit), got {type(pixels).__name__}"
                         f": {exc}") from None
    if values.shape not in SHAPES:
        raise ValueError(f"pixels must hold the 64 values of an 8×8 digit, as a list of 64 or "
                         f"8 rows of 8; got shape {values.shape}")
    problem = _value_problem(values)
    if problem:
        raise ValueError(problem)
    return _scaled(values)[0]


def to_inputs(batch: list[Any]) -> list[np.ndarray]:
    """:func:`to_input` of several digits, checked and converted at once; one by one
    unless every one is well-formed, so that a malformed digit raises
    :func:`to_input`'s ValueError saying why (the runtime then finds which by running
    each payload alone).

    >>> [x.shape for x in to_inputs([[0] * 64, [[16] * 8] * 8])]
    [(1, 8, 8), (1, 8, 8)]
    """
    try:
        values = np.asarray(batch, dtype=np.float64)
    except (TypeError, ValueError):  # digits of different shapes, or not numbers
        return [to_input(pixels) for pixels in batch]
    if values.shape[1:] not in SHAPES or _value_problem(values):
        return [to_input(pixels) for pixels in batch]
    return list(_scaled(values))


def _value_problem(values: np.ndarray) -> str | None:
    """Why ``values`` (one digit's or several) are not pixels, or None."""
    if not np.isfinite(values).all():
        return "pixels must be finite numbers; got NaN or infinity"
    if values.min() < 0 or values.max() > PIXEL_MAX:
        return (f"pixels must lie in 0..16 (scikit-learn's digits scale); got values "
                f"from {values.min():g} to {values.max():g}")
    return None


def _scaled(values: np.ndarray) -> np.ndarray:
    """Pixels as model inputs: float32 [N,1,8,8] in 0..1."""
    return (values / PIXEL_MAX).astype(np.float32).reshape(-1, 1, 8, 8)


class Preprocess:
    """``pixels`` (64 values 0..16) -> ``x`` float32 [1,8,8] in 0..1."""

    inputs = ("pixels",)
    outputs = ("x",)

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Convert each payload; a malformed one raises ValueError."""
        return [{"x": x} for x in to_inputs([p["pixels"] for p in batch])]


class Features:
    """``pixels`` (64 values 0..16) -> ``image`` float32 [1,8,8] and ``flat`` float32 [64],
    both in 0..1 and holding the same values."""

    inputs = ("pixels",)
    outputs = ("image", "flat")

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Convert each payload; a malformed one raises ValueError."""
        return [{"image": image, "flat": image.reshape(64)}
                for image in to_inputs([p["pixels"] for p in batch])]


class Postprocess:
    """``proba`` (10 class probabilities) -> ``label`` (int, the argmax) and ``proba`` as a
    list of 10 floats. The topology drops the model input ``x`` after this step.
    """

    inputs = ("proba",)
    outputs = ("label", "proba")

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Label each payload by its most probable class."""
        results = []
        for p in batch:
            proba = np.asarray(p["proba"], dtype=np.float64).reshape(-1)
            results.append({"label": int(proba.argmax()), "proba": proba.tolist()})
        return results
