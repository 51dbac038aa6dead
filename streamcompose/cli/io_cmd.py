"""``streamcompose publish | subscribe | infer``: requests in, results out, over Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

import click
from tqdm import tqdm

from streamcompose.cli.main import bootstrap_option
from streamcompose.client import Client, resolve_topics
from streamcompose.deploy.registry import Deployment
from streamcompose.errors import StreamComposeError

PROGRESS_FROM = 100


def _events(stream: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise click.BadParameter(f"line {number} is not JSON: {exc}") from None
        if not isinstance(event, dict):
            raise click.BadParameter(f"line {number} is not a JSON object")
        yield number, event


def _serving_options(command: Any) -> Any:
    command = click.option(
        "--deadline-ms", type=click.FloatRange(min=1), default=None,
        help="Each request must be served within this many ms from now; agents "
             "dead-letter it as expired after that.")(command)
    return click.option(
        "--priority", default=None,
        help="A priority lane of the target (e.g. high, low) or 0-9, 9 the most "
             "urgent.")(command)


def _check_priority(target: str, priority: str | None) -> None:
    if priority is None:
        return
    try:
        resolve_topics(target).route(priority)
    except StreamComposeError as exc:
        raise click.BadParameter(str(exc), param_hint="--priority") from None


@click.command()
@click.argument("target")
@click.option("--file", "-f", "source", type=click.File("r"), default="-", show_default=True,
              help="JSON lines, one event per line; '-' reads stdin.")
@_serving_options
@bootstrap_option
def publish(target: str, source: IO[str], priority: str | None, deadline_ms: float | None,
            bootstrap: str) -> None:
    """Publish one event per JSON line to TARGET (a deployed topology's name or a topic).

    A line's "id" field, if any, becomes the request id; its "priority" field, if any,
    its priority (unless --priority is given). Prints one id per line.

    Example: echo '{"id": "r1", "pixels": [0, 3, 16]}' | streamcompose publish digits
    """
    _check_priority(target, priority)
    events = list(_events(source))

    async def run() -> None:
        async with Client(bootstrap) as client:
            pending = []
            with tqdm(total=len(events), unit="event", file=sys.stderr,
                      disable=len(events) < PROGRESS_FROM) as bar:
                for _, event in events:
                    request_id = event.pop("id", None)
                    pending.append(await client.send(
                        target, event, None if request_id is None else str(request_id),
                        priority=priority, deadline_ms=deadline_ms))
                    bar.update()
                for request_id in await asyncio.gather(*pending):
                    click.echo(request_id)

    asyncio.run(run())


def _follow_options(command: Any) -> Any:
    for option in reversed([
            click.option("--from-beginning", is_flag=True, help="Read from the start."),
            click.option("--count", "-n", type=int, default=None, help="Stop after N records."),
            click.option("--timeout", type=float, default=None,
                         help="Stop after S seconds without a new record."),
            bootstrap_option]):
        command = option(command)
    return command


def _follow(topics: list[str], from_beginning: bool, count: int | None,
            timeout: float | None, bootstrap: str) -> None:
    """Print records of the topics as JSON lines; exit 1 if fewer than ``count`` came."""
    async def run() -> int:
        seen = 0
        async with Client(bootstrap) as client:
            results = client.read(topics, from_beginning).__aiter__()
            while count is None or seen < count:
                try:
                    result = await asyncio.wait_for(results.__anext__(), timeout)
                except TimeoutError:
                    break
                click.echo(json.dumps(result.to_json()))
                seen += 1
            await results.aclose()
        return seen

    with contextlib.suppress(KeyboardInterrupt):
        seen = asyncio.run(run())
        if count is not None and seen < count:
            click.echo(f"only {seen} of {count} records within {timeout}s", err=True)
            sys.exit(1)


@click.command()
@click.argument("target")
@click.option("--dead-letters", is_flag=True, help="Also print the target's dead letters.")
@_follow_options
def subscribe(target: str, dead_letters: bool, from_beginning: bool, count: int | None,
              timeout: float | None, bootstrap: str) -> None:
    """Print TARGET's results as JSON lines with at least "id" and "payload".

    TARGET is a deployed topology's name or a topic.

    Example: streamcompose subscribe digits --from-beginning --count 10
    """
    topics = resolve_topics(target)
    _follow([topics.output, topics.dlq] if dead_letters else [topics.output],
            from_beginning, count, timeout, bootstrap)


@click.command()
@click.argument("name")
@click.argument("agent")
@_follow_options
def inspect(name: str, agent: str, from_beginning: bool, count: int | None,
            timeout: float | None, bootstrap: str) -> None:
    """Print what AGENT of deployment NAME writes (for a router: the requests it routes).

    Example: streamcompose inspect ocr detect --from-beginning --count 3
    """
    units = Deployment(name).manifest()["agents"]
    spec = next((a for a in units if a["name"] == agent), None)
    group = next((u for u in units if agent in u.get("members", {})), None)
    if group is not None:
        topics = group["members"][agent]["topics"]
        if not topics:
            raise click.BadParameter(
                f"agent {agent!r} runs in the co-located group {group['name']!r}, which "
                f"passes its results in memory ({', '.join(group['members'][agent]['in_memory'])}"
                "); set `inspect: true` on the group to also write them to their topics",
                param_hint="AGENT")
    elif spec is None:
        raise click.BadParameter(f"deployment {name!r} has no agent {agent!r}",
                                 param_hint="AGENT")
    else:
        topics = spec.get("outputs") or spec.get("edges") or [spec["output"]]
    _follow(topics, from_beginning, count, timeout, bootstrap)


@click.command()
@click.argument("target")
@click.option("--data", "-d", required=True, help="The request payload, a JSON object.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the result; also the request's deadline.")
@click.option("--priority", default=None,
              help="A priority lane of the target (e.g. high, low) or 0-9, 9 the most urgent.")
@bootstrap_option
def infer(target: str, data: str, timeout: float, priority: str | None, bootstrap: str) -> None:
    """Send one request to TARGET and print its result as JSON.

    Example: streamcompose infer digits --data '{"pixels": [0, 0, 5, 13, ...]}'
    """
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    if not isinstance(payload, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--data")
    _check_priority(target, priority)

    async def run() -> dict[str, Any]:
        async with Client(bootstrap) as client:
            return (await client.infer(target, payload, timeout,
                                       priority=priority)).to_json()

    click.echo(json.dumps(asyncio.run(run())))


COMMANDS = [publish, subscribe, inspect, infer]
