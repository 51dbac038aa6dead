"""What an ensemble costs over Kafka, and co-located, against its slowest member deployed
alone.

Deployments, one after the other in one run on the same broker, each a supervisor
and one worker process per agent (or co-located group) as
:func:`streamcompose.deploy.deploy` starts them:

(1) ``<member> alone``: the ``features`` step of ``topologies/digits_ensemble.yaml`` and its
    slowest member, nothing else (2 workers). The topology is derived from that file at run
    time, with the joiner's ``drop`` given to the member so that both variants write the
    same output fields.
(2) ``ensemble``: ``topologies/digits_ensemble.yaml`` as is (6 workers): ``features``, fanned
    out to four members (logreg, forest: onnx; mlp, cnn: torch), joined by ``vote`` (soft
    vote, exactly once: one Kafka transaction per poll).
(3) ``co-located``: ``topologies/digits_ensemble_colocated.yaml``, the same six agents in one
    worker process (``colocate:``): records pass between them in memory, the four members
    run at once on each batch, and each batch's results and offsets go in one transaction.
(4) ``co-located x2``: the same group in as many worker processes as the member alone has.
(5) ``ensemble vote x3``, only on request (``--variants``): (2) with its joiner in one
    worker per partition (3 workers), for machines with a core to spare for each.

The slowest member is found first, in this process: each member's step (the code a worker
runs on a batch, model call included) is timed on the held-out digits in batches of the
member's ``max_size``, best of a few interleaved rounds. Every member reads the same
``features`` output and writes the same kind of output, so the per-record cost of the
worker around the model is the same for all of them; the member whose step costs most
per record is the one with the least throughput alone. Timing the steps takes a few
seconds; deploying each member alone would take minutes and be noisier than the
differences on a loaded machine.

Each deployment gets fresh topics (the input, output and every topic between agents with
``LogAppendTime``, so that every record carries the time the broker stored it) and the
same requests: held-out digits from ``topologies/models/digits_test.npz``
(``{"pixels": float32[64]}``, repeated as needed, request ids as keys):

1. *Warm-up*: once every worker has joined its group, warm-up requests go through the
   whole pipeline.
2. *Backlog*: the workers are frozen (SIGSTOP) while the ``--records`` timed requests are
   produced (a fraction of a second, far below the consumers' session timeout), then
   resumed (SIGCONT), so that every deployment starts warm on the same full backlog.
   Throughput is the number of timed requests over the span between the first and the
   last broker timestamp of their outputs. The backlog is drained once every request has
   an output and every agent has consumed all its input (a joiner that times out sends a
   partial result, counted and reported, before its slow member is through). CPU per
   record is the CPU time of the worker processes (from /proc, all threads; not the
   supervisor's) from the freeze until then, divided by the timed requests, in total and
   by agent (and the broker's, given ``--broker-pid``); the workers' metrics give each
   agent's records per model call and time in model calls.
3. *Latency probe*: ``--latency-records`` requests at a steady ``--latency-rate``.
   End-to-end latency is an output's broker timestamp minus its request's (p50, p99), and
   each agent's hop is its output's broker timestamp minus its latest input's. Outputs are
   read as streamcompose clients read them (``read_committed``: the joiner's results are
   readable once its transaction commits), and the time this process received each one
   gives the latency until a result was readable (meaningful when the broker runs on this
   machine, whose clock both times then come from).

``--omp-threads N`` sets ``OMP_NUM_THREADS`` for the member timing and the workers, which
is how torch's intra-op threads are capped (streamcompose does not set them; unset, each
torch worker uses one per CPU).

Ratios and added latencies are relative to the member alone, in the same run; the
machine's ``uptime`` before and after is printed with them (``--variants`` leaves some
deployments out, the member alone always runs). ``--rounds N`` measures the member alone
and the variants N times, round after round, and adds each ratio's median and range: on a
shared machine the same code's ratio moves by a fifth from one minute to the next.
Nothing here passes or fails; the script reports. Usage::

    python benchmarks/ensemble.py --bootstrap 127.0.0.1:9092 [--records 30000]
        [--omp-threads 1] [--broker-pid PID] [--variants ensemble co-located] [--rounds 3]
        [--json benchmarks/out/ensemble.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from overhead import (
    CONSUMER_CONFIG,
    PARTITIONS,
    POLL_S,
    STALL_S,
    BenchError,
    Measurement,
    Record,
    Workload,
    _fmt,
    _minus,
    broker_times,
    compare,
    create_topics,
    installed_version,
    machine,
    process_cpu_seconds,
    produce,
    stored_count,
    summarize,
    temporary_home,
    write_json,
)
from prometheus_client.parser import text_string_to_metric_families

from streamcompose.codec import Trace, decode_payload, encode_payload
from streamcompose.codec.record import now_ms
from streamcompose.kafka.admin import delete_topics
from streamcompose.kinds import build_step
from streamcompose.runtimes import RecordError
from streamcompose.topology import Topology, load_topology

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "topologies"
ENSEMBLE = TOPOLOGIES / "digits_ensemble.yaml"
COLOCATED = TOPOLOGIES / "digits_ensemble_colocated.yaml"
#: the deployments measured against the slowest member alone: label -> (topology file,
#: replicas of every agent, or of the agents named, None to keep the file's)
VARIANTS: dict[str, tuple[Path, int | dict[str, int] | None]] = {
    "ensemble": (ENSEMBLE, None), "co-located": (COLOCATED, None),
    "co-located x2": (COLOCATED, 2), "ensemble vote x3": (ENSEMBLE, {"vote": 3})}
#: measured unless --variants says otherwise
DEFAULT_VARIANTS = ["ensemble", "co-located", "co-located x2"]
DIGITS = TOPOLOGIES / "models" / "digits_test.npz"
WARMUP_RECORDS = 600
TIMING_ROUNDS = 5
DEPLOY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Result:
    """One deployment's measurement, with its number of worker processes, how many of its
    outputs were partial, the broker's CPU µs per record, what each agent did
    (:func:`per_agent`, :func:`hop_latencies`) and the latency until a result was readable
    by a client."""

    measurement: Measurement
    workers: int = 0
    partial: int = 0
    broker_cpu_us: float | None = None
    agents: dict[str, Any] | None = None
    readable_p50_ms: float | None = None
    readable_p99_ms: float | None = None


# --- the workload and the members -------------------------------------------------------

def digit_records(prefix: str, count: int, pixels: np.ndarray) -> list[Record]:
    """``count`` requests ``{"pixels": float32[64]}``, cycling through ``pixels``."""
    records = []
    for i in range(count):
        key = f"{prefix}-{i:07d}"
        value = encode_payload({"pixels": pixels[i % len(pixels)]})
        records.append((key.encode(), value, Trace(request_id=key, entered_ms=now_ms()).headers()))
    return records


def held_out_digits() -> np.ndarray:
    """The pixels of the digits the models were not trained on, float32 [N,64] (0..16)."""
    return np.load(DIGITS)["X"].astype(np.float32)


def make_workload(records: int, latency_records: int, latency_rate: float) -> Workload:
    """Warm-up, timed and probe requests, each set with keys of its own."""
    pixels = held_out_digits()
    return Workload(warmup=digit_records("warmup", WARMUP_RECORDS, pixels),
                    timed=digit_records("timed", records, pixels),
                    probe=digit_records("probe", latency_records, pixels),
                    payload_bytes=pixels[0].nbytes, latency_rate=latency_rate)


def members_of(ensemble: Topology) -> tuple[str, str, tuple[str, ...]]:
    """The ensemble's joiner, the step that feeds its members, and the members."""
    (joiner,) = [a for a in ensemble.agents if a.join is not None]
    (feeder,) = {source for member in joiner.inputs
                 for source in ensemble.agent(member).inputs}
    return joiner.name, feeder, joiner.inputs


def time_members(ensemble: Topology) -> dict[str, float]:
    """µs per record of each member's step on the held-out digits, in batches of the
    member's ``max_size``: the best of :data:`TIMING_ROUNDS` interleaved rounds."""
    _, feeder, members = members_of(ensemble)
    requests = [(str(i), {"pixels": p}) for i, p in enumerate(held_out_digits())]
    payloads = []
    for (rid, payload), outcome in zip(requests, build_step(ensemble, feeder)(requests),
                                       strict=True):
        if isinstance(outcome, RecordError):
            raise BenchError(f"{feeder} rejected a held-out digit: {outcome}")
        payloads.append((rid, {**payload, **outcome[0].fields}))
    steps = {m: build_step(ensemble, m) for m in members}
    for step in steps.values():
        step.warmup()
    best = dict.fromkeys(members, float("inf"))
    for _ in range(TIMING_ROUNDS):
        for member, step in steps.items():
            size = ensemble.agent(member).batch.max_size
            started = time.perf_counter()
            for i in range(0, len(payloads), size):
                step(payloads[i:i + size])
            best[member] = min(best[member],
                               (time.perf_counter() - started) / len(payloads) * 1e6)
    return best


def _link_folders(workdir: Path) -> None:
    """Link the folders of ``topologies/`` (python steps, models) into ``workdir``, where
    the relative paths of a derived topology look for them."""
    for folder in TOPOLOGIES.iterdir():
        if folder.is_dir() and not (workdir / folder.name).exists():
            (workdir / folder.name).symlink_to(folder, target_is_directory=True)


def single_member_topology(member: str, name: str, workdir: Path) -> Path:
    """Write a topology of the ensemble's feeding step and ``member`` (given the joiner's
    ``drop``) to ``workdir``, beside links to the folders of ``topologies/`` (python steps,
    models), which its relative paths name. Returns the file."""
    raw = yaml.safe_load(ENSEMBLE.read_text())
    joiner, feeder, _ = members_of(load_topology(ENSEMBLE))
    agents = raw["agents"]
    spec = {**agents[member], **({"drop": agents[joiner]["drop"]}
                                 if "drop" in agents[joiner] else {})}
    derived = {**raw, "name": name, "agents": {feeder: agents[feeder], member: spec}}
    _link_folders(workdir)
    file = workdir / f"{name}.yaml"
    file.write_text(yaml.safe_dump(derived, sort_keys=False))
    return file


def replicated_topology(file: Path, replicas: int | dict[str, int] | None,
                        workdir: Path) -> Path:
    """``file``, or a copy of it in ``workdir`` whose every agent has ``replicas``
    workers (a co-located group as many as the member alone has processes), or whose
    agents named in ``replicas`` have that many (a joiner as many as its partitions)."""
    if replicas is None:
        return file
    raw = yaml.safe_load(file.read_text())
    if isinstance(replicas, int):
        each, suffix = dict.fromkeys(raw["agents"], replicas), f"x{replicas}"
    else:
        each, suffix = replicas, "-".join(f"{a}x{n}" for a, n in replicas.items())
    for agent, n in each.items():
        raw["agents"][agent]["replicas"] = n
    _link_folders(workdir)
    derived = workdir / f"{file.stem}-{suffix}.yaml"
    derived.write_text(yaml.safe_dump(raw, sort_keys=False))
    return derived


# --- a deployment under measurement -----------------------------------------------------

async def wait_until(read: Callable[[], Awaitable[int]], done: Callable[[int], bool],
                     what: str, poll_s: float = POLL_S) -> None:
    """Poll ``read()`` until ``done`` holds for its value; raise :class:`BenchError` once the
    value has not changed for STALL_S."""
    last, moved = -1, time.perf_counter()
    while not done(value := await read()):
        if value != last:
            last, moved = value, time.perf_counter()
        elif time.perf_counter() - moved > STALL_S:
            raise BenchError(f"{what}: stuck at {value} for {STALL_S:.0f}s")
        await asyncio.sleep(poll_s)


class OutputCollector:
    """Reads a topic from its beginning as it is written, ``read_committed`` like every
    streamcompose consumer: the broker timestamp of each key's first record, when this
    process received it (ms since the epoch), and the keys of partial results (a joiner
    that timed out before every branch answered lists the ``missing`` ones)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap,
                                         isolation_level="read_committed", **CONSUMER_CONFIG)
        self.partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.times: dict[bytes, int] = {}
        self.received: dict[bytes, float] = {}
        self.partial: set[bytes] = set()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        # retries quietly until every partition has its leader; the fetcher, which starts
        # on assign(), would log an error for each try
        await stored_count(self.consumer, self.partitions[0].topic)
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            received = time.time() * 1000
            for records in batches.values():
                for r in records:
                    if r.key not in self.times:
                        self.times[r.key] = r.timestamp
                        self.received[r.key] = received
                        # decoded only where it may be partial: reading costs CPU that
                        # the workers being measured share
                        if b"missing" in r.value and "missing" in decode_payload(r.value):
                            self.partial.add(r.key)

    async def count(self) -> int:
        """How many keys have an output so far."""
        if self.task is not None and self.task.done():
            raise BenchError(f"reading the outputs failed: {self.task.exception()!r}")
        return len(self.times)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


@dataclass(frozen=True)
class ModelCalls:
    """Model calls made, the records in them and the seconds they took."""

    calls: float = 0.0
    records: float = 0.0
    seconds: float = 0.0

    @classmethod
    def total(cls, parts: Iterable[ModelCalls]) -> ModelCalls:
        """The sum of several workers' counts."""
        items = list(parts)
        return cls(sum(p.calls for p in items), sum(p.records for p in items),
                   sum(p.seconds for p in items))


def model_calls(port: int, agent: str) -> ModelCalls:
    """A worker's model calls, from its Prometheus metrics (served on this machine); a
    co-located group's worker serves its members' series too: only ``agent``'s count."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {s.name: s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.labels.get("agent") == agent}
    return ModelCalls(samples.get("streamcompose_batch_size_count", 0.0),
                      samples.get("streamcompose_batch_size_sum", 0.0),
                      samples.get("streamcompose_inference_duration_seconds_sum", 0.0))


class TopologyDeployment:
    """A topology deployed under a unique name, as a user deploys it: a supervisor and
    one worker process per agent (an :class:`overhead.Variant`)."""

    def __init__(self, label: str, file: Path, name: str) -> None:
        self.label, self.file = label, file
        self.topology = load_topology(file, name)
        self.input, self.output = self.topology.input_topic, self.topology.output_topic
        self.topics = (*self.topology.topics(), *self.topology.changelog_topics(),
                       self.topology.control_topic)
        self.workers: dict[str, list[tuple[int, int]]] = {}  # agent: [(pid, metrics port)]
        self.deployed = False

    async def start(self, bootstrap: str) -> None:
        # imported here: main() has pointed STREAMCOMPOSE_HOME at a temporary folder
        from streamcompose.deploy import deploy

        # deploy() returns once every worker has joined its group; it leaves the topics
        # created beforehand (with LogAppendTime) as they are
        await asyncio.to_thread(deploy, self.file, bootstrap, name=self.topology.name,
                                timeout=DEPLOY_TIMEOUT_S)
        self.deployed = True
        self.workers = await asyncio.to_thread(self.worker_processes)

    def worker_processes(self) -> dict[str, list[tuple[int, int]]]:
        """Each agent's worker processes (pid, metrics port), as the status has them."""
        from streamcompose.deploy import status

        (deployment,) = status(self.topology.name, False)
        return {a["name"]: [(w["pid"], w["metrics_port"]) for w in a["workers"]]
                for a in deployment["agents"]}

    def check(self) -> None:
        """Raise :class:`BenchError` if the supervisor restarted a worker."""
        if self.worker_processes() != self.workers:
            raise BenchError(f"{self.label}: a worker was restarted during the run")

    def lag(self) -> int:
        """The records the agents have yet to consume (or commit), all together."""
        from streamcompose.deploy import status

        (deployment,) = status(self.topology.name, True)
        return sum(a["lag"] for a in deployment["agents"])

    def cpu_by_agent(self) -> dict[str, float]:
        """The CPU time (user + system, all threads) each agent's workers used so far; not
        the supervisor's, which only polls its children."""
        return {agent: sum(process_cpu_seconds(pid) for pid, _ in workers)
                for agent, workers in self.workers.items()}

    def cpu_seconds(self) -> float:
        """All the workers' CPU time so far (what :class:`overhead.Variant` asks for)."""
        return sum(self.cpu_by_agent().values())

    def model_calls(self) -> dict[str, ModelCalls]:
        """What each agent's workers report in their metrics: model calls so far, the
        records in them and the seconds they took (none for a joiner); for a co-located
        group, the group's batches and step time, then each member's calls."""
        return {agent: ModelCalls.total(model_calls(port, agent) for _, port in workers)
                for unit, workers in self.workers.items()
                for agent in (unit, *self.topology.agent(unit).members)}

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Stop every worker process (SIGSTOP) for the duration, then let them go on."""
        pids = [pid for workers in self.workers.values() for pid, _ in workers]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    async def stop(self) -> None:
        from streamcompose.deploy import stop

        if self.deployed:
            await asyncio.to_thread(stop, self.topology.name)


def per_agent(records: int, cpu: tuple[dict[str, float], dict[str, float]],
              calls: tuple[dict[str, ModelCalls], dict[str, ModelCalls]]) -> dict[str, Any]:
    """Each agent's CPU µs per record, records per model call and µs per record in model
    calls (thread hand-off included), between two snapshots of each."""
    stats = {}
    for agent in calls[0]:  # a co-located group's members have no processes of their own
        before, after = calls[0][agent], calls[1][agent]
        made = after.calls - before.calls
        stats[agent] = {
            "cpu_us": (cpu[1][agent] - cpu[0][agent]) / records * 1e6 if agent in cpu[0]
            else None,
            "batch": (after.records - before.records) / made if made else None,
            "model_us": (after.seconds - before.seconds) / records * 1e6 if made else None}
    return stats


async def drive(variant: TopologyDeployment, bootstrap: str, workload: Workload,
                broker_pid: int | None) -> tuple[OutputCollector, dict[str, Any], float | None]:
    """Deploy, warm up, drain the backlog produced while the workers were frozen, send the
    latency probe and stop. Returns the outputs, what each agent did per timed record
    (:func:`per_agent`) and the broker's CPU µs per timed record (if its pid is given)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                                max_request_size=16 << 20)
    collector = OutputCollector(bootstrap, variant.output)

    async def outputs(target: int) -> None:
        await wait_until(collector.count, lambda n: n >= target,
                         f"{variant.label}, outputs (of {target})")

    async def drained() -> None:  # a joiner that timed out leaves work behind its outputs
        await wait_until(lambda: asyncio.to_thread(variant.lag), lambda n: n == 0,
                         f"{variant.label}, records not consumed", poll_s=0.5)

    def broker_cpu() -> float:
        return process_cpu_seconds(broker_pid) if broker_pid is not None else 0.0

    await producer.start()
    await collector.start()
    try:
        await variant.start(bootstrap)
        try:
            await produce(producer, variant.input, workload.warmup)
            await outputs(len(workload.warmup))
            await drained()
            calls_before = await asyncio.to_thread(variant.model_calls)  # not while frozen
            with variant.frozen():
                await produce(producer, variant.input, workload.timed)
                cpu_before, broker_before = variant.cpu_by_agent(), broker_cpu()
            await outputs(len(workload.backlog))
            await drained()
            cpu_after, broker_after = variant.cpu_by_agent(), broker_cpu()
            calls_after = await asyncio.to_thread(variant.model_calls)
            await produce(producer, variant.input, workload.probe, workload.latency_rate)
            await outputs(len(workload.backlog) + len(workload.probe))
            await drained()  # every hop of every probe request is then in its topic
            await asyncio.to_thread(variant.check)
        finally:
            await variant.stop()
    finally:
        await producer.stop()
        await collector.stop()
    agents = per_agent(len(workload.timed), (cpu_before, cpu_after),
                       (calls_before, calls_after))
    broker_us = ((broker_after - broker_before) / len(workload.timed) * 1e6
                 if broker_pid is not None else None)
    return collector, agents, broker_us


def hop_latencies(topology: Topology, times: dict[str, dict[bytes, int]],
                  keys: list[bytes]) -> dict[str, dict[str, float]]:
    """Each agent's (or co-located group's) share of the latency of ``keys``: the broker
    timestamp of its output minus the latest of its inputs' (p50 and p99, ms)."""
    hops = {}
    for agent in topology.units():
        out = times[topology.topic_of(agent)]
        sources = [times[topic] for topic in topology.input_topics(agent)]
        latencies = [out[k] - max(source[k] for source in sources) for k in keys]
        hops[agent] = {"hop_p50_ms": float(np.percentile(latencies, 50)),
                       "hop_p99_ms": float(np.percentile(latencies, 99))}
    return hops


async def measure(variant: TopologyDeployment, bootstrap: str, workload: Workload,
                  broker_pid: int | None) -> Result:
    """Measure one deployment on fresh topics, deleted afterwards; an error becomes the
    measurement's ``error``."""
    started = time.perf_counter()
    topology = variant.topology
    try:
        if topology.partitions != PARTITIONS:
            raise BenchError(f"{variant.file} has {topology.partitions} partitions, "
                             f"not {PARTITIONS}")
        # every topic between agents too, so that each hop can be timed by the broker;
        # deploy() creates the rest (the joiner's compacted changelog)
        await create_topics(bootstrap, topology.topics())
        try:
            collector, agents, broker_us = await drive(variant, bootstrap, workload,
                                                       broker_pid)
            times = {variant.output: collector.times}
            for topic in {t for a in topology.units() for t in topology.input_topics(a)}:
                times[topic] = await broker_times(bootstrap, topic)
        finally:
            await delete_topics(bootstrap, list(variant.topics))
        inputs = times[variant.input]
        m = summarize(variant, workload, inputs, collector.times,
                      sum(a["cpu_us"] for a in agents.values() if a["cpu_us"] is not None),
                      time.perf_counter() - started)
        probe = [k for k, _, _ in workload.probe]
        hops = hop_latencies(topology, times, probe)
        readable = np.array([collector.received[k] - inputs[k] for k in probe])
        return Result(m, workers=sum(len(w) for w in variant.workers.values()),
                      partial=len(collector.partial), broker_cpu_us=broker_us,
                      agents={a: {**stats, **hops.get(a, {})} for a, stats in agents.items()},
                      readable_p50_ms=float(np.percentile(readable, 50)),
                      readable_p99_ms=float(np.percentile(readable, 99)))
    except Exception as exc:  # reported, not raised: the other deployment still runs
        return Result(Measurement(variant.label, error=f"{type(exc).__name__}: {exc}",
                                  wall_s=time.perf_counter() - started))


# --- reporting ---------------------------------------------------------------------------

def rows_of(results: list[Result]) -> list[dict[str, Any]]:
    """Each result with its ratios and added latencies against the first (the member
    alone), as :func:`overhead.compare` gives them, plus the extras of :class:`Result`."""
    rows = compare([r.measurement for r in results])
    return [{**row, **{k: v for k, v in asdict(r).items() if k != "measurement"},
             "added_readable_p50_ms": _minus(r.readable_p50_ms, results[0].readable_p50_ms),
             "added_readable_p99_ms": _minus(r.readable_p99_ms, results[0].readable_p99_ms)}
            for row, r in zip(rows, results, strict=True)]


def print_report(info: dict[str, Any], workload: Workload, timings: dict[str, float],
                 rows: list[dict[str, Any]]) -> None:
    """The machine, the workload, the member timings and one row per deployment."""
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
          f"{info['platform']}; load {info['loadavg_1m_at_start']} (1 min) at start, "
          f"{info['loadavg_1m_at_end']} at end; torch {info['torch']}, onnxruntime "
          f"{info['onnxruntime']}, OMP_NUM_THREADS {info['OMP_NUM_THREADS'] or 'unset'}")
    print(f"workload: {len(workload.timed)} timed requests after {len(workload.warmup)} "
          f"warm-up, held-out digits ({workload.payload_bytes} B of float32 pixels), "
          f"{PARTITIONS} partitions; latency probe {len(workload.probe)} requests at "
          f"{workload.latency_rate:g}/s")
    print("member steps in-process, µs/record: "
          + ", ".join(f"{m} {us:.1f}" for m, us in timings.items())
          + f"; slowest: {max(timings, key=timings.__getitem__)}")
    print(f"{'variant':<16} {'workers':>7} {'partial':>7} {'records/s':>10} {'× member':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'+p50 ms':>8} {'+p99 ms':>8} {'read p50':>9} "
          f"{'read p99':>9} {'CPU µs/rec':>10} {'CPU ×':>6} {'broker µs':>9} {'wall s':>7}")
    for r in rows:
        if r["error"] is not None:
            print(f"{r['variant']:<16} not measured: {r['error']}")
            continue
        print(f"{r['variant']:<16} {r['workers']:>7} {r['partial']:>7} "
              f"{_fmt(r['throughput'], '.0f'):>10} "
              f"{_fmt(r['throughput_ratio'], '.2f'):>9} {_fmt(r['p50_ms'], '.1f'):>7} "
              f"{_fmt(r['p99_ms'], '.1f'):>7} {_fmt(r['added_p50_ms'], '+.1f'):>8} "
              f"{_fmt(r['added_p99_ms'], '+.1f'):>8} {_fmt(r['readable_p50_ms'], '.1f'):>9} "
              f"{_fmt(r['readable_p99_ms'], '.1f'):>9} {_fmt(r['cpu_us'], '.0f'):>10} "
              f"{_fmt(r['cpu_ratio'], '.2f'):>6} {_fmt(r['broker_cpu_us'], '.0f'):>9} "
              f"{_fmt(r['wall_s'], '.1f'):>7}")
    print(f"uptime at start: {info['uptime_at_start']}\nuptime at end:   {info['uptime_at_end']}")
    print("throughput / the slowest member alone: " + ", ".join(
        f"{r['variant']} {_fmt(r['throughput_ratio'], '.2f')}" for r in rows[1:]))
    if any(r["partial"] for r in rows):
        print("partial: outputs the joiner sent after its timeout_ms without every member's "
              "result (the figures include them)")
    print("by agent: CPU µs/record, records per model call and µs/record in model calls "
          "(thread hand-off included) while draining the backlog; p50/p99 ms of its hop "
          "(its output's broker time minus its latest input's) in the latency probe; a "
          "co-located group's model time is its whole step, its members' rows (sharing its "
          "process and CPU) their calls within it, a fan-out's branches overlapping")
    print(f"  {'variant':<16} {'agent':<10} {'CPU µs/rec':>10} {'rec/call':>8} "
          f"{'model µs/rec':>12} {'hop p50':>8} {'hop p99':>8}")
    for r in rows:
        for agent, a in (r["agents"] or {}).items():
            print(f"  {r['variant']:<16} {agent:<10} {_fmt(a['cpu_us'], '.0f'):>10} "
                  f"{_fmt(a['batch'], '.1f'):>8} {_fmt(a['model_us'], '.0f'):>12} "
                  f"{_fmt(a.get('hop_p50_ms'), '.1f'):>8} "
                  f"{_fmt(a.get('hop_p99_ms'), '.1f'):>8}")


async def run(args: argparse.Namespace, workdir: Path
              ) -> tuple[Workload, dict[str, float], list[list[Result]]]:
    """Time the members, then measure the slowest alone and each of ``args.variants``, in
    that order, ``args.rounds`` times over: each round's results."""
    ensemble = load_topology(ENSEMBLE)
    print("timing the members in-process ...", file=sys.stderr, flush=True)
    timings = await asyncio.to_thread(time_members, ensemble)
    slowest = max(timings, key=timings.__getitem__)
    run_id = uuid.uuid4().hex[:8]
    workload = make_workload(args.records, args.latency_records, args.latency_rate)
    rounds = []
    for n in range(1, args.rounds + 1):
        prefix = f"bench-{run_id}-{n}"  # fresh deployments and topics in every round
        variants = [
            TopologyDeployment(f"{slowest} alone", single_member_topology(
                slowest, f"{prefix}-{slowest}", workdir), f"{prefix}-{slowest}"),
            *(TopologyDeployment(label, replicated_topology(*VARIANTS[label], workdir),
                                 f"{prefix}-{label.replace(' ', '-')}")
              for label in args.variants)]
        results = []
        for variant in variants:
            print(f"round {n}: measuring the {variant.label} ...", file=sys.stderr,
                  flush=True)
            results.append(await measure(variant, args.bootstrap, workload,
                                         args.broker_pid))
        rounds.append(results)
    return workload, timings, rounds


def print_medians(rounds: list[list[dict[str, Any]]]) -> None:
    """Each variant's throughput ratio over the rounds: the median and the range."""
    parts = []
    for i, row in enumerate(rounds[0][1:], start=1):
        ratios = [r[i]["throughput_ratio"] for r in rounds
                  if r[i]["throughput_ratio"] is not None]
        parts.append(f"{row['variant']} {np.median(ratios):.2f} ({min(ratios):.2f} to "
                     f"{max(ratios):.2f})" if ratios else f"{row['variant']} -")
    print(f"throughput / the slowest member alone over {len(rounds)} rounds, median "
          f"(lowest to highest): {', '.join(parts)}")


def uptime() -> str:
    """What ``uptime`` says: the machine's load, which the figures depend on."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False
                          ).stdout.strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap (H:P)")
    p.add_argument("--records", type=int, default=30000,
                   help="timed backlog requests (drains of a few seconds: at 10000 the member "
                        "alone drains in under one, and its rate varies by a third run to run)")
    p.add_argument("--latency-records", type=int, default=250,
                   help="requests of the latency probe")
    p.add_argument("--latency-rate", type=float, default=25.0,
                   help="requests per second of the latency probe")
    p.add_argument("--omp-threads", type=int, default=None,
                   help="set OMP_NUM_THREADS for the member timing and every deployed worker "
                        "(torch's intra-op threads; unset: torch uses one per CPU)")
    p.add_argument("--broker-pid", type=int, default=None,
                   help="the pid of the broker, when it runs on this machine: its CPU time "
                        "per record is reported too")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS,
                   help="the deployments measured against the slowest member alone")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure the member alone and the variants this many times, one "
                        "round after the other, and report each ratio's median and range "
                        "(the machine's speed drifts by a fifth from one minute to the next)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table and optionally write the JSON."""
    args = parse_args(argv)
    with temporary_home() as tmp:
        if args.omp_threads is not None:  # before torch is imported; the workers inherit it
            os.environ["OMP_NUM_THREADS"] = str(args.omp_threads)
        info = {**machine(), "uptime_at_start": uptime(),
                **{pkg: installed_version(pkg)
                                for pkg in ("onnxruntime", "torch")},
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
        workload, timings, rounds = asyncio.run(run(args, tmp))
    info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    info["uptime_at_end"] = uptime()
    rows = [rows_of(results) for results in rounds]
    for n, round_rows in enumerate(rows, start=1):
        if len(rows) > 1:
            print(f"--- round {n} of {len(rows)}")
        print_report(info, workload, timings, round_rows)
    if len(rows) > 1:
        print("---")
        print_medians(rows)
    write_json(args.json, machine=info, workload={
        "records": len(workload.timed), "warmup": len(workload.warmup),
        "partitions": PARTITIONS, "latency_records": len(workload.probe),
        "latency_rate": workload.latency_rate},
        member_step_us_per_record=timings, results=rows[0], rounds=rows)


if __name__ == "__main__":
    main()
