"""Train the digits example models and save them with the held-out test split.

Usage: ``python scripts/train_digits.py [--out topologies/models] [--force]
[--only FILE] [--seed N]``

``--only digits_cnn.pt --seed 1 --out /tmp/v2`` trains another version of the CNN alone
(another seed for its weights and batches) into another folder, to upgrade a running
deployment with (README, "Model lifecycle").

Trains on scikit-learn's bundled 8×8 digits with a fixed held-out split (25 %,
stratified, seed 0), prints each model's held-out accuracy (of the ensemble for
``digits_weights.json`` and ``digits_stack.onnx``) and the soft vote's weights, and writes
into ``--out`` (files that exist are kept unless ``--force``):

=======================  =======  ==========================  ==============================
file                     runtime  input                       outputs
=======================  =======  ==========================  ==============================
``digits_cnn.pt``        torch    ``x`` float32 [N,1,8,8]     ``proba`` float32 [N,10]
``digits_mlp.pt``        torch    ``x`` float32 [N,64]        ``proba`` float32 [N,10]
``digits_logreg.onnx``   onnx     ``x`` float32 [N,64]        ``label`` int64 [N],
                                                              ``proba`` float32 [N,10]
``digits_forest.onnx``   onnx     ``x`` float32 [N,64]        ``label`` int64 [N],
                                                              ``proba`` float32 [N,10]
``digits_stack.onnx``    onnx     ``x`` float32 [N,40]        ``label`` int64 [N],
                                  member probabilities        ``proba`` float32 [N,10]
``digits_weights.json``  (data)   the soft vote's weights     ``{"logreg": w, "forest": w,
                                  by member (integers 1..4)   "mlp": w, "cnn": w}``
``digits_test.npz``      (data)   ``X`` float32 [N,64] raw    ``y`` int64 [N]
                                  pixels 0..16
=======================  =======  ==========================  ==============================

Every pixel model input holds pixels divided by 16 (0..1); ``proba`` is a softmax over
the classes 0..9. The ``.pt`` files are TorchScript; the ONNX files come from skl2onnx
(LogisticRegression, RandomForestClassifier) without ZipMap; the CNN learns from digits
shifted at random by up to a pixel. ``digits_stack.onnx`` is the stacking meta-model of
``topologies/digits_stacking.yaml``, a LogisticRegression whose input ``x`` is the four
members' probabilities side by side (logreg, forest, mlp, cnn: 10 each), learnt from
out-of-fold predictions on the training part (its ``C`` chosen by cross-validation on
them). ``digits_weights.json`` holds the weights of the soft vote of
``topologies/digits_ensemble.yaml``, chosen on the same out-of-fold predictions; the
topology repeats them (``vote.join.weights``), and this script says when the two differ.
These two are trained last, from the member files in ``--out``; nothing is chosen on the
held-out part. The training code is in ``topologies/digits/train.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
ENSEMBLE = TOPOLOGIES / "digits_ensemble.yaml"
sys.path.insert(0, str(TOPOLOGIES))

from training import main as train_main  # noqa: E402


def flow(weights: dict[str, float]) -> str:
    """``weights`` as a YAML flow mapping: ``{logreg: 1, forest: 2, ...}``."""
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in weights.items()) + "}"


def check_weights(out: Path) -> None:
    """Print the soft vote's trained weights; say when the ensemble topology's differ."""
    from digits.direct import WEIGHTS_FILE, trained_weights

    from streamcompose.topology import load_topology

    weights = trained_weights(out)
    print(f"soft-vote weights ({WEIGHTS_FILE}): {flow(weights)}")
    join = load_topology(ENSEMBLE).agent("vote").join
    if join is None or dict(join.weights) != weights:
        print(f"note: {ENSEMBLE} has vote.join.weights "
              f"{flow(dict(join.weights)) if join else '(none)'}; set them to {flow(weights)}",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, train, print the accuracies; return the exit status."""
    return train_main(__doc__, "digits.train", argv, after=check_weights, options=True)


if __name__ == "__main__":
    sys.exit(main())
