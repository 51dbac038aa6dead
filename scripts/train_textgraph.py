"""Train the inference-graph models (``topologies/inference_graph.yaml``).

Usage: ``python scripts/train_textgraph.py [--out topologies/models] [--force]``

Builds the templated corpus (300 sentences on sports, weather and cooking) and writes
into ``--out`` (files that exist are kept unless ``--force``) a word-bigram generator, a
character-trigram generator and two naive Bayes topic classifiers, all as small JSON
files, printing a summary of each. The code is in ``topologies/textgraph/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, train, print the summaries; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=TOPOLOGIES / "models",
                        help="folder for the model files (default: topologies/models)")
    parser.add_argument("--force", action="store_true",
                        help="retrain and overwrite the files that already exist")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TOPOLOGIES))
    from textgraph.train import train_all

    for name, summary in train_all(args.out, force=args.force).items():
        print(f"{args.out / name}: {summary or 'exists, kept (--force retrains)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
