"""What a rolling upgrade costs the requests flowing through it: the digits cascade
(``topologies/digits_cascade.yaml``: preprocess → cnn → postprocess) under a steady
stream while its CNN is upgraded to a retrained version, against the same stream
without an upgrade, in one run.

1. The CNN's second version is trained (``scripts/train_digits.py --only digits_cnn.pt
   --seed 1`` into the run's temporary folder), unless ``--candidate`` gives a file.
2. The cascade is deployed under a unique name (``--cnn-replicas`` replicas of the CNN)
   and warmed up with ``--rate`` requests.
3. *Steady*: ``--rate`` requests per second for ``--seconds``: the baseline.
4. *Swap*: the same rate while ``streamcompose upgrade NAME cnn --path CANDIDATE
   --version 2`` runs (the Python API in a thread), from ``--margin`` seconds before it
   to ``--margin`` seconds after it returned. Figures are taken over the requests that
   entered while it ran (the *swap window*: from the upgrade's start to its return) and
   over the whole phase.

Reported for each phase: the longest gap between two consecutive results (received
here, ``read_committed``), e2e latency p50 and p99 (received here − ``sc-entered``); the
swap's ratios to the steady phase; lost and duplicated requests; the versions that
answered (each result's ``sc-lineage``): how many results went back to the old version
within a partition, and how many requests sent after the upgrade returned were not
answered by the new version (both should be 0). The goal: no gap over 2 s, p99 at most
2x steady. Nothing passes or fails; the script reports. Usage::

    python benchmarks/upgrade.py --bootstrap 127.0.0.1:9092 [--rate 100] [--seconds 10]
        [--margin 3] [--cnn-replicas 1] [--json benchmarks/out/upgrade.json]
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
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from overhead import _fmt, _ratio, machine, temporary_home, write_json
from tally import Tally, send_steady

from streamcompose import Client
from streamcompose.deploy import deploy, stop
from streamcompose.deploy.upgrade import upgrade
from streamcompose.kafka.admin import delete_topics
from streamcompose.topology import load_topology

ROOT = Path(__file__).resolve().parent.parent
CASCADE = ROOT / "topologies" / "digits_cascade.yaml"
AGENT = "cnn"
NEW_VERSION = "2"
WARMUP = 200


def note(text: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def train_candidate(workdir: Path) -> Path:
    """The CNN retrained with another seed, in ``workdir``."""
    out = workdir / "v2"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "train_digits.py"), "--only",
                    "digits_cnn.pt", "--seed", "1", "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return out / "digits_cnn.pt"


def cascade_file(workdir: Path, replicas: int) -> Path:
    """The digits cascade with ``replicas`` CNN workers, in ``workdir``: its model path
    made absolute, its python modules found through the import path (this process's
    and, through ``PYTHONPATH``, the workers')."""
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(CASCADE.parent), os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, str(CASCADE.parent))
    data = yaml.safe_load(CASCADE.read_text())
    data["agents"][AGENT]["replicas"] = replicas
    data["agents"][AGENT]["model"]["path"] = str((CASCADE.parent / "models" /
                                                  "digits_cnn.pt").resolve())
    file = workdir / "digits_cascade.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    return file


def pixels() -> list[list[float]]:
    from sklearn.datasets import load_digits

    return load_digits().data.tolist()


def figures(tally: Tally, ids: list[str]) -> dict[str, Any]:
    """Gap and latency over ``ids``' results, and how many were lost or duplicated."""
    e2e = np.array([tally.arrived[i] - tally.entered[i] for i in ids if i in tally.arrived])
    lost, duplicated = tally.lost_duplicated(ids)
    p50, p99 = np.percentile(e2e, [50, 99]).tolist() if len(e2e) else (None, None)
    return {"requests": len(ids), "gap_ms": tally.longest_gap_ms(ids), "p50_ms": p50,
            "p99_ms": p99, "lost": lost, "duplicated": duplicated}


def version_of(tally: Tally, request_id: str) -> str | None:
    return next((e.get("version") for e in tally.lineage.get(request_id, ())
                 if e.get("agent") == AGENT), None)


def version_checks(tally: Tally, ids: list[str], old: str, done_ms: float) -> dict[str, Any]:
    """Results that went back to the old version within a partition (in the order they
    were read, which is offset order), and requests sent after the upgrade returned
    that the new version did not answer."""
    last: dict[int, str] = {}
    backwards = 0
    for request_id in tally.lineage:  # insertion order: as read
        version, partition = version_of(tally, request_id), tally.partition[request_id]
        backwards += last.get(partition) == NEW_VERSION and version == old
        last[partition] = version or ""
    late_old = sum(version_of(tally, i) != NEW_VERSION for i in ids
                   if tally.entered.get(i, 0) > done_ms)
    answered = defaultdict(int)
    for i in ids:
        answered[version_of(tally, i) or "none"] += 1
    return {"backwards": backwards, "old_after_upgrade": late_old, "answered": dict(answered)}


async def phase(client: Client, tally: Tally, name: str, prefix: str, rate: float,
                data: list[list[float]], seconds: float | None = None,
                until: asyncio.Event | None = None) -> list[str]:
    """Send at ``rate`` for ``seconds``, or until ``until`` is set; wait for the results."""
    numbers = itertools.count() if seconds is None else range(int(rate * seconds))
    wanted: Iterable[str] = (f"{prefix}-{i:07d}" for i in numbers)
    if until is not None:
        wanted = itertools.takewhile(lambda _: not until.is_set(), wanted)
    ids = await send_steady(client, name, wanted, lambda i: {"pixels": data[i % len(data)]},
                            rate)
    await tally.wait_for(ids)
    await tally.quiet()
    return ids


async def measure(args: argparse.Namespace, workdir: Path, candidate: Path) -> dict[str, Any]:
    name = f"bench-upgrade-{uuid.uuid4().hex[:8]}"
    file = cascade_file(workdir, args.cnn_replicas)
    topology = load_topology(file, name)
    data = pixels()
    result: dict[str, Any] = {}
    try:
        async with Client(args.bootstrap) as client:
            await asyncio.to_thread(deploy, file, args.bootstrap, name=name)
            note("deployed")
            tally = Tally(client, topology.output_topic)
            await tally.start()
            try:
                await phase(client, tally, name, "warmup", args.rate, data, WARMUP / args.rate)
                result["uptime_steady"] = uptime()
                steady = await phase(client, tally, name, "steady", args.rate, data,
                                     args.seconds)
                note("steady done")
                result["steady"] = figures(tally, steady)
                window: dict[str, float] = {}
                finished = asyncio.Event()

                async def swap() -> dict[str, Any]:
                    await asyncio.sleep(args.margin)
                    window["start"] = time.time() * 1000
                    summary = await asyncio.to_thread(upgrade, name, AGENT,
                                                      path=candidate, version=NEW_VERSION)
                    window["end"] = time.time() * 1000
                    await asyncio.sleep(args.margin)
                    finished.set()
                    return summary

                ids, summary = await asyncio.gather(
                    phase(client, tally, name, "swap", args.rate, data, until=finished),
                    swap())
                note("swap done")
                result["uptime_swap"] = uptime()
                during = [i for i in ids
                          if window["start"] <= tally.entered.get(i, 0) <= window["end"]]
                result["swap"] = {**figures(tally, during),
                                  "upgrade_s": (window["end"] - window["start"]) / 1000,
                                  "whole_phase": figures(tally, ids),
                                  **version_checks(tally, ids, summary["from_version"],
                                                   window["end"])}
            finally:
                await asyncio.to_thread(stop, name)
                await tally.stop()
    finally:
        await delete_topics(args.bootstrap, [*topology.topics(), topology.control_topic])
    s, w = result["steady"], result["swap"]
    result["ratios"] = {"gap": _ratio(w["gap_ms"], s["gap_ms"]),
                        "p99": _ratio(w["p99_ms"], s["p99_ms"])}
    return result


def print_report(r: dict[str, Any], args: argparse.Namespace) -> None:
    s, w = r["steady"], r["swap"]
    print(f"workload: digits cascade, {args.cnn_replicas} cnn replica(s), {args.rate:g} "
          f"requests/s; steady {args.seconds:g} s; swap phase: {args.margin:g} s, the "
          f"upgrade ({w['upgrade_s']:.1f} s), {args.margin:g} s")
    print(f"uptime (steady): {r['uptime_steady']}\nuptime (swap):   {r['uptime_swap']}")
    print(f"{'phase':<14}{'requests':>9}{'gap ms':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'lost':>6}{'dup':>5}")
    for label, f in (("steady", s), ("swap window", w), ("swap phase", w["whole_phase"])):
        print(f"{label:<14}{f['requests']:>9}{_fmt(f['gap_ms'], '.0f'):>9}"
              f"{_fmt(f['p50_ms'], '.1f'):>9}{_fmt(f['p99_ms'], '.1f'):>9}"
              f"{f['lost']:>6}{f['duplicated']:>5}")
    print(f"swap / steady: longest gap x{_fmt(r['ratios']['gap'], '.2f')}, p99 "
          f"x{_fmt(r['ratios']['p99'], '.2f')} (goal: gap under 2000 ms, p99 at most x2)")
    print(f"versions answering the swap phase: {w['answered']}; back to the old version "
          f"within a partition: {w['backwards']}; old version after the upgrade returned: "
          f"{w['old_after_upgrade']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap (H:P)")
    p.add_argument("--rate", type=float, default=100.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=10.0, help="the steady phase")
    p.add_argument("--margin", type=float, default=3.0,
                   help="seconds of the swap phase before the upgrade and after it")
    p.add_argument("--cnn-replicas", type=int, default=1, help="replicas of the CNN")
    p.add_argument("--candidate", type=Path, default=None,
                   help="the new CNN (default: trained with another seed)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with temporary_home() as tmp:
        info = machine()
        candidate = args.candidate or train_candidate(tmp)
        note(f"candidate: {candidate}")
        result = asyncio.run(measure(args, tmp, candidate.resolve()))
    print_report(result, args)
    write_json(args.json, machine=info, workload=vars(args) | {
        "candidate": str(candidate), "json": str(args.json)}, results=result)


if __name__ == "__main__":
    main()
