"""What micro-batching gives the MiniLM encoder, in-process and through Kafka.

The encoder of ``topologies/text_triage.yaml`` (all-MiniLM-L6-v2 as TorchScript, mean
pooled and normalised) is measured two ways in one run, on the same input: support
tickets of :mod:`text_triage.corpus` tokenized as the tokenize agent does, all of one
length bucket (``--bucket`` tokens, 32 by default), so that every batch is one call:

1. *In-process*: the TorchScript file called directly with batches of 1, 4, 8, 16, 32
   and 64 rows (``--offline-records`` rows per size, after one warm-up call; the best
   of ``--rounds`` interleaved rounds), on ``--threads`` torch threads (1 by default):
   records/s per size, the best size, and the gain of the best over batch 1.
2. *Streamed*: the encoder alone deployed as an agent (the pre-tokenized records on its
   input topic, ``batch: {max_size: B, max_wait_ms: 5}``, the same torch threads), at
   B = 1 and at the best in-process size: warm-up records, then ``--records`` timed
   records, all produced before the worker starts. Throughput is the timed records over
   the span of their outputs' broker timestamps (``LogAppendTime``), as in ``overhead.py``.

The streamed/offline ratio compares each streamed run with the in-process figure at the
same batch size. Deployment files go to a temporary ``STREAMCOMPOSE_HOME``; every topic
is deleted at the end. Nothing passes or fails. Usage::

    python benchmarks/text.py --bootstrap 127.0.0.1:9092 [--records 480]
        [--offline-records 256] [--rounds 3] [--bucket 32] [--threads 1]
        [--json benchmarks/out/text.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from overhead import (
    PARTITIONS,
    STALL_S,
    BenchError,
    Record,
    create_topics,
    machine,
    produce,
    stored_count,
    temporary_home,
    write_json,
)

from streamcompose.codec import Trace, encode_payload
from streamcompose.codec.record import now_ms
from streamcompose.kafka.admin import delete_topics

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "topologies"))

from text_triage import corpus, direct  # noqa: E402 (the topologies folder, just added)

SIZES = (1, 4, 8, 16, 32, 64)
WARMUP_PER_PARTITION = 32
TOPOLOGY = """name: {name}
fields: [input_ids, attention_mask]
agents:
  encoder:
    inputs: [$input]
    model:
      runtime: torch
      path: {path}
      options:
        inputs:
          input_ids: {{dtype: int64, shape: [null]}}
          attention_mask: {{dtype: int64, shape: [null]}}
        outputs: [embedding]
        intra_op_threads: {threads}
    batch: {{max_size: {size}, max_wait_ms: 5}}
    drop: [input_ids, attention_mask]
"""


def rows_of_bucket(bucket: int, count: int) -> list[dict[str, np.ndarray]]:
    """``count`` tokenized tickets whose length bucket is ``bucket`` (cycling through the
    corpus's tickets of that bucket)."""
    rows = [r for r in direct.tokenize([t for t, _ in corpus.tickets()])
            if len(r["input_ids"]) == bucket]
    if not rows:
        raise BenchError(f"no ticket of the corpus falls in the {bucket}-token bucket")
    return [rows[i % len(rows)] for i in range(count)]


def offline(encoder: Any, rows: list[dict[str, np.ndarray]], rounds: int) -> dict[int, float]:
    """In-process records/s of the encoder at each batch size of :data:`SIZES`: the best
    of ``rounds`` rounds, each round timing every size once (interleaved, so that a busy
    moment of the machine does not fall on one size only)."""
    best = dict.fromkeys(SIZES, 0.0)
    for size in SIZES:
        direct.run_encoder(encoder, rows[:size])
    for _ in range(rounds):
        for size in SIZES:
            calls = len(rows) // size  # run() passes at least max(SIZES) rows
            started = time.perf_counter()
            for c in range(calls):
                direct.run_encoder(encoder, rows[c * size:(c + 1) * size])
            best[size] = max(best[size], calls * size / (time.perf_counter() - started))
    return best


def records(prefix: str, rows: list[dict[str, np.ndarray]]) -> list[Record]:
    """The encoder agent's input records: the tokenize agent's fields, keyed by id."""
    out = []
    for i, row in enumerate(rows):
        key = f"{prefix}-{i:06d}"
        out.append((key.encode(), encode_payload(row),
                    Trace(request_id=key, entered_ms=now_ms()).headers()))
    return out


async def output_times(bootstrap: str, topic: str, keys: set[bytes]) -> dict[bytes, int]:
    """The broker timestamp of each key's committed output, once all ``keys`` have one
    (end offsets would count the transaction markers too); raise if the topic stalls."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        times: dict[bytes, int] = {}
        moved = time.perf_counter()
        while not keys <= times.keys():
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for batch in batches.values():
                times.update((r.key, r.timestamp) for r in batch if r.key not in times)
                moved = time.perf_counter()
            if time.perf_counter() - moved > STALL_S:
                raise BenchError(f"{topic}: {len(keys - times.keys())} outputs missing, "
                                 f"none more for {STALL_S:.0f}s")
        return times
    finally:
        await consumer.stop()


async def leaders_known(bootstrap: str, topic: str) -> None:
    """Return once a client finds every partition's leader (asking quietly, where a
    producer would log a retry per partition)."""
    counter = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await counter.start()
    try:
        await stored_count(counter, topic)
    finally:
        await counter.stop()


async def streamed(bootstrap: str, size: int, rows: list[dict[str, np.ndarray]],
                   workdir: Path, threads: int) -> float:
    """Records/s of the encoder agent at ``max_size`` ``size`` draining a backlog."""
    from streamcompose.deploy import deploy, stop  # after STREAMCOMPOSE_HOME is set

    name = f"bench-{uuid.uuid4().hex[:8]}-text-{size}"
    topics = (f"{name}.in", f"{name}.out", f"{name}.dlq")
    file = workdir / f"{name}.yaml"
    file.write_text(TOPOLOGY.format(name=name, size=size, threads=threads,
                                    path=direct.MODELS_DIR / direct.ENCODER_FILE))
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
           best: int, stream: dict[int, float]) -> None:
    """The machine, the in-process table and the streamed rows, on stdout."""
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}; "
          f"load {info['loadavg_1m_at_start']} (1 min) at start, torch {info['torch']}, "
          f"{info['threads']} thread(s)")
    print(f"input: tickets padded to {args.bucket} tokens; in-process "
          f"{args.offline_records} rows per batch size, best of {args.rounds}; streamed "
          f"{args.records} timed records after {WARMUP_PER_PARTITION * PARTITIONS} "
          f"warm-up, {PARTITIONS} partitions, one worker")
    print(f"{'batch':>5} {'in-process rec/s':>17} {'× batch 1':>10}")
    for size, rate in rates.items():
        print(f"{size:>5} {rate:>17.1f} {rate / rates[1]:>10.2f}" + ("  best" if size == best
                                                                     else ""))
    print(f"{'max_size':>8} {'streamed rec/s':>15} {'streamed/offline':>17}")
    for size, rate in stream.items():
        print(f"{size:>8} {rate:>15.1f} {rate / rates[size]:>17.2f}")
    print(f"gain of batching: in-process {rates[best] / rates[1]:.2f}×, streamed "
          f"{stream[best] / stream[1]:.2f}×")


async def run(args: argparse.Namespace, workdir: Path) -> tuple[dict[int, float], int,
                                                                dict[int, float]]:
    in_process = max(args.offline_records, max(SIZES))
    rows = rows_of_bucket(args.bucket, max(args.records, in_process))
    print("in-process ...", file=sys.stderr, flush=True)
    torch.set_num_threads(args.threads)
    rates = offline(direct.load_encoder(), rows[:in_process], args.rounds)
    best = max(rates, key=rates.__getitem__)
    stream = {}
    for size in dict.fromkeys((1, best)):
        print(f"streamed, max_size {size} ...", file=sys.stderr, flush=True)
        stream[size] = await streamed(args.bootstrap, size, rows[:args.records], workdir,
                                      args.threads)
    return rates, best, stream


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the tables and optionally write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap (H:P)")
    p.add_argument("--records", type=int, default=480, help="timed records per streamed run")
    p.add_argument("--offline-records", type=int, default=256,
                   help="rows per batch size in-process (at least 64)")
    p.add_argument("--rounds", type=int, default=3,
                   help="in-process rounds over the batch sizes; the best is kept")
    p.add_argument("--bucket", type=int, default=32, help="the length bucket (tokens)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads, in-process and in the worker (intra_op_threads)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    with temporary_home() as tmp:
        info = {**machine(), "torch": torch.__version__, "threads": args.threads}
        rates, best, stream = asyncio.run(run(args, tmp))
    report(info, args, rates, best, stream)
    write_json(args.json, machine=info, bucket=args.bucket, offline_records_per_s=rates,
               best_batch=best, streamed_records_per_s=stream,
               gain_offline=rates[best] / rates[1], gain_streamed=stream[best] / stream[1],
               streamed_over_offline={s: r / rates[s] for s, r in stream.items()})


if __name__ == "__main__":
    main()
