"""What micro-batching gives a model whose cost per record is small, through Kafka.

The model is an ONNX MLP 256-3072-3072-10 (ReLU between layers) with random weights,
written at run time to a temporary folder (about 41 MB: nothing large is committed), run
by ONNX Runtime on one intra-op thread. At its best batch it costs a few hundred µs per
record or less, so what the worker does around each record shows. One run:

1. *In-process*: the ONNX Runtime session called directly with batches of 1, 8, 16, 32,
   64 and 128 rows (``--offline-records`` rows per size, after one warm-up call; the best
   of ``--rounds`` interleaved rounds): records/s per size and the best size.
2. *Streamed*: the model alone deployed as an onnx agent (``batch: {max_size: B,
   max_wait_ms: 5}``, ``intra_op_threads: 1``) at B = 1, at 64 and at the best in-process
   size, each draining the same backlog: warm-up and ``--records`` timed records, all
   produced before the worker starts (float32[256] each). Throughput is the timed
   records over the span of their outputs' broker timestamps (``LogAppendTime``), as in
   ``overhead.py``.

It reports the gain of batching (streamed at 64 and at the best size against streamed at
1) and each streamed run against the in-process figure at the same size
(streamed/offline). Deployment files go to a temporary ``STREAMCOMPOSE_HOME``; every
topic is deleted at the end. Nothing passes or fails. Usage::

    python benchmarks/batching.py --bootstrap 127.0.0.1:9092 [--records 4000]
        [--offline-records 512] [--rounds 3] [--json benchmarks/out/batching.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from overhead import (
    PARTITIONS,
    Record,
    create_topics,
    machine,
    produce,
    temporary_home,
    write_json,
)
from text import leaders_known, output_times

from streamcompose.codec import Trace, encode_payload
from streamcompose.codec.record import now_ms
from streamcompose.kafka.admin import delete_topics

SIZES = (1, 8, 16, 32, 64, 128)
LAYERS = (256, 3072, 3072, 10)
WARMUP_PER_PARTITION = 128
TOPOLOGY = """name: {name}
fields: [x]
agents:
  mlp:
    inputs: [$input]
    model:
      runtime: onnx
      path: {path}
      outputs: [y]
      options: {{intra_op_threads: 1}}
    batch: {batch}
    drop: [x]
"""


def write_mlp(path: Path, seed: int = 0) -> Path:
    """An MLP of :data:`LAYERS` with random (He-initialised) weights, input ``x``
    float32[N,256], output ``y`` float32[N,10]."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    nodes, weights, last = [], [], "x"
    for i, (n_in, n_out) in enumerate(itertools.pairwise(LAYERS)):
        w = (rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in)).astype(np.float32)
        weights += [numpy_helper.from_array(w, f"w{i}"),
                    numpy_helper.from_array(np.zeros(n_out, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        last = f"a{i}"
        if i < len(LAYERS) - 2:
            nodes.append(helper.make_node("Relu", [last], [f"r{i}"]))
            last = f"r{i}"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", LAYERS[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", LAYERS[-1]])], weights)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def session(path: Path) -> Any:
    """An ONNX Runtime session of the model on one intra-op thread, as the agent runs it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def offline(model: Path, rows: np.ndarray, rounds: int) -> dict[int, float]:
    """In-process records/s at each batch size of :data:`SIZES`: the best of ``rounds``
    interleaved rounds over the sizes."""
    sess = session(model)
    best = dict.fromkeys(SIZES, 0.0)
    for size in SIZES:
        sess.run(None, {"x": rows[:size]})
    for _ in range(rounds):
        for size in SIZES:
            calls = len(rows) // size
            started = time.perf_counter()
            for c in range(calls):
                sess.run(None, {"x": rows[c * size:(c + 1) * size]})
            best[size] = max(best[size], calls * size / (time.perf_counter() - started))
    return best


def records(prefix: str, rows: np.ndarray) -> list[Record]:
    """The agent's input records ``{"x": float32[256]}``, keyed by id."""
    return [(f"{prefix}-{i:06d}".encode(), encode_payload({"x": row}),
             Trace(request_id=f"{prefix}-{i:06d}", entered_ms=now_ms()).headers())
            for i, row in enumerate(rows)]


async def streamed(bootstrap: str, batch: str, rows: np.ndarray, model: Path,
                   workdir: Path) -> float:
    """Records/s of the model deployed with ``batch`` (a flow mapping) draining a
    backlog of ``rows``."""
    from streamcompose.deploy import deploy, stop  # after STREAMCOMPOSE_HOME is set

    name = f"bench-{uuid.uuid4().hex[:8]}-mlp"
    topics = (f"{name}.in", f"{name}.out", f"{name}.dlq")
    file = workdir / f"{name}.yaml"
    file.write_text(TOPOLOGY.format(name=name, batch=batch, path=model))
    warmup = records("warmup", rows[:WARMUP_PER_PARTITION * PARTITIONS])
    timed = records("timed", rows)
    await create_topics(bootstrap, topics)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    deployed = False
    try:
        await leaders_known(bootstrap, topics[0])
        await produce(producer, topics[0], warmup + timed)
        await producer.stop()
        await asyncio.to_thread(deploy, file, bootstrap, name=name, timeout=120.0)
        deployed = True
        outputs = await output_times(bootstrap, topics[1], {k for k, _, _ in warmup + timed})
    finally:
        await producer.stop()
        if deployed:
            await asyncio.to_thread(stop, name)
        await delete_topics(bootstrap, list(topics))
    done = np.array([outputs[k] for k, _, _ in timed])
    return (len(done) - 1) / (max(int(done.max() - done.min()), 1) / 1000.0)


def report(info: dict[str, Any], args: argparse.Namespace, rates: dict[int, float],
           best: int, stream: dict[str, tuple[int, float]]) -> dict[str, Any]:
    """Print the tables; return the figures for the JSON."""
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}; load "
          f"{info['loadavg_1m_at_start']} (1 min) at start, {info['loadavg_1m_at_end']} at "
          f"end; model {'-'.join(map(str, LAYERS))} on one intra-op thread")
    print(f"in-process {args.offline_records} rows per batch size, best of {args.rounds}; "
          f"streamed {args.records} timed records after {WARMUP_PER_PARTITION * PARTITIONS} "
          f"warm-up, {PARTITIONS} partitions, one worker")
    print(f"{'batch':>5} {'in-process rec/s':>17} {'µs/rec':>7} {'× batch 1':>10}")
    for size, rate in rates.items():
        print(f"{size:>5} {rate:>17.0f} {1e6 / rate:>7.0f} {rate / rates[1]:>10.2f}"
              + ("  best" if size == best else ""))
    print(f"{'batch':<28} {'streamed rec/s':>15} {'× batch 1':>10} {'streamed/offline':>17}")
    one = stream["1"][1]
    for label, (size, rate) in stream.items():
        print(f"{label:<28} {rate:>15.0f} {rate / one:>10.2f} {rate / rates[size]:>17.2f}")
    figures = {label: {"max_size": size, "records_per_s": rate, "gain": rate / one,
                       "streamed_over_offline": rate / rates[size]}
               for label, (size, rate) in stream.items()}
    print(f"gain of batching at 64: in-process {rates[64] / rates[1]:.2f}×, streamed "
          f"{figures['64']['gain']:.2f}×; streamed/offline at the best size ({best}): "
          f"{figures[str(best)]['streamed_over_offline']:.2f}")
    return figures


async def run(args: argparse.Namespace, workdir: Path
              ) -> tuple[dict[int, float], int, dict[str, tuple[int, float]]]:
    model = write_mlp(workdir / "mlp.onnx")
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((max(args.records, args.offline_records, max(SIZES)),
                                LAYERS[0])).astype(np.float32)
    print("in-process ...", file=sys.stderr, flush=True)
    rates = offline(model, rows[:max(args.offline_records, max(SIZES))], args.rounds)
    best = max(rates, key=rates.__getitem__)
    variants = {str(s): (s, f"{{max_size: {s}, max_wait_ms: 5}}")
                for s in dict.fromkeys((1, 64, best))}
    variants.update({f"{label} (64, auto wait)": (64, "{max_size: 64, max_wait_ms: auto}")
                     for label in ("adaptive",) if args.adaptive})
    stream = {}
    for label, (size, batch) in variants.items():
        print(f"streamed, {label} ...", file=sys.stderr, flush=True)
        stream[label] = (size, await streamed(args.bootstrap, batch, rows[:args.records],
                                              model, workdir))
    return rates, best, stream


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the tables and optionally write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap (H:P)")
    p.add_argument("--records", type=int, default=4000, help="timed records per streamed run")
    p.add_argument("--offline-records", type=int, default=512,
                   help="rows per batch size in-process (at least 128)")
    p.add_argument("--rounds", type=int, default=3,
                   help="in-process rounds over the batch sizes; the best is kept")
    p.add_argument("--adaptive", action="store_true",
                   help="also stream with batch {max_size: 64, max_wait_ms: auto}")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    with temporary_home() as tmp:
        info = machine()
        rates, best, stream = asyncio.run(run(args, tmp))
    info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    figures = report(info, args, rates, best, stream)
    write_json(args.json, machine=info, layers=LAYERS, offline_records_per_s=rates,
               best_batch=best, streamed=figures)


if __name__ == "__main__":
    main()
