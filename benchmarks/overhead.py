"""What streamcompose's agent worker costs per hop, against a raw aiokafka relay.

Three variants move the same records from a fresh input topic to a fresh output topic,
one after the other in one run on the same broker:

(a) ``aiokafka relay``: a consumer group in this process that fetches with
    ``getmany(max_records=500)``, decodes and re-encodes each value with streamcompose's
    codec, sends each record, awaits the sends and commits: the least a Python relay does.
(b) ``streamcompose agent``: ``benchmarks/identity/topology.yaml`` (one python agent whose
    model returns ``[{} for _ in batch]``) deployed with :func:`streamcompose.deploy.deploy`.
(c) ``faust relay``: ``benchmarks/faust_relay.py``, a faust-streaming ``@app.agent`` that
    forwards event by event, run as a ``faust worker`` subprocess.

Each variant gets its own input and output topics (3 partitions, ``LogAppendTime``, so
every record carries the time the broker stored it) and the same input records:

1. *Backlog*: warm-up records, then ``--records`` timed records, all produced before the
   variant starts. Throughput is the number of timed records over the span between the
   first and the last of their outputs' broker timestamps.
2. *Latency probe*: once the backlog is through, ``--latency-records`` more records at a
   steady ``--latency-rate`` (well below every variant's capacity). Per-hop latency is an
   output's broker timestamp minus its input's (matched by key): p50 and p99, in ms.

It also reports the CPU time the relaying process spent per record while it drained the
timed backlog (from /proc, or ``time.process_time`` for the in-process relay): unlike
records/s this hardly depends on what else the machine runs.

Ratios and added latencies are relative to the relay of the same run. Nothing here passes
or fails; the script reports. Usage::

    python benchmarks/overhead.py --bootstrap 127.0.0.1:9092 [--records 20000]
        [--payload-bytes 1024] [--json benchmarks/out/overhead.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamcompose.codec import Trace, decode_payload, encode_payload
from streamcompose.codec.record import now_ms
from streamcompose.kafka.admin import delete_topics

HERE = Path(__file__).resolve().parent
IDENTITY_TOPOLOGY = HERE / "identity" / "topology.yaml"
FAUST_RELAY = HERE / "faust_relay.py"
PARTITIONS = 3
WARMUP_PER_PARTITION = 500  # >= the relay's fetch size: the first fetches hold no timed one
STALL_S = 45.0  # a variant whose output count does not move for this long has failed
POLL_S = 0.05
FAUST_STOP_S = 20.0
# the worker's client settings, which the relay copies so that only the code differs
PRODUCER_CONFIG: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 2,
                                   "max_batch_size": 1 << 20, "max_request_size": 16 << 20}
CONSUMER_CONFIG: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest",
                                   "max_partition_fetch_bytes": 16 << 20,
                                   "fetch_max_bytes": 64 << 20}

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


class BenchError(Exception):
    """A variant could not be measured; the message says why."""


@dataclass(frozen=True)
class Workload:
    """The input records, the same for every variant."""

    warmup: list[Record]
    timed: list[Record]
    probe: list[Record]
    payload_bytes: int
    latency_rate: float

    @property
    def backlog(self) -> list[Record]:
        return self.warmup + self.timed


@dataclass(frozen=True)
class Measurement:
    """What one variant achieved; ``error`` instead of numbers when it could not run."""

    variant: str
    throughput: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us: float | None = None
    wall_s: float | None = None
    error: str | None = None


def make_records(prefix: str, count: int, payload_bytes: int, seed: int) -> list[Record]:
    """``count`` msgpack records, each a map holding a float32 array of ~payload_bytes."""
    rng = np.random.default_rng(seed)
    size = max(1, payload_bytes // 4)
    records = []
    for i in range(count):
        key = f"{prefix}-{i:07d}"
        value = encode_payload({"x": rng.random(size, dtype=np.float32), "seq": i})
        records.append((key.encode(), value, Trace(request_id=key, entered_ms=now_ms()).headers()))
    return records


def make_workload(records: int, payload_bytes: int, latency_records: int,
                  latency_rate: float) -> Workload:
    """Warm-up, timed and probe records, each set with keys of its own."""
    return Workload(warmup=make_records("warmup", WARMUP_PER_PARTITION * PARTITIONS,
                                        payload_bytes, 1),
                    timed=make_records("timed", records, payload_bytes, 2),
                    probe=make_records("probe", latency_records, payload_bytes, 3),
                    payload_bytes=payload_bytes, latency_rate=latency_rate)


# --- Kafka helpers ------------------------------------------------------------------------

async def create_topics(bootstrap: str, names: tuple[str, ...]) -> None:
    """Fresh topics whose record timestamps are the broker's append times; returns once
    every partition has a leader (so that clients find them at once)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1, topic_configs={
            "message.timestamp.type": "LogAppendTime"}) for name in names])
        while not _have_leaders(await admin.describe_topics(list(names))):
            await asyncio.sleep(POLL_S)
    finally:
        await admin.close()


def _have_leaders(described: list[dict[str, Any]]) -> bool:
    """Whether every described topic has all its partitions, each with a leader."""
    return all(d["error_code"] == 0 and len(d["partitions"]) == PARTITIONS
               and all(p["leader"] >= 0 for p in d["partitions"]) for d in described)


async def produce(producer: AIOKafkaProducer, topic: str, records: list[Record],
                  rate: float | None = None) -> None:
    """Send records round-robin over the partitions, at ``rate`` per second if given
    (else as fast as possible), and wait until the broker stored them all."""
    started = time.perf_counter()
    deliveries = []
    for i, (key, value, headers) in enumerate(records):
        if rate is not None:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        deliveries.append(await producer.send(topic, value, key=key, headers=headers,
                                              partition=i % PARTITIONS))
    await asyncio.gather(*deliveries)


async def stored_count(consumer: AIOKafkaConsumer, topic: str) -> int:
    """How many records a topic holds (its end offsets summed)."""
    ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    return sum(ends.values())


async def broker_times(bootstrap: str, topic: str) -> dict[bytes, int]:
    """The broker timestamp of every key in a topic (the earliest, if it is there twice)."""
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **CONSUMER_CONFIG)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        times: dict[bytes, int] = {}
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    times[r.key] = min(r.timestamp, times.get(r.key, r.timestamp))
        return times
    finally:
        await consumer.stop()


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the variants ------------------------------------------------------------------------

class Variant(Protocol):
    """Something that relays ``input`` to ``output`` once started."""

    label: str
    input: str
    output: str
    topics: tuple[str, ...]

    async def start(self, bootstrap: str) -> None: ...

    def check(self) -> None:
        """Raise :class:`BenchError` if the variant died."""

    def cpu_seconds(self) -> float:
        """CPU time used so far by the process(es) that relay."""

    async def stop(self) -> None: ...


class AiokafkaRelay:
    """(a) The baseline: a raw aiokafka batch relay in this process."""

    label = "aiokafka relay"

    def __init__(self, run_id: str) -> None:
        base = f"bench-{run_id}-relay"
        self.group, self.input, self.output = base, f"{base}.in", f"{base}.out"
        self.topics = (self.input, self.output)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_CONFIG)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(self.input, bootstrap_servers=bootstrap,
                                         group_id=self.group, **CONSUMER_CONFIG)
        await self.consumer.start()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self.consumer is not None and self.producer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=100, max_records=500)
            deliveries = [await self._relay(record)
                          for records in batches.values() for record in records]
            if deliveries:
                await asyncio.gather(*deliveries)
                await self.consumer.commit()

    async def _relay(self, record: ConsumerRecord) -> asyncio.Future:
        assert self.producer is not None
        value = encode_payload(decode_payload(record.value))
        return await self.producer.send(self.output, value, key=record.key,
                                        headers=list(record.headers))

    def check(self) -> None:
        if self.task is not None and self.task.done() and not self.task.cancelled():
            raise BenchError(f"the relay failed: {self.task.exception()!r}")

    def cpu_seconds(self) -> float:
        return time.process_time()  # this process: the relay, plus the benchmark's polling

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        for client in (self.consumer, self.producer):
            if client is not None:
                await client.stop()


class IdentityAgent:
    """(b) The identity python agent, deployed as a user deploys a topology."""

    label = "streamcompose agent"

    def __init__(self, run_id: str) -> None:
        self.name = f"bench-{run_id}-agent"
        self.input, self.output = f"{self.name}.in", f"{self.name}.out"
        self.topics = (self.input, self.output, f"{self.name}.dlq")
        self.deployed = False
        self.pids: list[int] = []

    async def start(self, bootstrap: str) -> None:
        # imported here: main() has pointed STREAMCOMPOSE_HOME at a temporary folder
        from streamcompose.deploy import deploy, status

        # deploy() waits until the worker joined its group; the topics exist already, with
        # LogAppendTime, and deploy leaves existing topics as they are
        await asyncio.to_thread(deploy, IDENTITY_TOPOLOGY, bootstrap, name=self.name,
                                timeout=60.0)
        self.deployed = True
        (deployment,) = await asyncio.to_thread(status, self.name, False)
        self.pids = [w["pid"] for a in deployment["agents"] for w in a["workers"]]

    def check(self) -> None:
        """The supervisor restarts a worker that dies; a stall shows it."""

    def cpu_seconds(self) -> float:
        # the worker (all its threads); not the supervisor, which only polls its children
        return sum(process_cpu_seconds(pid) for pid in self.pids)

    async def stop(self) -> None:
        from streamcompose.deploy import stop

        if self.deployed:
            await asyncio.to_thread(stop, self.name)


class FaustRelay:
    """(c) A faust-streaming per-event relay, run as a ``faust worker`` subprocess."""

    label = "faust relay"

    def __init__(self, run_id: str, workdir: Path) -> None:
        self.app_id = f"bench-{run_id}-faust"
        self.input, self.output = f"{self.app_id}.in", f"{self.app_id}.out"
        self.topics = (self.input, self.output)
        self.workdir = workdir
        self.log = workdir / f"{self.app_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, bootstrap: str) -> None:
        env = {**os.environ, "BENCH_BOOTSTRAP": bootstrap, "BENCH_APP_ID": self.app_id,
               "BENCH_INPUT": self.input, "BENCH_OUTPUT": self.output}
        with open(self.log, "wb") as log:  # faust keeps its data folder in its cwd
            self.proc = subprocess.Popen(
                [sys.executable, str(FAUST_RELAY), "worker", "-l", "warn"], env=env,
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)

    def _log_tail(self, lines: int = 12) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"the faust worker exited with code {self.proc.returncode}:\n"
                             f"{self._log_tail()}")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, FAUST_STOP_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)


# --- measuring ---------------------------------------------------------------------------

async def wait_for_outputs(variant: Variant, counter: AIOKafkaConsumer, target: int) -> int:
    """Wait until the output topic holds ``target`` records; returns how many it holds."""
    seen, moved = -1, time.perf_counter()
    while (count := await stored_count(counter, variant.output)) < target:
        variant.check()
        if count != seen:
            seen, moved = count, time.perf_counter()
        elif time.perf_counter() - moved > STALL_S:
            raise BenchError(f"{variant.label}: {count} of {target} outputs, none more "
                             f"for {STALL_S:.0f}s")
        await asyncio.sleep(POLL_S)
    return count


async def drive(variant: Variant, bootstrap: str, workload: Workload) -> float:
    """Produce the backlog, start the variant, let it drain, then send the latency probe.
    Returns the CPU time the variant spent per record (in µs) while draining the timed
    backlog (from the first poll that finds the warm-up through to the last poll)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                                max_request_size=16 << 20)
    counter = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await producer.start()
    await counter.start()
    try:
        for topic in (variant.input, variant.output):  # retries quietly until each partition
            await stored_count(counter, topic)         # has its leader
        await produce(producer, variant.input, workload.backlog)
        await variant.start(bootstrap)
        try:
            first = await wait_for_outputs(variant, counter, len(workload.warmup))
            cpu = variant.cpu_seconds()
            last = await wait_for_outputs(variant, counter, len(workload.backlog))
            cpu_us = (variant.cpu_seconds() - cpu) / max(last - first, 1) * 1e6
            await produce(producer, variant.input, workload.probe, workload.latency_rate)
            await wait_for_outputs(variant, counter,
                                   len(workload.backlog) + len(workload.probe))
        finally:
            await variant.stop()
    finally:
        await producer.stop()
        await counter.stop()
    return cpu_us


def summarize(variant: Variant, workload: Workload, inputs: dict[bytes, int],
              outputs: dict[bytes, int], cpu_us: float, wall_s: float) -> Measurement:
    """Throughput over the timed backlog and latency percentiles over the probe."""
    missing = [k for k, _, _ in workload.timed + workload.probe if k not in outputs]
    if missing:
        raise BenchError(f"{len(missing)} records have no output, e.g. {missing[0]!r}")
    done = np.array([outputs[k] for k, _, _ in workload.timed])
    span_s = max(int(done.max() - done.min()), 1) / 1000.0
    latencies = np.array([outputs[k] - inputs[k] for k, _, _ in workload.probe])
    return Measurement(variant.label, throughput=(len(done) - 1) / span_s,
                       p50_ms=float(np.percentile(latencies, 50)),
                       p99_ms=float(np.percentile(latencies, 99)), cpu_us=cpu_us,
                       wall_s=wall_s)


async def measure(variant: Variant, bootstrap: str, workload: Workload) -> Measurement:
    """Run one variant on fresh topics; an error becomes the measurement's ``error``."""
    started = time.perf_counter()
    try:
        await create_topics(bootstrap, variant.topics)
        try:
            cpu_us = await drive(variant, bootstrap, workload)
            inputs = await broker_times(bootstrap, variant.input)
            outputs = await broker_times(bootstrap, variant.output)
        finally:
            await delete_topics(bootstrap, list(variant.topics))
        return summarize(variant, workload, inputs, outputs, cpu_us,
                         time.perf_counter() - started)
    except Exception as exc:  # reported, not raised: the other variants still run
        return Measurement(variant.label, error=f"{type(exc).__name__}: {exc}",
                           wall_s=time.perf_counter() - started)


# --- reporting ---------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """Where the figures come from."""
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
            **{pkg: installed_version(pkg)
               for pkg in ("aiokafka", "faust-streaming", "msgpack", "numpy")}}


def installed_version(package: str) -> str:
    """The version of an installed distribution, or ``not installed`` (a machine that
    runs from a source tree with only what the measured path imports)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def compare(results: list[Measurement]) -> list[dict[str, Any]]:
    """Each measurement with its throughput ratio and added latency against the relay
    (the first); None where either side has no figure."""
    base = results[0]
    return [{**asdict(m), "throughput_ratio": _ratio(m.throughput, base.throughput),
             "added_p50_ms": _minus(m.p50_ms, base.p50_ms),
             "added_p99_ms": _minus(m.p99_ms, base.p99_ms),
             "cpu_ratio": _ratio(m.cpu_us, base.cpu_us)} for m in results]


@contextlib.contextmanager
def temporary_home() -> Iterator[Path]:
    """A temporary folder whose ``home`` is ``STREAMCOMPOSE_HOME``: the deployments'
    files of a run stay there (set before ``streamcompose.deploy`` reads it)."""
    with tempfile.TemporaryDirectory(prefix="sc-bench-") as tmp:
        os.environ["STREAMCOMPOSE_HOME"] = str(Path(tmp) / "home")
        yield Path(tmp)


def write_json(path: Path | None, **figures: Any) -> None:
    """Write a run's figures, with its command line, where ``--json`` said (if it did)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"command": sys.argv, **figures}, indent=1))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(info: dict[str, Any], workload: Workload, rows: list[dict[str, Any]]) -> None:
    """The machine, the workload and one table row per variant, on stdout."""
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
          f"{info['platform']}; load {info['loadavg_1m_at_start']} (1 min) at start")
    print(f"workload: {len(workload.timed)} timed records after {len(workload.warmup)} "
          f"warm-up, float32 arrays of {workload.payload_bytes} B, {PARTITIONS} partitions; "
          f"latency probe {len(workload.probe)} records at {workload.latency_rate:g}/s")
    print(f"{'variant':<20} {'records/s':>10} {'× relay':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'+p50 ms':>8} {'+p99 ms':>8} {'CPU µs/rec':>10} {'CPU ×':>6} {'wall s':>7}")
    for r in rows:
        if r["error"] is not None:
            print(f"{r['variant']:<20} not measured: {r['error']}")
            continue
        print(f"{r['variant']:<20} {_fmt(r['throughput'], '.0f'):>10} "
              f"{_fmt(r['throughput_ratio'], '.2f'):>8} {_fmt(r['p50_ms'], '.1f'):>7} "
              f"{_fmt(r['p99_ms'], '.1f'):>7} {_fmt(r['added_p50_ms'], '+.1f'):>8} "
              f"{_fmt(r['added_p99_ms'], '+.1f'):>8} {_fmt(r['cpu_us'], '.0f'):>10} "
              f"{_fmt(r['cpu_ratio'], '.2f'):>6} {_fmt(r['wall_s'], '.1f'):>7}")


async def run(args: argparse.Namespace, workdir: Path) -> tuple[Workload, list[Measurement]]:
    """Measure the three variants one after the other, the relay first."""
    workload = make_workload(args.records, args.payload_bytes, args.latency_records,
                             args.latency_rate)
    run_id = uuid.uuid4().hex[:8]
    variants: list[Variant] = [AiokafkaRelay(run_id), IdentityAgent(run_id),
                               FaustRelay(run_id, workdir)]
    results = []
    for variant in variants:
        print(f"measuring the {variant.label} ...", file=sys.stderr, flush=True)
        results.append(await measure(variant, args.bootstrap, workload))
    return workload, results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap (H:P)")
    p.add_argument("--records", type=int, default=20000, help="timed backlog records")
    p.add_argument("--payload-bytes", type=int, default=1024,
                   help="size of each record's float32 array")
    p.add_argument("--latency-records", type=int, default=500,
                   help="records of the latency probe")
    p.add_argument("--latency-rate", type=float, default=250.0,
                   help="records per second of the latency probe")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table and optionally write the JSON."""
    args = parse_args(argv)
    with temporary_home() as tmp:
        info = machine()
        workload, results = asyncio.run(run(args, tmp))
    rows = compare(results)
    print_report(info, workload, rows)
    write_json(args.json, machine=info, workload={
        "records": len(workload.timed), "warmup": len(workload.warmup),
        "payload_bytes": workload.payload_bytes, "partitions": PARTITIONS,
        "latency_records": len(workload.probe), "latency_rate": workload.latency_rate},
        results=rows)


if __name__ == "__main__":
    main()
