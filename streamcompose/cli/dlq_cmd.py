"""``streamcompose dlq list | show | redrive``: a deployment's dead letters, their reasons,
and publishing them again to the agents that failed them."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from typing import Any

import click
from tqdm import tqdm

from streamcompose.cli.deploy_cmd import plain_name
from streamcompose.cli.replay_cmd import position_option
from streamcompose.deadletters.letters import DeadLetter, Filters, find_letter, read_letters
from streamcompose.deadletters.redrive import Plan, progress_topic, redrive, redriven
from streamcompose.deploy.registry import Deployment
from streamcompose.kafka.ranges import Position

REASON_WIDTH = 60


def _filter_options(command: Any) -> Any:
    for option in reversed([
            click.option("--reason", default=None,
                         help="Only dead letters whose reason contains TEXT (any case)."),
            click.option("--agent", default=None, metavar="AGENT",
                         help="Only the dead letters of this agent."),
            click.option("--since", callback=position_option, default=None, metavar="TIME|OFFSET",
                         help="From this time, age (10m, 2h) or offset on."),
            click.option("--id", "ids", multiple=True, help="Only this request id "
                                                            "(repeatable)."),
            click.option("--json", "as_json", is_flag=True, help="Print JSON.")]):
        command = option(command)
    return command


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")


def _row(letter: DeadLetter, note: str) -> str:
    reason = letter.reason.replace("\n", " ")
    reason = reason if len(reason) <= REASON_WIDTH else reason[:REASON_WIDTH - 1] + "…"
    return (f"{letter.ref:<24} {letter.id[:16]:<17}{letter.agent[:14]:<15}"
            f"{_when(letter.failed_ms):<20} {reason}{note}")


@click.group("dlq")
def dlq() -> None:
    """A deployment's dead letters: list, show, redrive."""


@dlq.command("list")
@click.argument("name", callback=plain_name)
@_filter_options
def list_command(name: str, reason: str | None, agent: str | None, since: Position | None,
                 ids: tuple[str, ...], as_json: bool) -> None:
    """List the dead letters of deployment NAME with their reasons, oldest first.

    REF (topic:partition:offset) is what `dlq show` takes; "(redriven)" marks those
    `dlq redrive` published again.

    Example: streamcompose dlq list digits --agent cnn --reason dtype --since 1h
    """
    m = Deployment(name).manifest()

    async def run() -> tuple[list[DeadLetter], dict[str, dict[str, Any]]]:
        return (await read_letters(m, Filters(reason, agent, since, ids)),
                await redriven(m["bootstrap"], name))

    letters, done = asyncio.run(run())
    if as_json:
        click.echo(json.dumps([{**d.to_json(), "redriven": done.get(d.ref)} for d in letters]))
        return
    click.echo(f"{'ref':<24} {'id':<17}{'agent':<15}{'failed':<20} reason")
    for d in letters:
        click.echo(_row(d, "  (redriven)" if d.ref in done else ""))
    click.echo(f"{len(letters)} dead letters", err=True)


@dlq.command("show")
@click.argument("name", callback=plain_name)
@click.argument("ref", metavar="OFFSET")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(name: str, ref: str, as_json: bool) -> None:
    """Show one dead letter of deployment NAME in full: reason, where it failed, headers
    and the original request. OFFSET: an offset, PARTITION:OFFSET or
    TOPIC:PARTITION:OFFSET (the REF `dlq list` prints).

    Example: streamcompose dlq show digits digits.dlq:0:12
    """
    m = Deployment(name).manifest()
    try:
        found = asyncio.run(find_letter(m, ref))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="OFFSET") from None
    if not found:
        click.echo(f"no dead letter at {ref} in {name}", err=True)
        sys.exit(1)
    if len(found) > 1:
        raise click.BadParameter(f"{ref} is in several partitions: "
                                 f"{', '.join(d.ref for d in found)}; give one",
                                 param_hint="OFFSET")
    letter = found[0]
    done = asyncio.run(redriven(m["bootstrap"], name)).get(letter.ref)
    data = {**letter.to_json(with_original=True), "redriven": done}
    if as_json:
        click.echo(json.dumps(data))
        return
    for key in ("ref", "id", "agent", "error_type", "error"):
        click.echo(f"{key + ':':<12}{data[key]}")
    click.echo(f"{'source:':<12}{letter.source}")
    click.echo(f"{'failed:':<12}{_when(letter.failed_ms)}")
    click.echo(f"{'original:':<12}{letter.original_bytes} bytes"
               + (" (cut to fit the dead-letter topic)" if letter.truncated else ""))
    click.echo(f"{'redriven:':<12}{json.dumps(done) if done else 'no'}")
    click.echo("headers:    " + json.dumps(data["headers"]))
    click.echo("request:    " + json.dumps(data["original"]))


@dlq.command("redrive")
@click.argument("name", callback=plain_name)
@_filter_options
@click.option("--dry-run", is_flag=True, help="Say what would be redriven; publish nothing.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="At most N dead letters a second.")
def redrive_command(name: str, reason: str | None, agent: str | None, since: Position | None,
                    ids: tuple[str, ...], as_json: bool, dry_run: bool,
                    rate: float | None) -> None:
    """Publish the original requests of the selected dead letters of deployment NAME
    again, to the input of the agent that failed each, with the header sc-redrive.

    Each dead letter is redriven at most once, even when a run is interrupted and run
    again: what was redriven is recorded in NAME.dlq.redriven in the same Kafka
    transaction as the request published again.

    Example: streamcompose dlq redrive digits --agent cnn --rate 50
    """
    m = Deployment(name).manifest()
    with tqdm(desc="redriven", unit="letter", file=sys.stderr, disable=as_json or dry_run,
              leave=False) as bar:
        def planned(plan: Plan) -> None:
            bar.reset(total=len(plan.todo))

        plan = asyncio.run(redrive(m, Filters(reason, agent, since, ids), dry_run=dry_run,
                                   rate=rate, on_plan=planned, progress=bar.update))
    if as_json:
        click.echo(json.dumps({
            "dry_run": dry_run, "progress_topic": progress_topic(name),
            "redriven": [{"ref": d.ref, "id": d.id, "agent": d.agent, "to": d.source_topic}
                         for d in plan.todo],
            "skipped": [{"ref": d.ref, "id": d.id, "agent": d.agent, "reason": why}
                        for d, why in plan.skipped]}))
        return
    verb = "would redrive" if dry_run else "redrove"
    targets: dict[str, int] = {}
    for d in plan.todo:
        targets[d.source_topic] = targets.get(d.source_topic, 0) + 1
    click.echo(f"{verb} {len(plan.todo)} dead letters"
               + (": " + ", ".join(f"{n} to {t}" for t, n in targets.items()) if targets
                  else ""))
    if plan.skipped:
        click.echo(f"skipped {len(plan.skipped)}:")
        for d, why in plan.skipped:
            click.echo(f"  {d.ref} {d.id[:16]} ({d.agent}): {why}")


COMMANDS = [dlq]
