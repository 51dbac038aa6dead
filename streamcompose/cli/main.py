"""Entry point of the ``streamcompose`` command.

Exit codes: 0 on success, 1 when the operation failed (a :class:`StreamComposeError`),
2 on a usage error (click's own convention).

Example::

    $ streamcompose --help
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from streamcompose.errors import StreamComposeError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def default_bootstrap() -> str:
    """The broker to use when ``--bootstrap`` is not given.

    >>> isinstance(default_bootstrap(), str)
    True
    """
    return os.environ.get("STREAMCOMPOSE_BOOTSTRAP") or DEFAULT_BOOTSTRAP


def use_kafka_config(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """A click callback: name the Kafka client properties file for this process and the
    workers it starts (``$STREAMCOMPOSE_KAFKA_CONFIG``); a wrong file is a usage error."""
    if value is None:
        return
    from streamcompose.kafka.security import CONFIG_ENV, load_security

    os.environ[CONFIG_ENV] = os.path.abspath(value)
    try:
        load_security()
    except StreamComposeError as exc:
        raise click.BadParameter(str(exc)) from None


kafka_config_option = click.option(
    "--kafka-config", type=click.Path(exists=True, dir_okay=False), expose_value=False,
    callback=use_kafka_config, is_eager=True,
    help="Kafka client properties (security.protocol, sasl.*, ssl.*).  "
         "[default: $STREAMCOMPOSE_KAFKA_CONFIG]")


def bootstrap_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--bootstrap HOST:PORT`` and ``--kafka-config FILE``, for commands that talk to Kafka."""
    return kafka_config_option(click.option(
        "--bootstrap", default=default_bootstrap, show_default="$STREAMCOMPOSE_BOOTSTRAP or "
        + DEFAULT_BOOTSTRAP, help="Kafka bootstrap server(s), HOST:PORT[,HOST:PORT...].",
    )(command))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamcompose")
@kafka_config_option
def cli() -> None:
    """Compose machine-learning models over Kafka."""


def _register() -> None:
    from streamcompose.cli import (
        broker_cmd,
        cluster_cmd,
        deploy_cmd,
        dlq_cmd,
        io_cmd,
        lifecycle_cmd,
        observe_cmd,
        render_cmd,
        replay_cmd,
        topology_cmd,
        trace_cmd,
    )

    for module in (broker_cmd, deploy_cmd, io_cmd, topology_cmd, cluster_cmd, render_cmd,
                   lifecycle_cmd, replay_cmd, dlq_cmd, observe_cmd, trace_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors become a message on stderr and exit code 1."""
    _register()
    try:
        code = cli.main(args=argv, prog_name="streamcompose", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except StreamComposeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
