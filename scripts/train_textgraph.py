"""Train the inference-graph models (``topologies/inference_graph.yaml``).

Usage: ``python scripts/train_textgraph.py [--out topologies/models] [--force]``

Builds the templated corpus (300 sentences on sports, weather and cooking) and writes
into ``--out`` (files that exist are kept unless ``--force``) a word-bigram generator, a
character-trigram generator and two naive Bayes topic classifiers, all as small JSON
files, printing a summary of each. The code is in ``topologies/textgraph/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "topologies"))

from training import main as train_main


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, train, print the results; return the exit status."""
    return train_main(__doc__, "textgraph.train", argv)


if __name__ == "__main__":
    sys.exit(main())
