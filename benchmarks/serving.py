"""What the serving options of the worker core give, each against a baseline measured in
the same run, on the same broker and the same model (a python step that costs
``--item-ms`` per request, batches of 8):

1. **Priority lanes.** ``--urgent`` high-priority requests are published behind a backlog
   of ``--records`` low-priority ones. Their latency (p50, max) with ``priorities: [high,
   normal, low]`` against the same topology without lanes (the baseline, where they
   queue behind the backlog), and how many backlog requests were answered between the
   urgent ones' publication and the last urgent answer (of how many left then).
2. **Deadlines.** The time an agent takes to get through a backlog of ``--records``
   requests whose deadline has passed (all dead-lettered as expired, no model call)
   against the same backlog without deadlines (all computed).
3. **Result cache.** The time to answer ``--records`` requests a second time (cache hits)
   against the first time (misses: model calls), with ``cache: {key: [n]}``.

Usage: ``python benchmarks/serving.py --bootstrap 127.0.0.1:9092 [--json PATH]``.
Every deployment and topic of the run is removed at the end. Ratios, not bare numbers,
are what carries over to another machine; the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from overhead import machine, temporary_home, write_json

from streamcompose import Client
from streamcompose.client import Result
from streamcompose.deploy import deploy, stop
from streamcompose.kafka.admin import delete_topics

STEPS = '''
import time

ITEM_S = {item_s}


def steady(batch):
    time.sleep(ITEM_S * len(batch))
    return [{{"y": p["n"] * 2}} for p in batch]
'''

TOPOLOGY = '''
name: {name}
{extra}
agents:
  work:
    inputs: [$input]
    model: {{runtime: python, entrypoint: "serving_steps:steady"}}
    batch: {{max_size: 8, max_wait_ms: 2}}
    {agent_extra}
'''


class Collector:
    """Every record of a deployment's output and dead-letter topics, by request id."""

    def __init__(self, client: Client, manifest: dict[str, Any]) -> None:
        self.client, self.manifest = client, manifest
        self.results: dict[str, Result] = {}
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        self.task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _read(self) -> None:
        topics = [self.manifest["output"], self.manifest["dlq"]]
        async for result in self.client.read(topics, from_beginning=True):
            self.results.setdefault(result.id, result)

    async def wait(self, ids: list[str], timeout_s: float = 300) -> float:
        """Seconds until every id has a record."""
        started = time.perf_counter()
        while not all(i in self.results for i in ids):
            if time.perf_counter() - started > timeout_s:
                missing = sum(i not in self.results for i in ids)
                raise RuntimeError(f"{missing} of {len(ids)} requests never answered")
            await asyncio.sleep(0.02)
        return time.perf_counter() - started


@contextlib.contextmanager
def deployed(workdir: Path, bootstrap: str, extra: str = "", agent_extra: str = ""
             ) -> Iterator[dict[str, Any]]:
    name = "bench-serving-" + uuid.uuid4().hex[:8]
    path = workdir / f"{name}.yaml"
    path.write_text(TOPOLOGY.format(name=name, extra=extra, agent_extra=agent_extra))
    manifest = deploy(path, bootstrap)
    try:
        yield manifest
    finally:
        stop(name)
        asyncio.run(delete_topics(bootstrap, manifest["topics"]))


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


async def urgent_behind_backlog(bootstrap: str, m: dict[str, Any], args: argparse.Namespace
                                ) -> dict[str, Any]:
    bulk, urgent = ids("bulk", args.records), ids("urgent", args.urgent)
    async with Client(bootstrap) as client, Collector(client, m) as seen:
        await client.publish(m["name"], [{"n": i} for i in range(args.records)], ids=bulk,
                             priority="low")
        while len(seen.results) < 20:  # the backlog is being served
            await asyncio.sleep(0.02)
        sent = time.time() * 1000
        await client.publish(m["name"], [{"n": i} for i in range(args.urgent)], ids=urgent,
                             priority="high")
        await seen.wait(urgent + bulk)
        latencies = [seen.results[i].latency_ms for i in urgent]
        last = max(seen.results[i].timestamp_ms for i in urgent)
        stamps = [seen.results[i].timestamp_ms for i in bulk]
    return {"urgent_p50_ms": statistics.median(latencies), "urgent_max_ms": max(latencies),
            "backlog_left_when_urgent_sent": sum(t >= sent for t in stamps),
            "backlog_answered_while_urgent_waited": sum(sent <= t <= last for t in stamps)}


async def drain(bootstrap: str, m: dict[str, Any], count: int, prefix: str,
                **options: Any) -> float:
    """Seconds from the end of publishing ``count`` requests to the last record."""
    wanted = ids(prefix, count)
    async with Client(bootstrap) as client, Collector(client, m) as seen:
        await client.publish(m["name"], [{"n": i} for i in range(count)], ids=wanted,
                             **options)
        return await seen.wait(wanted)


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    b = args.bootstrap
    figures: dict[str, Any] = {}
    with deployed(workdir, b, "priorities: [high, normal, low]") as m:
        lanes = asyncio.run(urgent_behind_backlog(b, m, args))
    with deployed(workdir, b) as m:
        baseline = asyncio.run(urgent_behind_backlog(b, m, args))
    figures["lanes"] = {"with_lanes": lanes, "without_lanes_baseline": baseline,
                        "urgent_p50_ratio": lanes["urgent_p50_ms"] / baseline["urgent_p50_ms"]}
    with deployed(workdir, b) as m:
        computed = asyncio.run(drain(b, m, args.records, "computed"))
        expired = asyncio.run(drain(b, m, args.records, "expired", deadline_ms=1))
    figures["deadlines"] = {"computed_s": computed, "expired_s": expired,
                            "ratio": expired / computed}
    with deployed(workdir, b, agent_extra="cache: {key: [n]}") as m:
        misses = asyncio.run(drain(b, m, args.records, "miss"))
        hits = asyncio.run(drain(b, m, args.records, "hit"))
    figures["cache"] = {"misses_s": misses, "hits_s": hits, "ratio": hits / misses}
    return figures


def report(figures: dict[str, Any]) -> None:
    lanes = figures["lanes"]
    w, wo = lanes["with_lanes"], lanes["without_lanes_baseline"]
    print(f"priority lanes: urgent p50 {w['urgent_p50_ms']:.0f} ms vs "
          f"{wo['urgent_p50_ms']:.0f} ms without lanes = {lanes['urgent_p50_ratio']:.3f}; "
          f"backlog answered while the urgent waited: "
          f"{w['backlog_answered_while_urgent_waited']} of {w['backlog_left_when_urgent_sent']} "
          f"left vs {wo['backlog_answered_while_urgent_waited']} of "
          f"{wo['backlog_left_when_urgent_sent']}")
    d = figures["deadlines"]
    print(f"deadlines: an expired backlog takes {d['expired_s']:.2f} s vs {d['computed_s']:.2f} s "
          f"computed = {d['ratio']:.3f}")
    c = figures["cache"]
    print(f"result cache: hits {c['hits_s']:.2f} s vs misses {c['misses_s']:.2f} s = "
          f"{c['ratio']:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("STREAMCOMPOSE_BOOTSTRAP",
                                                              "127.0.0.1:9092"))
    parser.add_argument("--records", type=int, default=2000, help="backlog size")
    parser.add_argument("--urgent", type=int, default=50, help="urgent requests")
    parser.add_argument("--item-ms", type=float, default=2.0, help="model cost per request")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with temporary_home() as workdir:
        (workdir / "serving_steps.py").write_text(STEPS.format(item_s=args.item_ms / 1000))
        info = machine()
        figures = measure(args, workdir)
        info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(f"machine: {info['nproc']} CPUs, load {info['loadavg_1m_at_start']} at start, "
          f"{info['loadavg_1m_at_end']} at end; {args.records} requests, "
          f"{args.item_ms} ms each", file=sys.stderr)
    report(figures)
    write_json(args.json, machine=info, records=args.records, urgent=args.urgent,
               item_ms=args.item_ms, **figures)


if __name__ == "__main__":
    main()
