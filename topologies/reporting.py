"""What the example reports share: deploying a topology, streaming requests through it
over Kafka in chunks, stopping it, printing the table, and the command line.

``scripts/digits_ensemble_report.py`` and ``scripts/moe_report.py`` each compute their
summary with :func:`deploy_and_stream` and call :func:`main` with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from streamcompose.client import Client
from streamcompose.deploy import deploy, stop
from streamcompose.deploy.registry import Deployment
from streamcompose.errors import StreamComposeError
from streamcompose.topology import Topology

Payload = dict[str, Any]
Summary = dict[str, Any]
Row = TypeVar("Row")


async def stream(bootstrap: str, name: str, payloads: list[Payload], chunk: int,
                 timeout: float) -> list[Payload]:
    """Each request's result payload through the deployed topology, in order. The first
    request goes alone (it starts the client's result listener), the rest concurrently,
    ``chunk`` at a time."""
    async with Client(bootstrap) as client:
        results = [await client.infer(name, payloads[0], timeout)]
        for start in range(1, len(payloads), chunk):
            results += await asyncio.gather(*(client.infer(name, p, timeout)
                                              for p in payloads[start:start + chunk]))
    return [r.payload for r in results]


def deploy_and_stream(path: Path, topology: Topology, args: argparse.Namespace,
                      payloads: list[Payload]) -> tuple[str, list[Payload], float]:
    """Deploy the topology file ``path`` (loaded as ``topology``) under ``args.name`` or a
    unique name, stream ``payloads`` through it (:func:`stream`, ``args.chunk`` at a time,
    ``args.timeout`` seconds for each), and stop it. Returns the deployment's name, the
    result payloads in order and the seconds they took."""
    name = args.name or f"{topology.name}-report-{uuid.uuid4().hex[:8]}"
    print(f"deploying {path} as {name} ...", file=sys.stderr, flush=True)
    deploy(path, args.bootstrap, name=name,
           progress=lambda w: print(f"  joined: {w}", file=sys.stderr, flush=True))
    try:
        started = time.perf_counter()
        results = asyncio.run(stream(args.bootstrap, name, payloads, args.chunk, args.timeout))
        elapsed = time.perf_counter() - started
    except StreamComposeError as exc:
        logs = Deployment(name).log_file("supervisor").parent
        raise StreamComposeError(f"{exc} (the workers' logs are in {logs})") from exc
    finally:
        stop(name)
    return name, results, elapsed


def labels_and_proba(results: list[Payload]) -> tuple[np.ndarray, np.ndarray]:
    """The results' ``label`` (int [N]) and ``proba`` (float64 [N,classes])."""
    labels = np.array([int(r["label"]) for r in results])
    proba = np.array([np.asarray(r["proba"], dtype=np.float64) for r in results])
    return labels, proba


def print_rows(rows: list[tuple[str, Row]], header: str, cells: Callable[[Row], str]) -> None:
    """A table with a ``model`` column of the rows' labels, headed ``header`` on the
    right, each row's ``cells(value)`` beside its label."""
    width = max(len(label) for label, _ in rows)
    print(f"{'model':<{width}}  {header}")
    for label, value in rows:
        print(f"{label:<{width}}  {cells(value)}")


def print_footer(summary: Summary) -> None:
    """The line of the result fields, the number of requests and the time they took."""
    n = summary["samples"]
    print(f"result fields: {', '.join(summary['result_fields'])}; {n} requests in "
          f"{summary['elapsed_s']:.1f} s")


def main(description: str, report: Callable[[argparse.Namespace], Summary],
         print_table: Callable[[Summary], None], argv: list[str] | None = None, *,
         samples_help: str,
         add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """The command line of a report: parse it (``--bootstrap``, then ``add_arguments``'
    options, then ``--samples``, ``--name``, ``--chunk``, ``--timeout``, ``--json``), run
    ``report`` and print its summary as JSON or with ``print_table``. Returns the exit
    status: 0 when every streamed label equals the direct one (the summary's ``agree``
    is its ``samples``), 1 otherwise, 2 on a deployment error."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap server, host:port")
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--samples", type=int, default=None, help=samples_help)
    parser.add_argument("--name", help="deployment name (default: unique)")
    parser.add_argument("--chunk", type=int, default=50, help="requests in flight at once")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for each result")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args(argv)
    if (args.samples is not None and args.samples < 1) or args.chunk < 1:
        parser.error("--samples and --chunk must be at least 1")
    try:
        summary = report(args)
    except (StreamComposeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    return 0 if summary["agree"] == summary["samples"] else 1
