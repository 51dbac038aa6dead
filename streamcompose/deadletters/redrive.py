"""``dlq redrive``: publish the original bytes of dead letters again to the input of the
agent that failed them, each at most once.

What was redriven is kept in Kafka, in the compacted topic ``<name>.dlq.redriven`` keyed
by the dead letter (``topic:partition:offset``). Each request published again and its
progress record go into one Kafka transaction, so a redrive interrupted at any point
(Ctrl-C, SIGKILL, a broker outage) has published exactly the letters it recorded; run
again, it goes on with the others. Every run of a deployment uses one transactional id,
so a new run fences an older one still going and aborts its open transaction before it
reads the progress.

The request published again keeps its key (the request id), its headers (less the
dead letter's content type and the failed agent at the end of ``sc-path``, and less
``sc-deadline``: a redrive is asked for now) and gets ``sc-redrive``
(:mod:`streamcompose.codec.redrive`). It goes to the partition number it came from.

Example (needs a broker and a deployment)::

    plan = asyncio.run(redrive(Deployment("digits").manifest(), Filters(agent="cnn"), rate=50))
    print(len(plan.todo), "redriven")
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka.errors import KafkaError, ProducerFenced

from streamcompose.codec.record import ENTERED, PATH, now_ms
from streamcompose.codec.redrive import NOT_REPUBLISHED, REDRIVE, Redrive, redrive_header
from streamcompose.deadletters.letters import DeadLetter, Filters, read_letters
from streamcompose.deploy.registry import Deployment
from streamcompose.errors import BrokerError, DeploymentError
from streamcompose.kafka.admin import ensure_topics, topic_partitions
from streamcompose.kafka.clients import make_producer
from streamcompose.kafka.ranges import read_range
from streamcompose.topology import Topology, colocate, load_topology_text

DROPPED_HEADERS = ("content-type", REDRIVE, *NOT_REPUBLISHED)
CHUNK = 100  # dead letters per transaction at most


def progress_topic(name: str) -> str:
    """The compacted topic recording what was redriven.

    >>> progress_topic("digits")
    'digits.dlq.redriven'
    """
    return f"{name}.dlq.redriven"


@dataclass
class Plan:
    """The selected dead letters: those to redrive, and the others with the reason."""

    todo: list[DeadLetter] = field(default_factory=list)
    skipped: list[tuple[DeadLetter, str]] = field(default_factory=list)


def why_not(t: Topology, letter: DeadLetter) -> str | None:
    """Why a dead letter cannot be redriven (None if it can)."""
    if letter.agent not in t.agent_names:
        return f"agent {letter.agent!r} is no longer in the deployment"
    if letter.source_offset < 0 or (not letter.original and not letter.truncated):
        return "no original request (a timeout or an unstorable result)"
    if letter.truncated:
        return (f"the original was cut to fit the dead-letter topic ({len(letter.original)} of "
                f"{letter.original_bytes} bytes kept)")
    if t.is_stateful(letter.agent):
        return f"{letter.agent!r} keeps state (a joiner or fallback): its inputs are results"
    fallbacks = t.returns_to(letter.agent)
    if fallbacks:
        return (f"fallback router {fallbacks[0]!r} already handled this dead letter of "
                f"{letter.agent!r}")
    if letter.source_topic not in t.input_topics(colocate.unit_of(t, letter.agent)):
        return f"{letter.source_topic!r} is no longer an input of {letter.agent!r}"
    return None


def _topology(manifest: dict[str, Any]) -> Topology:
    snapshot = Deployment(manifest["name"]).snapshot_file.read_text(encoding="utf-8")
    return load_topology_text(snapshot, manifest["base_dir"])


async def redriven(bootstrap: str, name: str) -> dict[str, dict[str, Any]]:
    """What was redriven: dead letter ``topic:partition:offset`` -> its progress record
    (nothing where the progress topic does not exist yet)."""
    try:
        await topic_partitions(bootstrap, [progress_topic(name)])
    except BrokerError:
        return {}
    done = {}
    for r in await read_range(bootstrap, [progress_topic(name)], None, None):
        if r.key is not None and r.value is not None:
            done[r.key.decode()] = json.loads(r.value)
    return done


async def plan_redrive(manifest: dict[str, Any], filters: Filters,
                       done: dict[str, dict[str, Any]]) -> Plan:
    """Split the dead letters ``filters`` select into those to redrive and those not
    (with why); ``done`` is what :func:`redriven` returned."""
    t = _topology(manifest)
    plan = Plan()
    for letter in await read_letters(manifest, filters):
        earlier = done.get(letter.ref)
        reason = (f"redriven already, at {earlier.get('at')} ms" if earlier is not None
                  else why_not(t, letter))
        if reason is None:
            plan.todo.append(letter)
        else:
            plan.skipped.append((letter, reason))
    return plan


def republished(letter: DeadLetter, at: int) -> tuple[list[tuple[str, bytes]], Redrive]:
    """The headers of a dead letter's request published again, and its provenance."""
    redrive = Redrive(letter.topic, letter.partition, letter.offset, letter.agent,
                      letter.source_topic, at)
    headers = []
    for key, value in letter.headers:
        if key in DROPPED_HEADERS:
            continue
        if key == PATH:
            path = value.decode("utf-8", "replace").split(",")
            value = ",".join(path[:-1] if path[-1:] == [letter.agent] else path).encode()
        headers.append((key, value))
    if not any(k == ENTERED for k, _ in headers):
        headers.append((ENTERED, str(at).encode()))
    return [*headers, redrive_header(redrive)], redrive


async def redrive(manifest: dict[str, Any], filters: Filters, *, dry_run: bool = False,
                  rate: float | None = None,
                  on_plan: Callable[[Plan], None] | None = None,
                  progress: Callable[[int], None] | None = None) -> Plan:
    """Redrive the dead letters ``filters`` select that can be, each at most once:
    publish each original again with its progress record, in transactions of at most
    :data:`CHUNK` (fewer under ``rate``, dead letters a second). Returns the plan: what
    was redriven (nothing under ``dry_run``) and what was not, with why."""
    name, bootstrap = manifest["name"], manifest["bootstrap"]
    if dry_run:
        return await plan_redrive(manifest, filters, await redriven(bootstrap, name))
    producer = make_producer(bootstrap, f"{name}.redrive",
                             transactional_id=f"streamcompose.{name}.redrive")
    await ensure_topics(bootstrap, {progress_topic(name): 1}, (progress_topic(name),))
    await producer.start()  # fences an older run and aborts its open transaction
    count = 0
    try:
        plan = await plan_redrive(manifest, filters, await redriven(bootstrap, name))
        if on_plan is not None:
            on_plan(plan)
        partitions = {t: len(await producer.partitions_for(t))
                      for t in {x.source_topic for x in plan.todo}}
        chunk = CHUNK if rate is None else max(1, min(CHUNK, int(rate / 5)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(0, len(plan.todo), chunk):
            batch = plan.todo[i:i + chunk]
            async with producer.transaction():
                sent = []
                for letter in batch:
                    headers, provenance = republished(letter, now_ms())
                    part = letter.source_partition
                    sent.append(await producer.send(
                        letter.source_topic, letter.original, key=letter.id.encode(),
                        headers=headers,
                        partition=part if 0 <= part < partitions[letter.source_topic] else None))
                    sent.append(await producer.send(
                        progress_topic(name), json.dumps({**asdict(provenance), "id": letter.id})
                        .encode(), key=letter.ref.encode()))
                await asyncio.gather(*sent)  # a failed send aborts the transaction
            count += len(batch)
            if progress is not None:
                progress(len(batch))
            if rate is not None:
                await asyncio.sleep(max(0.0, started + count / rate - loop.time()))
    except ProducerFenced as exc:
        raise DeploymentError(f"another `dlq redrive {name}` started and took over; this one "
                              f"stopped after {count} dead letters", topology=name) from exc
    except KafkaError as exc:
        raise BrokerError(f"redrive of {name} stopped after {count} dead letters: {exc}; "
                          "run it again to go on", bootstrap=bootstrap, retriable=True) from exc
    finally:
        await producer.stop()
    return plan
