"""Entry point of the ``streamcompose`` command.

Exit codes: 0 on success, 1 when the operation failed (a :class:`StreamComposeError`),
2 on a usage error (click's own convention).

Example::

    $ streamcompose --help
"""

from __future__ import annotations

import os
import sys

import click

from streamcompose.errors import StreamComposeError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def default_bootstrap() -> str:
    """The broker to use when ``--bootstrap`` is not given.

    >>> isinstance(default_bootstrap(), str)
    True
    """
    return os.environ.get("STREAMCOMPOSE_BOOTSTRAP") or DEFAULT_BOOTSTRAP


bootstrap_option = click.option(
    "--bootstrap", default=default_bootstrap, show_default="$STREAMCOMPOSE_BOOTSTRAP or "
    + DEFAULT_BOOTSTRAP, help="Kafka bootstrap server, HOST:PORT.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamcompose")
def cli() -> None:
    """Compose machine-learning models over Kafka."""


def _register() -> None:
    from streamcompose.cli import (
        broker_cmd,
        deploy_cmd,
        io_cmd,
        lifecycle_cmd,
        topology_cmd,
        trace_cmd,
    )

    for module in (broker_cmd, deploy_cmd, io_cmd, topology_cmd, lifecycle_cmd, trace_cmd):
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
