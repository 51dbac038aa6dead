"""The OCR cascade's throughput against RapidOCR's own serial loop, on the same images.

In one run, on ``--images`` sample images of ``topologies/ocr/samples.py`` (24 by
default, generated into a temporary folder, as PNG files):

1. *RapidOCR alone*: ``RapidOCR()(path)`` for each image in turn, in this process, with
   RapidOCR's default settings (its ONNX Runtime sessions use every CPU), after one
   warm-up call: images/s and CPU time per image. Then the same with ONNX Runtime's CPU
   memory arena on in its sessions (RapidOCR turns it off; the cascade's steps keep it),
   to show how much of the cascade's lead comes from that alone.
2. *The cascade*: ``--topology`` (``topologies/ocr_cascade.yaml`` by default) deployed
   under a unique name as a user deploys it (detect → classify → recognize, one worker
   process per replica). After a few warm-up images, the workers are frozen (SIGSTOP)
   while every image's PNG bytes are written to the input topic, then let go: images/s
   from that moment until this process has read the last result (``read_committed``), and
   the workers' CPU time per image (from /proc).

The texts of every result are compared with RapidOCR's for the same image; the report
says whether all are identical. Nothing passes or fails; every topic is deleted at the
end. Usage::

    python benchmarks/ocr.py --bootstrap 127.0.0.1:9092 [--images 24]
        [--topology topologies/ocr_cascade.yaml] [--json benchmarks/out/ocr.json]
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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from ensemble import TopologyDeployment, wait_until
from overhead import Record, machine, temporary_home, write_json

from streamcompose.codec import Trace, decode_payload, encode_payload
from streamcompose.codec.record import now_ms
from streamcompose.kafka.admin import delete_topics

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "topologies"))

from ocr.samples import make_samples  # noqa: E402 (the topologies folder, just added)
from ocr.steps import with_arena  # noqa: E402

WARMUP = 3


def serial(images: list[Path], arena: bool = False
           ) -> tuple[float, float, dict[str, list[str]]]:
    """RapidOCR's own loop: images/s, CPU seconds per image and each image's texts; with
    ``arena``, its sessions keep ONNX Runtime's CPU memory arena as the cascade's do."""
    from rapidocr_onnxruntime import RapidOCR

    engine = with_arena(RapidOCR()) if arena else RapidOCR()
    engine(images[0])
    texts = {}
    started, cpu = time.perf_counter(), time.process_time()
    for path in images:
        texts[path.stem] = [line[1] for line in (engine(path)[0] or [])]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return len(images) / wall, cpu / len(images), texts


def image_records(prefix: str, images: list[Path]) -> list[Record]:
    """One request per image, ``{"image": PNG bytes}``, keyed ``<prefix>-<stem>``."""
    return [(f"{prefix}-{p.stem}".encode(), encode_payload({"image": p.read_bytes()}),
             Trace(request_id=f"{prefix}-{p.stem}", entered_ms=now_ms()).headers())
            for p in images]


class Results:
    """Reads the output topic as it is written: each key's texts and when it came."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap,
                                         isolation_level="read_committed",
                                         auto_offset_reset="earliest",
                                         max_partition_fetch_bytes=16 << 20)
        self.topic, self.partitions = topic, partitions
        self.texts: dict[bytes, list[str]] = {}
        self.received: dict[bytes, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign([TopicPartition(self.topic, p) for p in range(self.partitions)])
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=50)
            for records in batches.values():
                for r in records:
                    self.texts[r.key] = decode_payload(r.value).get("texts")
                    self.received[r.key] = time.perf_counter()

    async def count(self) -> int:
        if self.task is not None and self.task.done():
            raise RuntimeError(f"reading the results failed: {self.task.exception()!r}")
        return len(self.texts)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


async def cascade(bootstrap: str, topology: Path, images: list[Path]
                  ) -> tuple[float, float, dict[str, list[str]], dict[str, float]]:
    """The deployed cascade draining every image at once: images/s, its workers' CPU
    seconds per image, each image's texts and each agent's CPU seconds per image."""
    name = f"bench-{uuid.uuid4().hex[:8]}-ocr"
    deployment = TopologyDeployment("cascade", topology, name)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                                max_request_size=16 << 20)
    results = Results(bootstrap, deployment.output, deployment.topology.partitions)

    async def produce(records: list[Record]) -> None:  # keys hashed over the partitions
        sent = [await producer.send(deployment.input, v, key=k, headers=h)
                for k, v, h in records]
        await asyncio.gather(*sent)

    await producer.start()
    try:
        await deployment.start(bootstrap)  # it creates the topics
        await results.start()
        warmup = image_records("warmup", images[:WARMUP])
        await produce(warmup)
        await wait_until(results.count, lambda n: n >= len(warmup), "warm-up results")
        timed = image_records("timed", images)
        with deployment.frozen():
            await produce(timed)
            cpu = deployment.cpu_by_agent()
            started = time.perf_counter()
        await wait_until(results.count, lambda n: n >= len(warmup) + len(timed), "results")
        by_agent = {a: (s - cpu[a]) / len(images) for a, s in deployment.cpu_by_agent().items()}
        wall = max(results.received[k] for k, _, _ in timed) - started
        deployment.check()
    finally:
        await results.stop()
        await producer.stop()
        await deployment.stop()
        await delete_topics(bootstrap, list(deployment.topics))
    texts = {k.decode().removeprefix("timed-"): results.texts[k] for k, _, _ in timed}
    return len(images) / wall, sum(by_agent.values()), texts, by_agent


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the figures and optionally write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap (H:P)")
    p.add_argument("--images", type=int, default=24, help="sample images")
    p.add_argument("--topology", type=Path, default=ROOT / "topologies" / "ocr_cascade.yaml",
                   help="the cascade's topology file")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    with temporary_home() as tmp:
        info = machine()
        images = make_samples(tmp / "samples", args.images)
        print("RapidOCR alone ...", file=sys.stderr, flush=True)
        alone = serial(images)
        arena = serial(images, arena=True)
        print("the cascade ...", file=sys.stderr, flush=True)
        streamed = asyncio.run(cascade(args.bootstrap, args.topology.resolve(), images))
    info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    same = [stem for stem in alone[2] if alone[2][stem] == streamed[2].get(stem)]
    rows: dict[str, Any] = {label: {"images_per_s": rate, "cpu_s_per_image": cpu}
                            for label, (rate, cpu, *_) in (
                                ("RapidOCR alone", alone), ("RapidOCR, arena on", arena),
                                ("cascade", streamed))}
    rows["cascade"]["cpu_s_per_image_by_agent"] = streamed[3]
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}; load "
          f"{info['loadavg_1m_at_start']} (1 min) at start, {info['loadavg_1m_at_end']} at "
          f"end; {args.images} images; topology {args.topology}")
    print(f"{'variant':<20} {'images/s':>9} {'× RapidOCR':>11} {'CPU ms/image':>13}")
    for label, row in rows.items():
        row["ratio"] = row["images_per_s"] / rows["RapidOCR alone"]["images_per_s"]
        print(f"{label:<20} {row['images_per_s']:>9.2f} {row['ratio']:>11.2f} "
              f"{row['cpu_s_per_image'] * 1000:>13.0f}")
    busy = {label: row["cpu_s_per_image"] * row["images_per_s"] for label, row in rows.items()}
    print("CPUs busy on average: " + ", ".join(f"{label} {b:.2f}" for label, b in busy.items())
          + f" of {info['nproc']}; the cascade's CPU ms/image by agent: "
          + ", ".join(f"{a} {s * 1000:.0f}" for a, s in streamed[3].items()))
    print(f"texts identical to RapidOCR's: {len(same)} of {len(alone[2])} images (with "
          f"the arena on, RapidOCR's own: {sum(arena[2][k] == v for k, v in alone[2].items())})")
    write_json(args.json, machine=info, images=args.images, topology=str(args.topology),
               results=rows, identical=len(same))


if __name__ == "__main__":
    main()
