"""What tracing and drift monitoring cost, in-process (no broker), as ratios against a
baseline measured in the same run.

The digits cascade (``topologies/digits_cascade.yaml``: preprocess, the CNN, postprocess)
runs in a :class:`streamcompose.testing.LocalRunner` on held-out digits, the same steps
the workers run, with tracing off (the baseline) and on (an SDK provider whose batch
processor feeds an in-memory exporter: every span a worker would record, none sent). The
drift monitor of ``postprocess`` is timed on the cascade's own results (what a worker
adds per batch). Rounds alternate; the median round counts. Nothing passes or fails.
Usage::

    python benchmarks/observe.py                 # 1000 requests, 5 rounds
    python benchmarks/observe.py --json benchmarks/out/observe.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "topologies"))

from digits.train import MODELS_DIR, train_all  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from sklearn.datasets import load_digits  # noqa: E402

from streamcompose.metrics import AgentMetrics  # noqa: E402
from streamcompose.observe import tracing  # noqa: E402
from streamcompose.observe.monitor import Monitor  # noqa: E402
from streamcompose.testing import LocalRunner  # noqa: E402
from streamcompose.topology import load_topology  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args()
    train_all(MODELS_DIR)
    topology = load_topology(ROOT / "topologies" / "digits_cascade.yaml")
    runner = LocalRunner(topology)
    pixels = load_digits().data
    requests = [{"pixels": pixels[i % len(pixels)].tolist()} for i in range(args.requests)]
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(spans, max_queue_size=1 << 20))

    def timed(traced: bool) -> float:
        started = time.perf_counter()
        if traced:
            with tracing.using(provider):
                runner.run(requests)
            provider.force_flush()
        else:
            runner.run(requests)
        return time.perf_counter() - started

    runner.run(requests[:64])  # warm-up
    off, on = [], []
    for _ in range(args.rounds):
        off.append(timed(False))
        on.append(timed(True))
        spans.clear()
    results = runner.run(requests).results
    spec = topology.agent("postprocess").monitor
    monitor = Monitor(spec, AgentMetrics("bench", "postprocess", 0), "postprocess")
    started = time.perf_counter()
    for i in range(0, len(results), 32):  # the cascade's batch size
        batch = [r.payload for r in results[i:i + 32]]
        monitor.observe(batch, batch)
    monitor_s = time.perf_counter() - started
    base = statistics.median(off)
    figures = {
        "requests": args.requests, "rounds": args.rounds,
        "baseline_records_per_s": round(args.requests / base, 1),
        "traced_throughput_ratio": round(base / statistics.median(on), 3),
        "monitor_time_ratio": round(monitor_s / base, 4),
        "cascade_us_per_request": round(base / args.requests * 1e6, 1),
        "monitor_us_per_request": round(monitor_s / len(results) * 1e6, 1),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    print(f"digits cascade in-process, {args.requests} requests, median of {args.rounds} "
          f"rounds ({figures['uptime']})")
    print(f"  tracing on / off, throughput:         {figures['traced_throughput_ratio']:.3f}")
    print(f"  drift monitor time / cascade time:    {figures['monitor_time_ratio']:.4f} "
          f"({figures['monitor_us_per_request']} µs a request beside the cascade's "
          f"{figures['cascade_us_per_request']} µs)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
