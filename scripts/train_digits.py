"""Train the digits example models and save them with the held-out test split.

Usage: ``python scripts/train_digits.py [--out topologies/models] [--force]``

Trains on scikit-learn's bundled 8×8 digits with a fixed held-out split (25 %,
stratified, seed 0), prints each model's held-out accuracy, and writes into ``--out``
(files that exist are kept unless ``--force``):

======================  =======  ==========================  ===============================
file                    runtime  input                       outputs
======================  =======  ==========================  ===============================
``digits_cnn.pt``       torch    ``x`` float32 [N,1,8,8]     ``proba`` float32 [N,10]
``digits_mlp.pt``       torch    ``x`` float32 [N,64]        ``proba`` float32 [N,10]
``digits_logreg.onnx``  onnx     ``x`` float32 [N,64]        ``label`` int64 [N],
                                                             ``proba`` float32 [N,10]
``digits_forest.onnx``  onnx     ``x`` float32 [N,64]        ``label`` int64 [N],
                                                             ``proba`` float32 [N,10]
``digits_stack.onnx``   onnx     ``x`` float32 [N,40]        ``label`` int64 [N],
                                 member probabilities        ``proba`` float32 [N,10]
``digits_test.npz``     (data)   ``X`` float32 [N,64] raw    ``y`` int64 [N]
                                 pixels 0..16
======================  =======  ==========================  ===============================

Every pixel model input holds pixels divided by 16 (0..1); ``proba`` is a softmax over
the classes 0..9. The ``.pt`` files are TorchScript; the ONNX files come from skl2onnx
(LogisticRegression, RandomForestClassifier) without ZipMap. ``digits_stack.onnx`` is the
stacking meta-model of ``topologies/digits_stacking.yaml``, a LogisticRegression whose
input ``x`` is the four members' probabilities side by side (logreg, forest, mlp, cnn:
10 each), learnt from out-of-fold predictions on the training part; it is trained last,
from the member files in ``--out``. The training code is in ``topologies/digits/train.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, train, print the accuracies; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=TOPOLOGIES / "models",
                        help="folder for the model files (default: topologies/models)")
    parser.add_argument("--force", action="store_true",
                        help="retrain and overwrite the files that already exist")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TOPOLOGIES))
    from digits.train import train_all

    for name, accuracy in train_all(args.out, force=args.force).items():
        status = "exists, kept (--force retrains)" if accuracy is None else (
            f"held-out accuracy {accuracy:.4f}")
        print(f"{args.out / name}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
