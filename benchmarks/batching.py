"""What micro-batching gives a model whose cost per record is small, through Kafka.

The model is an ONNX MLP 256-3072-3072-10 (ReLU between layers) with random weights,
written at run time to a temporary folder (about 41 MB: nothing large is committed), run
by ONNX Runtime on one intra-op thread. At its best batch it costs a few hundred µs per
record or less, so what the worker does around each record shows. One run:

1. *In-process*: the ONNX Runtime session called directly with batches of 1, 8, 16, 32,
   64, 128 and 256 rows (``--offline-records`` rows per size, after one warm-up call; the
   best of ``--rounds`` interleaved rounds): records/s per size and the best size.
2. *Streamed*: the model alone deployed as an onnx agent (``batch: {max_size: B,
   max_wait_ms: 5}``, ``intra_op_threads: 1``) at B = 1, at 64 and at the best in-process
   size, each draining the same backlog of ``--records`` records (float32[256] each),
   written while the worker is frozen (SIGSTOP) after a warm-up, in ``--stream-rounds``
   interleaved rounds of which the best is kept, as in-process (every round's figure is
   printed: one drain against the best of several in-process rounds would set a typical
   figure against a lucky one). Throughput is the timed
   records over the span of their outputs' broker timestamps (``LogAppendTime``), as in
   ``overhead.py``, read once the worker has committed every input (while it drains,
   this process only asks the broker for its group's committed offsets, so that it
   takes no CPU from the worker, as nothing does in the in-process runs); the worker's
   CPU time while draining (all threads, from /proc) gives its CPU µs per record, the
   steadier figure on a loaded machine.

It reports the gain of batching (streamed at 64 and at the best size against streamed at
1) and each streamed run against the in-process figure at the same size
(streamed/offline), in records/s and in CPU time per record. ``--adaptive`` adds a run
with ``batch: {max_size: 64, max_wait_ms: auto}``; ``--neighbour`` times the model
in-process at its best size once more beside a busy Python process on another core (the
cost, to the model, of what runs beside it). Deployment files go to a temporary
``STREAMCOMPOSE_HOME``; every topic is deleted at the end. Nothing passes or fails. Usage::

    python benchmarks/batching.py --bootstrap 127.0.0.1:9092 [--records 30000]
        [--offline-records 4096] [--rounds 3] [--stream-rounds 2] [--neighbour]
        [--json benchmarks/out/batching.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from ensemble import TopologyDeployment, wait_until
from overhead import (
    PARTITIONS,
    Record,
    broker_times,
    create_topics,
    machine,
    produce,
    temporary_home,
    write_json,
)

from streamcompose.codec import Trace, encode_payload
from streamcompose.codec.record import now_ms
from streamcompose.kafka.admin import delete_topics

SIZES = (1, 8, 16, 32, 64, 128, 256)
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # the IR of opset 17; a newer onnx writes one older runtimes refuse
    save(model, str(path))
    return path


def session(path: Path) -> Any:
    """An ONNX Runtime session of the model on one intra-op thread, as the agent runs it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def offline(model: Path, rows: np.ndarray, rounds: int, sizes: tuple[int, ...] = SIZES
            ) -> dict[int, tuple[float, float]]:
    """In-process records/s and CPU µs per record at each batch size of ``sizes``: the
    best of ``rounds`` interleaved rounds over the sizes."""
    sess = session(model)
    best = dict.fromkeys(sizes, (0.0, float("inf")))
    for size in sizes:
        sess.run(None, {"x": rows[:size]})
    for _ in range(rounds):
        for size in sizes:
            calls = len(rows) // size
            started, cpu = time.perf_counter(), time.process_time()
            for c in range(calls):
                sess.run(None, {"x": rows[c * size:(c + 1) * size]})
            rate = calls * size / (time.perf_counter() - started)
            cpu_us = (time.process_time() - cpu) / (calls * size) * 1e6
            best[size] = (max(best[size][0], rate), min(best[size][1], cpu_us))
    return best


#: a neighbour for ``--neighbour``: Python packing and unpacking records, as a worker's
#: event loop does on the other core while its model thread runs
NEIGHBOUR = ("import msgpack\n"
             "value = {'x': bytes(1024), 'id': 'r-000001'}\n"
             "while True:\n    msgpack.unpackb(msgpack.packb(value))\n")


def with_neighbour(model: Path, rows: np.ndarray, size: int, rounds: int
                   ) -> tuple[float, float]:
    """In-process records/s at ``size`` alone and while a Python process packs and
    unpacks msgpack on another core (each the best of ``rounds``, alternately)."""
    best = {False: 0.0, True: 0.0}
    for _ in range(rounds):
        for busy in (False, True):
            neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR]) if busy else None
            try:
                time.sleep(0.2 if busy else 0.0)  # started (the scheduler gives it a core)
                if neighbour is not None and neighbour.poll() is not None:
                    raise RuntimeError(f"the neighbour process exited ({neighbour.returncode})")
                best[busy] = max(best[busy], offline(model, rows, 1, (size,))[size][0])
            finally:
                if neighbour is not None:
                    neighbour.kill()
                    neighbour.wait()
    return best[False], best[True]


def records(prefix: str, rows: np.ndarray) -> list[Record]:
    """The agent's input records ``{"x": float32[256]}``, keyed by id."""
    return [(f"{prefix}-{i:06d}".encode(), encode_payload({"x": row}),
             Trace(request_id=f"{prefix}-{i:06d}", entered_ms=now_ms()).headers())
            for i, row in enumerate(rows)]


class Committed:
    """How many records of a topic a consumer group has committed, asked of the broker:
    a cheap request, where reading the outputs while the worker drains would take CPU
    from it (and from nothing in the in-process runs it is compared with)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.group, self.topic = group, topic

    async def __call__(self) -> int:
        offsets = await self.admin.list_consumer_group_offsets(self.group)
        return sum(o.offset for tp, o in offsets.items() if tp.topic == self.topic)


async def streamed(bootstrap: str, batch: str, rows: np.ndarray, model: Path,
                   workdir: Path) -> tuple[float, float]:
    """Records/s and the worker's CPU µs per record of the model deployed with ``batch``
    (a flow mapping) draining a backlog of ``rows``, produced while it was frozen; the
    outputs are read once the worker has committed every input."""
    name = f"bench-{uuid.uuid4().hex[:8]}-mlp"
    file = workdir / f"{name}.yaml"
    file.write_text(TOPOLOGY.format(name=name, batch=batch, path=model))
    deployment = TopologyDeployment(name, file, name)
    warmup = records("warmup", rows[:WARMUP_PER_PARTITION * PARTITIONS])
    timed = records("timed", rows)
    await create_topics(bootstrap, deployment.topology.topics())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    committed = Committed(bootstrap, deployment.topology.group_id("mlp"), deployment.input)
    await producer.start()
    await committed.admin.start()

    async def consumed(target: int) -> None:
        await wait_until(committed, lambda n: n >= target, f"{name}: inputs committed")

    try:
        await deployment.start(bootstrap)
        await produce(producer, deployment.input, warmup)
        await consumed(len(warmup))
        with deployment.frozen():
            await produce(producer, deployment.input, timed)
            cpu = deployment.cpu_seconds()
        await consumed(len(warmup) + len(timed))
        cpu = deployment.cpu_seconds() - cpu
        deployment.check()
        times = await broker_times(bootstrap, deployment.output)
    finally:
        await committed.admin.close()
        await producer.stop()
        await deployment.stop()
        await delete_topics(bootstrap, list(deployment.topics))
    done = np.array([times[k] for k, _, _ in timed])
    return ((len(done) - 1) / (max(int(done.max() - done.min()), 1) / 1000.0),
            cpu / len(timed) * 1e6)


#: label: max_size, the best records/s and CPU µs/record of its drains, every drain's records/s
Figures = dict[str, tuple[int, float, float, list[float]]]


def report(info: dict[str, Any], args: argparse.Namespace,
           rates: dict[int, tuple[float, float]], best: int, stream: Figures
           ) -> dict[str, Any]:
    """Print the tables; return the figures for the JSON."""
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}; load "
          f"{info['loadavg_1m_at_start']} (1 min) at start, {info['loadavg_1m_at_end']} at "
          f"end; model {'-'.join(map(str, LAYERS))} on one intra-op thread")
    print(f"in-process {args.offline_records} rows per batch size, best of {args.rounds}; "
          f"streamed {args.records} timed records after {WARMUP_PER_PARTITION * PARTITIONS} "
          f"warm-up, {PARTITIONS} partitions, one worker, best of {args.stream_rounds}")
    print(f"{'batch':>5} {'in-process rec/s':>17} {'CPU µs/rec':>11} {'× batch 1':>10}")
    for size, (rate, cpu) in rates.items():
        print(f"{size:>5} {rate:>17.0f} {cpu:>11.0f} {rate / rates[1][0]:>10.2f}"
              + ("  best" if size == best else ""))
    print(f"{'batch':<26} {'rec/s':>7} {'× batch 1':>10} {'/offline':>9} {'CPU µs/rec':>11} "
          f"{'CPU × batch 1':>14} {'offline CPU / CPU':>18}  every drain's rec/s")
    one_rate, one_cpu = stream["1"][1:3]
    figures = {}
    for label, (size, rate, cpu, each) in stream.items():
        figures[label] = {"max_size": size, "records_per_s": rate, "gain": rate / one_rate,
                          "streamed_over_offline": rate / rates[size][0], "cpu_us": cpu,
                          "cpu_gain": one_cpu / cpu, "offline_cpu_over_cpu": rates[size][1] / cpu,
                          "records_per_s_each": each}
        f = figures[label]
        print(f"{label:<26} {rate:>7.0f} {f['gain']:>10.2f} {f['streamed_over_offline']:>9.2f} "
              f"{cpu:>11.0f} {f['cpu_gain']:>14.2f} {f['offline_cpu_over_cpu']:>18.2f}  "
              + " ".join(f"{r:.0f}" for r in each))
    at_best = figures[str(best)]
    print(f"gain of batching at 64: in-process {rates[64][0] / rates[1][0]:.2f}×, streamed "
          f"{figures['64']['gain']:.2f}× (CPU per record {figures['64']['cpu_gain']:.2f}×); "
          f"streamed/offline at the best size ({best}): {at_best['streamed_over_offline']:.2f} "
          f"(CPU per record: {at_best['offline_cpu_over_cpu']:.2f})")
    return figures


async def run(args: argparse.Namespace, workdir: Path
              ) -> tuple[dict[int, tuple[float, float]], int, Figures, dict[str, float]]:
    model = write_mlp(workdir / "mlp.onnx")
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((max(args.records, args.offline_records, max(SIZES)),
                                LAYERS[0])).astype(np.float32)
    sweep = rows[:max(args.offline_records, max(SIZES))]
    print("in-process ...", file=sys.stderr, flush=True)
    rates = offline(model, sweep, args.rounds)
    best = max(rates, key=lambda size: rates[size][0])
    variants = {str(s): (s, f"{{max_size: {s}, max_wait_ms: 5}}")
                for s in dict.fromkeys((1, 64, best))}
    if args.adaptive:
        variants["64, max_wait_ms: auto"] = (64, "{max_size: 64, max_wait_ms: auto}")
    neighbour = {}
    if args.neighbour:
        print("in-process beside a busy neighbour ...", file=sys.stderr, flush=True)
        alone, busy = with_neighbour(model, sweep, best, args.rounds)
        neighbour = {"records_per_s_alone": alone, "records_per_s_beside": busy}
    drains: dict[str, list[tuple[float, float]]] = {label: [] for label in variants}
    for r in range(args.stream_rounds):
        for label, (_, batch) in variants.items():
            print(f"streamed, {label}, round {r + 1} of {args.stream_rounds} ...",
                  file=sys.stderr, flush=True)
            drains[label].append(await streamed(args.bootstrap, batch, rows[:args.records],
                                                model, workdir))
    stream = {label: (size, max(rate for rate, _ in drains[label]),
                      min(cpu for _, cpu in drains[label]), [rate for rate, _ in drains[label]])
              for label, (size, _) in variants.items()}
    return rates, best, stream, neighbour


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the tables and optionally write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap (H:P)")
    p.add_argument("--records", type=int, default=30000,
                   help="timed records per streamed run (about three seconds' backlog at the "
                        "best size: a shorter one weighs the start of the drain more)")
    p.add_argument("--offline-records", type=int, default=4096,
                   help="rows per batch size in-process (at least 256; a few thousand, so "
                        "that the best of the rounds is not the best of a few calls)")
    p.add_argument("--rounds", type=int, default=3,
                   help="in-process rounds over the batch sizes; the best is kept")
    p.add_argument("--stream-rounds", type=int, default=2,
                   help="interleaved rounds of the streamed drains; the best is kept")
    p.add_argument("--adaptive", action="store_true",
                   help="also stream with batch {max_size: 64, max_wait_ms: auto}")
    p.add_argument("--neighbour", action="store_true",
                   help="also time the model in-process at its best size beside a Python "
                        "process packing and unpacking msgpack on another core, as a "
                        "worker's event loop does beside its model thread")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    with temporary_home() as tmp:
        info = machine()
        rates, best, stream, neighbour = asyncio.run(run(args, tmp))
    info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    figures = report(info, args, rates, best, stream)
    if neighbour:
        alone, beside = neighbour["records_per_s_alone"], neighbour["records_per_s_beside"]
        print(f"in-process at {best}, best of {args.rounds}: {alone:.0f} records/s alone, "
              f"{beside:.0f} beside a Python process packing msgpack on another core "
              f"({beside / alone:.2f} of alone)")
    write_json(args.json, machine=info, layers=LAYERS, best_batch=best, streamed=figures,
               neighbour=neighbour,
               offline={size: {"records_per_s": r, "cpu_us": c}
                        for size, (r, c) in rates.items()})


if __name__ == "__main__":
    main()
