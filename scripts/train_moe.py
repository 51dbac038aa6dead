"""Train the mixture-of-experts example models and save them with the held-out split.

Usage: ``python scripts/train_moe.py [--out topologies/models] [--force]``

Generates the seeded three-region data set of ``topologies/moe/data.py`` (3000 samples
of 4 features, each region labelled 0/1 by its own rule; 25 % held out, stratified by
region), prints each model's held-out accuracy and writes into ``--out`` (files that
exist are kept unless ``--force``):

=======================  ===================================  ==============================
file                     model                                outputs
=======================  ===================================  ==============================
``moe_gate.onnx``        logistic regression over regions     ``region`` int64 [N],
                                                              ``scores`` float32 [N,3]
``moe_expert_a.onnx``    logistic regression (region ``a``)   ``label`` int64 [N],
                                                              ``proba`` float32 [N,2]
``moe_expert_b.onnx``    random forest (region ``b``)         ``label``, ``proba``
``moe_expert_c.onnx``    degree-2 polynomial logistic         ``label``, ``proba``
                         regression (region ``c``)
``moe_test.npz``         (data) ``X`` float32 [N,4]           ``y``, ``region`` int64 [N]
=======================  ===================================  ==============================

Every model takes ``features`` float32 [N,4] and comes from skl2onnx without ZipMap. The
gate's accuracy is on the regions; each expert is fitted on, and scored on, its own
region's samples only. The training code is in ``topologies/moe/train.py``; the topology
using the models is ``topologies/moe.yaml``.
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
    from moe.train import train_all

    for name, accuracy in train_all(args.out, force=args.force).items():
        status = "exists, kept (--force retrains)" if accuracy is None else (
            f"held-out accuracy {accuracy:.4f}")
        print(f"{args.out / name}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
