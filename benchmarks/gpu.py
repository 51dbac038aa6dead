"""What a model agent's path costs on a GPU (and on the CPU), without Kafka.

For two models, the MiniLM sentence encoder (:mod:`gpu_models`, 64 tokens a request by
default) and the digits CNN (``topologies/models/digits_cnn.pt``), on each device:

1. *Offline*: the torch module called directly on ready-stacked batches (host arrays
   copied to the device, outputs copied back) in a thread of its own, records/s at each
   batch size; the peak is the model's offline batched throughput.
2. *Agent path*: what a worker does between the consumer and the producer, in this
   process: msgpack values decoded (:func:`decode_payload`) into the worker's
   :class:`MicroBatcher` (``max_size`` = the batch size, ``max_wait_ms`` 5) by one task,
   batches run by a runtime from :func:`load_runtime` in a one-thread executor by
   another (pinned memory, its own CUDA stream), then each result merged into its
   payload and encoded, as ``AgentWorker._infer`` does. Records/s at each batch size.

It reports, per model and device, the agent path's best records/s over the offline peak
(the goal is at least 0.8) and the batch sizes they were reached at. A batch size whose
offline call takes longer than ``--max-call-s`` ends the sweep. Nothing passes or fails.
Usage::

    python benchmarks/gpu.py                       # cuda and cpu (cuda where available)
    python benchmarks/gpu.py --device cuda --json benchmarks/out/gpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_models import digits_cnn, minilm, minilm_source

from streamcompose.batching.batcher import MicroBatcher
from streamcompose.codec import decode_payload, encode_payload
from streamcompose.runtimes import RecordError, Runtime, load_runtime
from streamcompose.runtimes.torch_runtime import load_torchscript
from streamcompose.steps.base import merge_result
from streamcompose.topology.model import ModelSpec

BENCH_DIR = Path(__file__).resolve().parent
SIZES = {"cuda": [1, 8, 32, 64, 128, 256, 512, 1024], "cpu": [1, 8, 32, 64, 128, 256]}
MAX_WAIT_MS = 5
DISTINCT = 256  # distinct request values, cycled


class Case:
    """One model: how to build it, its runtime spec and its requests."""

    def __init__(self, name: str, note: str, spec: ModelSpec, base_dir: Path,
                 build: Callable[[], torch.nn.Module], sample: Callable[[int], dict[str, Any]],
                 drop: tuple[str, ...]) -> None:
        self.name, self.note, self.spec, self.base_dir = name, note, spec, base_dir
        self.build, self.sample, self.drop = build, sample, drop


def minilm_case(tokens: int) -> Case:
    source = minilm_source()
    rng = np.random.default_rng(0)

    def sample(i: int) -> dict[str, Any]:
        length = int(rng.integers(tokens // 2, tokens + 1))
        ids = np.zeros(tokens, np.int64)
        ids[:length] = rng.integers(1000, 30000, length)
        return {"id": f"r{i}", "input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)}

    shape = {"dtype": "int64", "shape": [tokens]}
    spec = ModelSpec(runtime="torch", entrypoint="gpu_models:minilm", options={
        "kwargs": {"source": source}, "outputs": ["embedding"],
        "inputs": {"input_ids": shape, "attention_mask": shape}})
    return Case("minilm", f"{source}, {tokens} tokens", spec, BENCH_DIR,
                lambda: minilm(source), sample, ("input_ids", "attention_mask"))


def cnn_case() -> Case:
    path = digits_cnn()
    rng = np.random.default_rng(0)
    spec = ModelSpec(runtime="torch", path=path, options={
        "inputs": {"x": {"dtype": "float32", "shape": [1, 8, 8]}}, "outputs": ["proba"]})
    return Case("digits_cnn", "TorchScript", spec, path.parent,
                lambda: load_torchscript(path), lambda i: {
                    "id": f"r{i}", "x": rng.random((1, 8, 8), dtype=np.float32)}, ("x",))


def timed(call: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Calls of ``call`` (at least 3) for ``seconds``: how many, and how long they took."""
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        call()
        calls += 1
    return calls, time.perf_counter() - start


def offline(case: Case, module: torch.nn.Module, device: str, size: int,
            seconds: float) -> tuple[float, float]:
    """Records/s of the module called directly at one batch size, and one call's time."""
    requests = [case.sample(i) for i in range(size)]
    names = [n for n in requests[0] if n != "id"]
    stacked = [np.stack([r[n] for r in requests]) for n in names]

    def call() -> object:
        with torch.inference_mode():
            return module(*[torch.from_numpy(a).to(device) for a in stacked]).cpu()

    def sweep() -> tuple[int, float]:
        timed(call, seconds / 3)  # warm-up: the first calls of a shape are slow (JIT, caches)
        return timed(call, seconds)

    # in a thread of its own, as the worker's model calls: torch's intra-op threads do
    # not behave the same when called from the main thread
    with ThreadPoolExecutor(1) as thread:
        calls, elapsed = thread.submit(sweep).result()
    return calls * size / elapsed, elapsed / calls


async def _agent(runtime: Runtime, values: list[bytes], size: int,
                 drop: tuple[str, ...]) -> float:
    batcher: MicroBatcher[dict[str, Any]] = MicroBatcher(size, MAX_WAIT_MS)
    executor = ThreadPoolExecutor(1, thread_name_prefix="model")
    loop = asyncio.get_running_loop()
    encoded: list[bytes] = []

    async def consume() -> None:
        for value in values:
            await batcher.put(decode_payload(value))

    async def infer() -> None:
        while len(encoded) < len(values):
            batch = await batcher.next_batch()
            results = await loop.run_in_executor(executor, runtime.infer, batch)
            for payload, result in zip(batch, results, strict=True):
                if isinstance(result, RecordError):
                    raise result
                encoded.append(encode_payload(merge_result(payload, result, drop)))

    start = time.perf_counter()
    await asyncio.gather(consume(), infer())
    elapsed = time.perf_counter() - start
    executor.shutdown()
    return len(values) / elapsed


def agent(case: Case, runtime: Runtime, size: int, seconds: float) -> float:
    """Records/s of the agent path at one batch size, over about ``seconds`` (at least 4
    batches), after a warm-up run that sizes it."""
    pool = [encode_payload(case.sample(i)) for i in range(DISTINCT)]

    def values(n: int) -> list[bytes]:
        return [pool[i % DISTINCT] for i in range(n)]

    rate = asyncio.run(_agent(runtime, values(max(3 * size, 200)), size, case.drop))
    return asyncio.run(_agent(runtime, values(max(int(rate * seconds), 4 * size)), size,
                              case.drop))


def measure(case: Case, device: str, sizes: list[int], seconds: float,
            max_call_s: float) -> dict[str, Any]:
    """The offline and agent sweeps of one model on one device."""
    module = case.build().to(device).eval()
    runtime = load_runtime(replace(case.spec, device=device), case.base_dir, case.name)
    runtime.warmup()
    rows = []
    for size in sizes:
        peak, call_s = offline(case, module, device, size, seconds)
        streamed = agent(case, runtime, size, seconds)
        rows.append({"batch": size, "offline": peak, "agent": streamed,
                     "ratio": streamed / peak})
        print(f"  {case.name:<10} {device:<4} batch {size:>5}: offline {peak:>10.0f}/s  "
              f"agent {streamed:>10.0f}/s  ({streamed / peak:.2f})", flush=True)
        if call_s > max_call_s:
            break
    best_offline = max(rows, key=lambda r: r["offline"])
    best_agent = max(rows, key=lambda r: r["agent"])
    return {"model": case.name, "note": case.note, "device": device, "rows": rows,
            "offline_peak": best_offline["offline"], "offline_batch": best_offline["batch"],
            "agent_best": best_agent["agent"], "agent_batch": best_agent["batch"],
            "ratio": best_agent["agent"] / best_offline["offline"]}


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "load_1min": os.getloadavg()[0],
            "python": platform.python_version(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def devices(asked: str) -> list[str]:
    if asked == "cpu":
        return ["cpu"]
    if not torch.cuda.is_available():
        if asked == "cuda":
            sys.exit("--device cuda: torch sees no CUDA device")
        print("no CUDA device: measuring on the CPU only")
        return ["cpu"]
    return ["cuda"] if asked == "cuda" else ["cuda", "cpu"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu", "both"], default="both")
    parser.add_argument("--tokens", type=int, default=64, help="MiniLM request length")
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--max-call-s", type=float, default=1.0,
                        help="stop a sweep after a batch size whose call takes this long")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    info = machine()
    print(json.dumps(info))
    cases = [minilm_case(args.tokens), cnn_case()]
    results = [measure(case, device, SIZES[device], args.seconds, args.max_call_s)
               for device in devices(args.device) for case in cases]
    print(f"\n{'model':<10} {'device':<6} {'offline peak/s':>15} {'at':>5} "
          f"{'agent best/s':>13} {'at':>5} {'ratio':>6}  model")
    for r in results:
        print(f"{r['model']:<10} {r['device']:<6} {r['offline_peak']:>15.0f} "
              f"{r['offline_batch']:>5} {r['agent_best']:>13.0f} {r['agent_batch']:>5} "
              f"{r['ratio']:>6.2f}  {r['note']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))


if __name__ == "__main__":
    main()
