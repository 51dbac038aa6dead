"""``streamcompose upgrade | rollback``: change one agent's model on a running deployment."""

from __future__ import annotations

import json
from typing import Any

import click

from streamcompose.cli.deploy_cmd import json_object, plain_name
from streamcompose.deploy.upgrade import UPGRADE_TIMEOUT_S
from streamcompose.deploy.upgrade import rollback as rollback_agent
from streamcompose.deploy.upgrade import upgrade as upgrade_agent


def _reporter(as_json: bool) -> Any:
    def report(summary: dict[str, Any]) -> None:
        if not as_json:
            phases = ", ".join(f"{summary['agent']}-{r}: {p}"
                               for r, p in summary["replicas"].items())
            click.echo(f"  {summary['state']}: {phases}", err=True)
    return report


def _done(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{summary['agent']}: {summary['from_version']} -> {summary['to_version']} "
                   f"({summary['kind']}, {len(summary['replicas'])} replicas)")


timeout_option = click.option("--timeout", default=UPGRADE_TIMEOUT_S, show_default=True,
                              help="Seconds to wait for every replica to take over.")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the outcome as JSON.")


@click.command()
@click.argument("name", callback=plain_name)
@click.argument("agent")
@click.option("--path", type=click.Path(exists=True), default=None,
              help="The new model file (onnx or torch).")
@click.option("--entrypoint", default=None, help="The new module:callable.")
@click.option("--version", default=None,
              help="The new version's name (default: a hash of the model file).")
@click.option("--options", callback=json_object, default=None,
              help="JSON object merged over the model's options (null removes a key).")
@timeout_option
@json_option
def upgrade(name: str, agent: str, path: str | None, entrypoint: str | None,
            version: str | None, options: dict[str, Any] | None, timeout: float,
            as_json: bool) -> None:
    """Replace AGENT's model in the running deployment NAME, replica by replica.

    The new workers load and warm the model first; then each replica's old worker
    finishes and commits what it has, and its new worker takes over its partitions:
    no request is lost or (exactly-once) answered twice, and per-key order holds.
    A model that fails to load changes nothing.

    Example: streamcompose upgrade digits cnn --path /tmp/v2/digits_cnn.pt --version 2
    """
    if path is not None and entrypoint is not None:
        raise click.UsageError("give --path or --entrypoint, not both")
    if path is None and entrypoint is None and version is None and options is None:
        raise click.UsageError("nothing to change: give --path, --entrypoint, --version "
                               "or --options")
    _done(upgrade_agent(name, agent, path=path, entrypoint=entrypoint, version=version,
                        options=options, timeout=timeout, progress=_reporter(as_json)),
          as_json)


@click.command()
@click.argument("name", callback=plain_name)
@click.argument("agent")
@timeout_option
@json_option
def rollback(name: str, agent: str, timeout: float, as_json: bool) -> None:
    """Return AGENT of NAME to the model its last upgrade replaced, replica by replica.

    Example: streamcompose rollback digits cnn
    """
    _done(rollback_agent(name, agent, timeout=timeout, progress=_reporter(as_json)), as_json)


COMMANDS = [upgrade, rollback]
