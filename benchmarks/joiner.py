"""What the joiner hop costs: its latency at a steady request rate and its capacity.

One joiner agent (``join: {mode: all, strategy: soft_vote}`` over ``--branches``
branches, exactly once, as ``vote`` of ``topologies/digits_ensemble.yaml``) deployed as a
user deploys it. Its branches are python agents that are never fed: this process writes
their result topics itself (``{"pixels": float32[64], "proba": float32[10]}`` per
branch and request, every branch of a request on one partition number), so what is
measured is the joiner alone, not the commits of the agents before it.

1. *Latency probe*: ``--latency-records`` requests at ``--latency-rate`` per second (25 by
   default), each branch result written ``uniform(0, --spread-ms)`` after its request's
   moment (20 ms by default: the members of the digits ensemble answer 13 to 28 ms after
   their input at that rate), so that a joiner sees a request over several polls. The
   hop is the broker timestamp of the joined output (``LogAppendTime``) minus the latest
   of its branch results' (p50, p99); the time until a ``read_committed`` client
   received it is reported too (the broker runs on this machine, so both clocks agree).
2. *Backlog*: the worker frozen (SIGSTOP), ``--records`` requests written, then let go:
   requests/s over the span of their outputs' broker timestamps, and the joiner's CPU µs
   per request (from /proc, all threads).

The worker's knobs are the defaults. Nothing passes or fails; every topic is deleted at
the end. To measure an older checkout, run this file with ``PYTHONPATH`` pointing at it
(the workers inherit it). Usage::

    python benchmarks/joiner.py --bootstrap 127.0.0.1:9092 [--latency-records 500]
        [--latency-rate 25] [--records 3000] [--json benchmarks/out/joiner.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from ensemble import OutputCollector, TopologyDeployment, wait_until
from overhead import (
    PARTITIONS,
    broker_times,
    create_topics,
    machine,
    temporary_home,
    write_json,
)

from streamcompose.codec import Trace, encode_payload
from streamcompose.codec.record import now_ms
from streamcompose.kafka.admin import delete_topics

IDENTITY = Path(__file__).resolve().parent / "identity" / "steps.py"
WARMUP = 200
TOPOLOGY = """name: {name}
fields: [pixels]
agents:
{branches}
  vote:
    inputs: [{names}]
    join: {{mode: all, strategy: soft_vote, field: proba, timeout_ms: 10000}}
"""
BRANCH = """  {branch}:
    inputs: [$input]
    model: {{runtime: python, entrypoint: "steps:identity"}}
"""


def write_topology(workdir: Path, name: str, branches: list[str]) -> Path:
    """The joiner and its (never fed) branch agents, beside a link to the identity step."""
    if not (workdir / "steps.py").exists():
        (workdir / "steps.py").symlink_to(IDENTITY)
    file = workdir / f"{name}.yaml"
    file.write_text(TOPOLOGY.format(name=name, names=", ".join(branches), branches="".join(
        BRANCH.format(branch=b) for b in branches)))
    return file


async def send_requests(producer: AIOKafkaProducer, topics: list[str], prefix: str,
                        count: int, rate: float | None, spread_ms: float = 0.0
                        ) -> list[bytes]:
    """Write every branch result of ``count`` requests, at ``rate`` requests/s if given,
    each branch's result ``uniform(0, spread_ms)`` after its request's moment (as members
    of different speeds answer); returns their keys once the broker stored them all."""
    rng = np.random.default_rng(0)
    keys = [f"{prefix}-{i:06d}".encode() for i in range(count)]
    spread_s = spread_ms / 1000 if rate else 0.0
    events = sorted(((i / rate if rate else 0.0) + rng.uniform(0, spread_s), i, topic)
                    for i in range(count) for topic in topics)
    traces = [Trace(request_id=k.decode(), entered_ms=now_ms()).headers() for k in keys]
    started = time.perf_counter()
    deliveries = []
    for at, i, topic in events:
        if (delay := started + at - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        value = encode_payload({"pixels": np.zeros(64, np.float32),
                                "proba": rng.dirichlet(np.ones(10)).astype(np.float32)})
        deliveries.append(await producer.send(topic, value, key=keys[i], headers=traces[i],
                                              partition=i % PARTITIONS))
    await asyncio.gather(*deliveries)
    return keys


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    name = f"bench-{uuid.uuid4().hex[:8]}-join"
    branches = [f"b{i}" for i in range(args.branches)]
    deployment = TopologyDeployment("joiner", write_topology(workdir, name, branches), name)
    topology = deployment.topology
    inputs = [topology.topic_of(b) for b in branches]
    await create_topics(args.bootstrap, topology.topics())
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    collector = OutputCollector(args.bootstrap, deployment.output)
    await producer.start()
    await collector.start()

    async def outputs(target: int) -> None:
        await wait_until(collector.count, lambda n: n >= target, f"outputs (of {target})")

    try:
        await deployment.start(args.bootstrap)
        await outputs(len(await send_requests(producer, inputs, "warmup", WARMUP, None)))
        print("latency probe ...", file=sys.stderr, flush=True)
        probe = await send_requests(producer, inputs, "probe", args.latency_records,
                                    args.latency_rate, args.spread_ms)
        await outputs(WARMUP + len(probe))
        print("backlog ...", file=sys.stderr, flush=True)
        with deployment.frozen():
            timed = await send_requests(producer, inputs, "timed", args.records, None)
            cpu_before = deployment.cpu_by_agent()["vote"]
        await outputs(WARMUP + len(probe) + len(timed))
        cpu = deployment.cpu_by_agent()["vote"] - cpu_before
        deployment.check()
        times = [await broker_times(args.bootstrap, t) for t in inputs]
    finally:
        await collector.stop()
        await producer.stop()
        await deployment.stop()
        await delete_topics(args.bootstrap, list(deployment.topics))
    hop = np.array([collector.times[k] - max(t[k] for t in times) for k in probe])
    readable = np.array([collector.received[k] - max(t[k] for t in times) for k in probe])
    done = np.array([collector.times[k] for k in timed])
    return {"hop_p50_ms": float(np.percentile(hop, 50)),
            "hop_p99_ms": float(np.percentile(hop, 99)),
            "readable_p50_ms": float(np.percentile(readable, 50)),
            "readable_p99_ms": float(np.percentile(readable, 99)),
            "backlog_requests_per_s": (len(done) - 1) / max(int(np.ptp(done)), 1) * 1000,
            "cpu_us_per_request": cpu / len(timed) * 1e6,
            "partial": len(collector.partial)}


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the figures and optionally write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap (H:P)")
    p.add_argument("--branches", type=int, default=4, help="branches joined")
    p.add_argument("--latency-records", type=int, default=500, help="requests of the probe")
    p.add_argument("--latency-rate", type=float, default=25.0, help="probe requests per second")
    p.add_argument("--spread-ms", type=float, default=20.0,
                   help="each branch result of a probe request comes uniform(0, this) "
                        "after the request's moment")
    p.add_argument("--records", type=int, default=3000, help="requests of the backlog")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    with temporary_home() as tmp:
        info = machine()
        figures = asyncio.run(measure(args, tmp))
    info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}; load "
          f"{info['loadavg_1m_at_start']} (1 min) at start, {info['loadavg_1m_at_end']} at "
          f"end; streamcompose from {sys.modules['streamcompose'].__file__}")
    print(f"joiner of {args.branches} branches; probe {args.latency_records} requests at "
          f"{args.latency_rate:g}/s, branch results spread over {args.spread_ms:g} ms; "
          f"backlog {args.records} requests")
    print(f"hop p50 {figures['hop_p50_ms']:.1f} ms, p99 {figures['hop_p99_ms']:.1f} ms; "
          f"readable p50 {figures['readable_p50_ms']:.1f} ms, p99 "
          f"{figures['readable_p99_ms']:.1f} ms; backlog "
          f"{figures['backlog_requests_per_s']:.0f} requests/s, "
          f"{figures['cpu_us_per_request']:.0f} CPU µs/request; partial {figures['partial']}")
    write_json(args.json, machine=info, branches=args.branches,
               latency_rate=args.latency_rate, **figures)


if __name__ == "__main__":
    main()
