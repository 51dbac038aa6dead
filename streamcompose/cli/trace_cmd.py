"""``streamcompose trace``: a request's journey through a deployment, read from Kafka."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime
from typing import Any

import click
from tqdm import tqdm

from streamcompose.cli.deploy_cmd import plain_name
from streamcompose.deploy.trace import trace as trace_request

PROGRESS_FROM = 10_000  # records to read before a progress bar shows
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> int:
    """A moment as ms since the epoch: ``30s``, ``10m``, ``2h``, ``1d`` ago, an ISO time
    (local unless it has an offset) or ms since the epoch.

    >>> parse_since("10m", now=1000.0), parse_since("1700000000000")
    (400000, 1700000000000)
    """
    now = time.time() if now is None else now
    if match := _AGO.match(text.strip()):
        return int((now - float(match[1]) * _UNIT_S[match[2]]) * 1000)
    if text.strip().isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not 30s/10m/2h/1d (ago), an ISO time or ms "
                                 "since the epoch") from None


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else parse_since(value)


def _table(journey: dict[str, Any]) -> None:
    hops = journey["hops"]
    start = hops[0]["timestamp_ms"]
    click.echo(f"request {journey['request_id']}: {len(hops)} records "
               f"({journey['records_read']} read in {len(journey['topics'])} topics)")
    click.echo(f"  {'+ms':>6}  {'kind':<13}{'agent':<14}{'version':<10}{'replica':>7}  "
               f"{'batch':<16}{'record':<28}detail")
    for h in hops:
        replica = "" if h["replica"] is None else h["replica"]
        click.echo(f"  {h['timestamp_ms'] - start:>6}  {h['kind']:<13}{h['agent'] or '':<14}"
                   f"{h['version'] or '':<10}{replica:>7}  {h['batch'] or '':<16}"
                   f"{h['where']:<28}{h['detail'][:100]}")


@click.command()
@click.argument("name", callback=plain_name)
@click.argument("request_id")
@click.option("--since", callback=_since, default=None,
              help="Read only records written since then: 30s/10m/2h/1d (ago), an ISO time "
                   "or ms since the epoch (default: every record kept).")
@click.option("--json", "as_json", is_flag=True, help="Print the journey as JSON.")
def trace(name: str, request_id: str, since: int | None, as_json: bool) -> None:
    """Show REQUEST_ID's journey through deployment NAME, read back from Kafka: its input
    record, then each agent's result, routing decision, join or dead letter, with topic,
    partition, offset, time since the input and the version, replica and micro-batch
    that wrote it (the sc-lineage header).

    Exits 1 when no record of the request is found.

    Example: streamcompose trace digits d0 --since 1h
    """
    bar: tqdm | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if total < PROGRESS_FROM:
            return
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, unit="record", file=sys.stderr, desc="reading")
        bar.update(done - bar.n)

    try:
        journey = trace_request(name, request_id, since_ms=since, progress=progress).to_json()
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(json.dumps(journey))
    elif journey["hops"]:
        _table(journey)
    if not journey["hops"]:
        click.echo(f"no record of request {request_id!r} in {name!r} "
                   f"({journey['records_read']} records read in {len(journey['topics'])} "
                   "topics)", err=True)
        sys.exit(1)


COMMANDS = [trace]
