"""The cost of exactly-once: a 2-stage cascade under ``exactly_once`` against
``at_least_once``, and the longest output gap after a worker is killed.

``benchmarks/cascade/topology.yaml`` (two cheap python agents in a chain, batches of at
most 64 closed after 2 ms) is deployed twice, one after the other in one run on the same
broker, each time under a unique name on fresh topics (3 partitions, ``LogAppendTime``):
first with ``delivery: at_least_once`` (the baseline: acks, offsets committed every 50
ms), then with ``delivery: exactly_once`` (each batch closed in a Kafka transaction
holding its results and input offsets). For each:

1. *Throughput*: warm-up requests once the workers have joined their groups, then the
   workers are frozen (SIGSTOP) while the ``--records`` timed requests are published, and
   resumed, so that both deployments start warm on the same full backlog. Throughput is
   the number of timed requests over the span between the first and the last broker
   timestamp of their results. CPU per record is the workers' CPU time (from /proc, all
   threads, both stages; not the supervisor's) from the freeze until every timed result
   has arrived, over the timed requests.
2. *Latency*: ``--rate`` requests per second for ``--seconds``. End-to-end latency is
   when this process received a result (read ``read_committed``, as a client reads) minus
   its ``sc-entered`` header (when the client sent the request): p50 and p99. The per-hop
   figure is that divided by 2, the cascade's two stages. The longest gap between two
   consecutive results in this phase is the reference for the next one.
3. *SIGKILL* (``exactly_once`` only): the same steady rate for ``--seconds`` again, and
   halfway through the worker of the second stage (its pid from
   :func:`streamcompose.deploy.status`) is killed with SIGKILL; the supervisor starts it
   again. Reported: the longest gap between consecutive results, and how many of these
   requests were lost or duplicated.

Lost and duplicated requests are counted by request id in every phase. Ratios are
relative to ``at_least_once`` in the same run. Nothing here passes or fails; the script
reports. Usage::

    python benchmarks/delivery.py --bootstrap 127.0.0.1:9092 [--records 20000]
        [--rate 200] [--seconds 10] [--json benchmarks/out/delivery.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from overhead import (
    PARTITIONS,
    _fmt,
    _ratio,
    create_topics,
    machine,
    process_cpu_seconds,
    temporary_home,
    write_json,
)
from tally import Tally, send_steady, worker_pids

from streamcompose import Client
from streamcompose.deploy import deploy, stop
from streamcompose.kafka.admin import delete_topics
from streamcompose.topology import load_topology

HERE = Path(__file__).resolve().parent
CASCADE = HERE / "cascade"
MODES = ("at_least_once", "exactly_once")
KILLED = "second"  # the agent whose worker is killed
WARMUP = 1500
DEPLOY_TIMEOUT_S = 120.0


@dataclass
class Outcome:
    """One deployment's figures (``error`` instead, when it could not be measured)."""

    delivery: str
    throughput: float | None = None
    cpu_us: float | None = None
    e2e_p50_ms: float | None = None
    e2e_p99_ms: float | None = None
    hop_p50_ms: float | None = None
    hop_p99_ms: float | None = None
    gap_ms: float | None = None
    lost: int | None = None
    duplicated: int | None = None
    kill: dict[str, Any] | None = None
    wall_s: float | None = None
    error: str | None = None


def cascade_file(delivery: str, workdir: Path) -> Path:
    """The cascade's topology with ``delivery`` in place of the placeholder, written to
    ``workdir`` beside a link to its steps module."""
    steps = workdir / "steps.py"
    if not steps.exists():
        steps.symlink_to(CASCADE / "steps.py")
    file = workdir / f"cascade-{delivery}.yaml"
    text = (CASCADE / "topology.yaml").read_text()
    file.write_text(text.replace("delivery: DELIVERY", f"delivery: {delivery}"))
    return file


def note(text: str) -> None:
    """A progress line on stderr."""
    print(f"  {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def workers_cpu(pids: list[int]) -> float:
    """The CPU seconds the worker processes used so far."""
    return sum(process_cpu_seconds(pid) for pid in pids)


async def drain(out: Outcome, client: Client, tally: Tally, name: str, warmup: list[str],
                timed: list[str]) -> None:
    """Phase 1: warm up, then drain the timed backlog published while the workers were
    frozen (SIGSTOP), so that both deployments start warm on the same full backlog."""
    await client.publish(name, ({"x": i} for i in range(len(warmup))), warmup)
    await tally.wait_for(warmup)
    pids = [pid for agent in worker_pids(name).values() for pid in agent]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.perf_counter()
        await client.publish(name, ({"x": i} for i in range(len(timed))), timed)
        note(f"published {len(timed)} while frozen in {time.perf_counter() - started:.1f}s")
        cpu = workers_cpu(pids)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    await tally.wait_for(timed)
    out.cpu_us = (workers_cpu(pids) - cpu) / len(timed) * 1e6
    done = np.array([tally.stored[i] for i in timed if i in tally.stored])
    out.throughput = (len(done) - 1) / (max(int(done.max() - done.min()), 1) / 1000)


async def steady(out: Outcome, client: Client, tally: Tally, name: str,
                 args: argparse.Namespace) -> list[str]:
    """Phase 2: latency (end to end, and per hop: half of it) under a steady rate."""
    ids = [f"steady-{i:07d}" for i in range(int(args.rate * args.seconds))]
    await send_steady(client, name, ids, lambda i: {"x": i}, args.rate)
    await tally.wait_for(ids)
    await tally.quiet()
    e2e = np.array([tally.arrived[i] - tally.entered[i] for i in ids if i in tally.arrived])
    out.e2e_p50_ms, out.e2e_p99_ms = np.percentile(e2e, [50, 99]).tolist()
    out.hop_p50_ms, out.hop_p99_ms = out.e2e_p50_ms / 2, out.e2e_p99_ms / 2
    out.gap_ms = tally.longest_gap_ms(ids)
    return ids


async def kill_midstream(client: Client, tally: Tally, name: str,
                         args: argparse.Namespace) -> dict[str, Any]:
    """Phase 3: SIGKILL of the second stage's worker halfway through a steady stream."""
    ids = [f"kill-{i:07d}" for i in range(int(args.rate * args.seconds))]
    (pid,) = worker_pids(name)[KILLED]

    async def kill() -> None:
        await asyncio.sleep(args.seconds / 2)
        os.kill(pid, signal.SIGKILL)

    await asyncio.gather(send_steady(client, name, ids, lambda i: {"x": i}, args.rate), kill())
    await tally.wait_for(ids)
    await tally.quiet()
    lost, duplicated = tally.lost_duplicated(ids)
    return {"agent": KILLED, "pid": pid, "restarted_pid": worker_pids(name)[KILLED][0],
            "requests": len(ids), "gap_ms": tally.longest_gap_ms(ids), "lost": lost,
            "duplicated": duplicated}


async def measure(delivery: str, args: argparse.Namespace, workdir: Path,
                  run_id: str) -> Outcome:
    """Deploy the cascade under ``delivery`` on fresh topics (deleted afterwards) and run
    the phases; an error becomes the outcome's ``error``."""
    started, out = time.perf_counter(), Outcome(delivery)
    name = f"bench-{run_id}-{delivery.replace('_', '-')}"
    file = cascade_file(delivery, workdir)
    topology = load_topology(file, name)
    warmup = [f"warmup-{i:07d}" for i in range(WARMUP)]
    timed = [f"timed-{i:07d}" for i in range(args.records)]
    try:
        await create_topics(args.bootstrap, topology.topics())
        try:
            async with Client(args.bootstrap) as client:
                tally = Tally(client, topology.output_topic)
                await tally.start()
                await asyncio.to_thread(deploy, file, args.bootstrap, name=name,
                                        timeout=DEPLOY_TIMEOUT_S)
                note("deployed")
                try:
                    await drain(out, client, tally, name, warmup, timed)
                    note("drained")
                    ids = await steady(out, client, tally, name, args)
                    note("steady done")
                    out.lost, out.duplicated = tally.lost_duplicated(warmup + timed + ids)
                    if delivery == "exactly_once":
                        out.kill = await kill_midstream(client, tally, name, args)
                        note("kill done")
                finally:
                    await asyncio.to_thread(stop, name)
                    await tally.stop()
                    note("stopped")
        finally:
            await delete_topics(args.bootstrap, [*topology.topics(),
                                                 *topology.changelog_topics(),
                                                 topology.control_topic])
    except Exception as exc:  # reported, not raised: the other deployment still runs
        out.error = f"{type(exc).__name__}: {exc}"
    out.wall_s = time.perf_counter() - started
    return out


def print_report(info: dict[str, Any], args: argparse.Namespace,
                 rows: list[dict[str, Any]]) -> None:
    """The machine, the workload, one row per delivery mode and the kill's outcome."""
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
          f"{info['platform']}; load {info['loadavg_1m_at_start']} (1 min) at start, "
          f"{info['loadavg_1m_at_end']} at end")
    print(f"workload: 2-stage python cascade, batches ≤ 64 / 2 ms, {PARTITIONS} partitions; "
          f"{args.records} timed requests after {WARMUP} warm-up; steady {args.rate:g}/s "
          f"for {args.seconds:g} s")
    print(f"{'delivery':<14} {'records/s':>10} {'× ALO':>6} {'CPU µs/rec':>10} {'CPU ×':>6} "
          f"{'e2e p50':>8} {'e2e p99':>8} {'hop p50':>8} {'hop p99':>8} {'gap ms':>7} "
          f"{'lost':>5} {'dup':>5} {'wall s':>7}")
    for r in rows:
        if r["error"] is not None:
            print(f"{r['delivery']:<14} not measured: {r['error']}")
            continue
        print(f"{r['delivery']:<14} {_fmt(r['throughput'], '.0f'):>10} "
              f"{_fmt(r['throughput_ratio'], '.2f'):>6} {_fmt(r['cpu_us'], '.0f'):>10} "
              f"{_fmt(r['cpu_ratio'], '.2f'):>6} {_fmt(r['e2e_p50_ms'], '.1f'):>8} "
              f"{_fmt(r['e2e_p99_ms'], '.1f'):>8} {_fmt(r['hop_p50_ms'], '.1f'):>8} "
              f"{_fmt(r['hop_p99_ms'], '.1f'):>8} {_fmt(r['gap_ms'], '.0f'):>7} "
              f"{r['lost']:>5} {r['duplicated']:>5} {r['wall_s']:>7.1f}")
    print("latency, ms: e2e = received here (read_committed) − sc-entered; hop = e2e / 2 (two "
          "stages); gap: the longest between consecutive results at the steady rate")
    for r in rows:
        if (k := r["kill"]) is not None:
            print(f"SIGKILL of {k['agent']!r} ({r['delivery']}, pid {k['pid']} → "
                  f"{k['restarted_pid']}) halfway through {k['requests']} requests at "
                  f"{args.rate:g}/s: longest gap between results {k['gap_ms']:.0f} ms "
                  f"(without a kill: {_fmt(r['gap_ms'], '.0f')} ms); lost {k['lost']}, "
                  f"duplicated {k['duplicated']}")


async def run(args: argparse.Namespace, workdir: Path) -> list[Outcome]:
    """Measure both delivery modes, the baseline first."""
    run_id = uuid.uuid4().hex[:8]
    outcomes = []
    for delivery in MODES:
        print(f"measuring {delivery} ...", file=sys.stderr, flush=True)
        outcomes.append(await measure(delivery, args, workdir, run_id))
    return outcomes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap (H:P)")
    p.add_argument("--records", type=int, default=20000, help="timed backlog requests")
    p.add_argument("--rate", type=float, default=200.0,
                   help="requests per second of the latency and kill phases")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="duration of the latency phase and of the kill phase")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table and optionally write the JSON."""
    args = parse_args(argv)
    with temporary_home() as tmp:
        info = machine()
        outcomes = asyncio.run(run(args, tmp))
    info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    base = outcomes[0]
    rows = [{**asdict(o), "throughput_ratio": _ratio(o.throughput, base.throughput),
             "cpu_ratio": _ratio(o.cpu_us, base.cpu_us)} for o in outcomes]
    print_report(info, args, rows)
    write_json(args.json, machine=info, workload={
        "records": args.records, "warmup": WARMUP, "partitions": PARTITIONS,
        "rate": args.rate, "seconds": args.seconds}, results=rows)


if __name__ == "__main__":
    main()
