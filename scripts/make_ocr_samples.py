"""Write sample images for the OCR cascade (topologies/ocr_cascade.yaml).

    python scripts/make_ocr_samples.py [FOLDER] [-n 6] [--seed 7]

The images are PNG files of English words and numbers, some upside down; the same seed
gives the same images. FOLDER defaults to topologies/ocr/samples/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and write the images, printing their paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=TOPOLOGIES / "ocr" / "samples")
    parser.add_argument("-n", type=int, default=6, help="how many images (default 6)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TOPOLOGIES))
    from ocr.samples import make_samples

    for path in make_samples(args.folder, args.n, args.seed):
        print(path)


if __name__ == "__main__":
    main()
