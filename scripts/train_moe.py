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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "topologies"))

from training import main as train_main


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, train, print the results; return the exit status."""
    return train_main(__doc__, "moe.train", argv)


if __name__ == "__main__":
    sys.exit(main())
