"""Memory under load: every worker's RSS before and after tens of thousands of requests
through the digits ensemble.

``topologies/digits_ensemble.yaml`` (``features``, four members: logreg and forest on
ONNX Runtime, mlp and cnn on torch, and the ``vote`` joiner) is deployed under a unique
name with :func:`streamcompose.deploy.deploy`, which returns once every worker has loaded
its model, warmed up and joined its group. Then:

1. *Start*: the resident set size (``VmRSS`` in ``/proc/<pid>/status``) of every worker
   process that :func:`streamcompose.deploy.status` lists, before any request is sent.
2. *Load*: ``--requests`` requests ``{"pixels": float32[64]}`` (the held-out digits of
   ``topologies/models/digits_test.npz``, repeated) at a steady ``--rate`` through a
   :class:`streamcompose.Client`, while every worker's RSS is sampled every
   ``--sample-s`` seconds (the series goes to the JSON).
3. *End*: once every request has a result (or none more came for a while) and no result
   has come for 2 s, every worker's RSS again, and its peak (``VmHWM``: the most it ever
   held, model loading included).

Growth is end minus start, in MB and in bytes per request. The results are read as a
client reads them (``read_committed``) and counted by request id: lost (no result),
duplicated (a result beyond the first) and partial (the joiner timed out and lists the
``missing`` members) are printed, not asserted. A worker restarted during the run is
flagged; its end figure is then its successor's. The supervisor is left out. Nothing here
passes or fails; the script reports. Usage::

    python benchmarks/soak.py --bootstrap 127.0.0.1:9092 [--requests 20000] [--rate 300]
        [--sample-s 10] [--json benchmarks/out/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from ensemble import ENSEMBLE, held_out_digits
from overhead import _fmt, machine, temporary_home, write_json
from tally import Tally, send_steady, worker_pids

from streamcompose import Client
from streamcompose.deploy import deploy, stop
from streamcompose.kafka.admin import delete_topics
from streamcompose.topology import load_topology

DEPLOY_TIMEOUT_S = 180.0
Workers = dict[str, int]  # "<agent>-<replica>": pid


def memory_mb(pid: int) -> dict[str, float]:
    """A process's resident set size now (``VmRSS``) and at its peak (``VmHWM``), in MB."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def workers_of(name: str) -> Workers:
    """Every worker process of the deployment, by agent and replica."""
    return {f"{agent}-{replica}": pid for agent, pids in worker_pids(name).items()
            for replica, pid in enumerate(pids)}


async def sample(workers: Workers, period_s: float, series: list[dict[str, Any]]) -> None:
    """Append every worker's RSS to ``series`` every ``period_s`` until cancelled."""
    started = time.perf_counter()
    while True:
        await asyncio.sleep(period_s)
        series.append({"t_s": round(time.perf_counter() - started, 1),
                       "rss_mb": {w: round(memory_mb(pid)["VmRSS"], 1)
                                  for w, pid in workers.items()}})


async def soak(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Deploy, measure, stop and delete the topics; returns the figures."""
    topology = load_topology(ENSEMBLE, name)
    pixels = held_out_digits()
    ids = [f"soak-{i:07d}" for i in range(args.requests)]
    series: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(deploy, ENSEMBLE, args.bootstrap, name=name,
                                timeout=DEPLOY_TIMEOUT_S)
        try:
            workers = workers_of(name)
            start = {w: memory_mb(pid) for w, pid in workers.items()}
            async with Client(args.bootstrap) as client:
                tally = Tally(client, topology.output_topic)
                await tally.start()
                sampler = asyncio.create_task(sample(workers, args.sample_s, series))
                began = time.perf_counter()
                await send_steady(client, name, ids,
                                  lambda i: {"pixels": pixels[i % len(pixels)]}, args.rate)
                sent_s = time.perf_counter() - began
                await tally.wait_for(ids)
                await tally.quiet()
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
                after = workers_of(name)
                end = {w: memory_mb(pid) for w, pid in after.items()}
                await tally.stop()
        finally:
            await asyncio.to_thread(stop, name)
    finally:
        await delete_topics(args.bootstrap, [*topology.topics(), *topology.changelog_topics(),
                                             topology.control_topic])
    lost, duplicated = tally.lost_duplicated(ids)
    rows = [{"worker": w, "pid": pid, "restarted": after[w] != pid,
             "start_mb": start[w]["VmRSS"], "end_mb": end[w]["VmRSS"],
             "growth_mb": end[w]["VmRSS"] - start[w]["VmRSS"], "peak_mb": end[w]["VmHWM"],
             "growth_bytes_per_request": (end[w]["VmRSS"] - start[w]["VmRSS"]) * 2**20
             / args.requests} for w, pid in workers.items()]
    return {"workers": rows, "lost": lost, "duplicated": duplicated,
            "partial": len(tally.partial), "sent_s": sent_s, "series": series}


def print_report(info: dict[str, Any], args: argparse.Namespace,
                 figures: dict[str, Any]) -> None:
    """The machine, the workload and one row per worker."""
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
          f"{info['platform']}; load {info['loadavg_1m_at_start']} (1 min) at start, "
          f"{info['loadavg_1m_at_end']} at end")
    print(f"workload: {args.requests} requests to {ENSEMBLE.name} at {args.rate:g}/s "
          f"(sent in {figures['sent_s']:.1f} s); RSS every {args.sample_s:g} s "
          f"({len(figures['series'])} samples, in the JSON)")
    print(f"{'worker':<12} {'pid':>8} {'start MB':>9} {'end MB':>8} {'growth MB':>10} "
          f"{'B/request':>10} {'peak MB':>8}")
    for r in figures["workers"]:
        print(f"{r['worker']:<12} {r['pid']:>8} {r['start_mb']:>9.1f} {r['end_mb']:>8.1f} "
              f"{r['growth_mb']:>+10.1f} {_fmt(r['growth_bytes_per_request'], '+.0f'):>10} "
              f"{r['peak_mb']:>8.1f}" + ("  restarted during the run" if r["restarted"] else ""))
    total = sum(r["end_mb"] for r in figures["workers"])
    print(f"all workers: {total:.0f} MB at the end; requests lost {figures['lost']}, "
          f"duplicated {figures['duplicated']}, partial {figures['partial']} "
          f"(of {args.requests})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap (H:P)")
    p.add_argument("--requests", type=int, default=20000, help="requests to send")
    p.add_argument("--rate", type=float, default=300.0, help="requests per second")
    p.add_argument("--sample-s", type=float, default=10.0,
                   help="seconds between RSS samples during the load")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the soak, print the table and optionally write the JSON."""
    args = parse_args(argv)
    with temporary_home():
        info = machine()
        figures = asyncio.run(soak(args, f"bench-{uuid.uuid4().hex[:8]}-soak"))
    info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print_report(info, args, figures)
    write_json(args.json, machine=info, workload={
        "requests": args.requests, "rate": args.rate, "topology": str(ENSEMBLE),
        "sample_s": args.sample_s}, **figures)


if __name__ == "__main__":
    main()
