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
from streamcompose.client import Client

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


@click.command()
@click.argument("target")
@click.option("--file", "-f", "source", type=click.File("r"), default="-", show_default=True,
              help="JSON lines, one event per line; '-' reads stdin.")
@bootstrap_option
def publish(target: str, source: IO[str], bootstrap: str) -> None:
    """Publish one event per JSON line to TARGET (a deployed topology's name or a topic).

    A line's "id" field, if any, becomes the request id. Prints one id per line.

    Example: echo '{"id": "r1", "pixels": [0, 3, 16]}' | streamcompose publish digits
    """
    events = list(_events(source))

    async def run() -> None:
        async with Client(bootstrap) as client:
            pending = []
            with tqdm(total=len(events), unit="event", file=sys.stderr,
                      disable=len(events) < PROGRESS_FROM) as bar:
                for _, event in events:
                    request_id = event.pop("id", None)
                    pending.append(await client.send(
                        target, event, None if request_id is None else str(request_id)))
                    bar.update()
                for request_id in await asyncio.gather(*pending):
                    click.echo(request_id)

    asyncio.run(run())


@click.command()
@click.argument("target")
@click.option("--from-beginning", is_flag=True, help="Read the topic from its start.")
@click.option("--count", "-n", type=int, default=None, help="Stop after N results.")
@click.option("--timeout", type=float, default=None,
              help="Stop after S seconds without a new result.")
@click.option("--dead-letters", is_flag=True, help="Also print the target's dead letters.")
@bootstrap_option
def subscribe(target: str, from_beginning: bool, count: int | None, timeout: float | None,
              dead_letters: bool, bootstrap: str) -> None:
    """Print TARGET's results as JSON lines with at least "id" and "payload".

    Example: streamcompose subscribe digits --from-beginning --count 10
    """
    async def run() -> int:
        seen = 0
        async with Client(bootstrap) as client:
            results = client.subscribe(target, from_beginning, dead_letters).__aiter__()
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
            click.echo(f"only {seen} of {count} results within {timeout}s", err=True)
            sys.exit(1)


@click.command()
@click.argument("target")
@click.option("--data", "-d", required=True, help="The request payload, a JSON object.")
@click.option("--timeout", type=float, default=30.0, show_default=True)
@bootstrap_option
def infer(target: str, data: str, timeout: float, bootstrap: str) -> None:
    """Send one request to TARGET and print its result as JSON.

    Example: streamcompose infer digits --data '{"pixels": [0, 0, 5, 13, ...]}'
    """
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    if not isinstance(payload, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--data")

    async def run() -> dict[str, Any]:
        async with Client(bootstrap) as client:
            return (await client.infer(target, payload, timeout)).to_json()

    click.echo(json.dumps(asyncio.run(run())))


COMMANDS = [publish, subscribe, infer]
