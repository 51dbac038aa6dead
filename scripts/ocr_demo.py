"""`make demo`: deploy the OCR cascade, publish sample images, print the text found.

Generates the sample images (topologies/ocr/samples/), deploys topologies/ocr_cascade.yaml
unless it is already running, publishes each image as PNG bytes to ``ocr.in`` and prints
the lines each result on ``ocr.out`` carries, beside what RapidOCR finds in-process.

    python scripts/ocr_demo.py [--bootstrap 127.0.0.1:9092] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "topologies"))

from ocr.samples import make_samples  # noqa: E402

from streamcompose.client import Client  # noqa: E402
from streamcompose.deploy import deploy, stop  # noqa: E402
from streamcompose.deploy.registry import Deployment, pid_alive  # noqa: E402


async def recognise(bootstrap: str, images: list[Path]) -> dict[str, tuple[list[str], int]]:
    """Publish every image, then collect one result per image."""
    async with Client(bootstrap) as client:
        replies = [client.infer("ocr", {"image": path.read_bytes()}, timeout=120,
                                request_id=path.stem) for path in images]
        results = await asyncio.gather(*replies)
    return {r.id: (r.payload["texts"], r.latency_ms) for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--keep", action="store_true", help="leave the cascade deployed")
    args = parser.parse_args()

    images = make_samples(ROOT / "topologies" / "ocr" / "samples", args.samples)
    manifest = Deployment("ocr").manifest() if Deployment("ocr").exists() else {}
    started = not pid_alive(manifest.get("supervisor_pid"))
    if started:
        print("deploying topologies/ocr_cascade.yaml ...", flush=True)
        deploy(ROOT / "topologies" / "ocr_cascade.yaml", args.bootstrap,
               progress=lambda w: print(f"  joined: {w}", flush=True))
    try:
        found = asyncio.run(recognise(args.bootstrap, images))
        from rapidocr_onnxruntime import RapidOCR

        engine = RapidOCR()
        for path in images:
            texts, latency = found[path.stem]
            direct = [line[1] for line in (engine(path)[0] or [])]
            verdict = "same as RapidOCR" if texts == direct else f"RapidOCR: {direct}"
            print(f"\n{path.name} ({latency} ms through Kafka, {verdict})")
            for text in texts:
                print(f"  {text}")
    finally:
        if started and not args.keep:
            stop("ocr")


if __name__ == "__main__":
    main()
