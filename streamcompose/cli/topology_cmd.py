"""``streamcompose validate`` and ``streamcompose graph``: check and draw a topology file.

Example::

    $ streamcompose validate topologies/ocr_cascade.yaml
    ok: topology 'ocr' (topologies/ocr_cascade.yaml): 3 agents (det, cls, rec); ...
    $ streamcompose graph topologies/ocr_cascade.yaml --format png
    ocr.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from streamcompose.errors import StreamComposeError
from streamcompose.runtimes import check_models
from streamcompose.topology import Topology, load_topology
from streamcompose.topology.graph import to_dot, to_mermaid, to_png

file_argument = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))


def load_checked(file: Path) -> Topology:
    """The topology in FILE with its models checked. Model files are opened and python
    entrypoints imported, never instantiated nor called: no user code runs here."""
    return check_models(load_topology(file))


def summary(t: Topology, file: Path | str) -> str:
    """The one-line report of a valid topology.

    >>> from streamcompose.topology.model import INPUT, AgentSpec
    >>> summary(Topology(name="demo", agents=(AgentSpec(name="inc", inputs=(INPUT,)),)),
    ...         "demo.yaml")
    "ok: topology 'demo' (demo.yaml): 1 agent (inc); input demo.in -> output demo.out"
    """
    n = len(t.agents)
    groups = "".join(f"; co-located in one process: {g.name} ({', '.join(g.members)})"
                     for g in t.colocate)
    return (f"ok: topology {t.name!r} ({file}): {n} agent{'s' if n != 1 else ''} "
            f"({', '.join(t.order())}); input {t.input_topic} -> output {t.output_topic}"
            + groups)


def report(t: Topology | None, error: StreamComposeError | None = None) -> dict:
    """The ``--json`` document of ``validate``: always the same keys.

    >>> report(None, StreamComposeError("boom"))["error"]
    {'message': 'boom', 'file': None, 'line': None, 'key': None}
    """
    return {
        "ok": error is None,
        "name": t.name if t else None,
        "agents": list(t.order()) if t else [],
        "colocate": {g.name: list(g.members) for g in t.colocate} if t else {},
        "topics": list(t.topics()) if t else [],
        "input": t.input_topic if t else None,
        "output": t.output_topic if t else None,
        "dlq": t.dlq_topic if t else None,
        "error": None if error is None else {
            "message": error.message,
            "file": getattr(error, "file", None),
            "line": getattr(error, "line", None),
            "key": getattr(error, "key", None),
        },
    }


@click.command()
@file_argument
@click.option("--json", "as_json", is_flag=True,
              help='Print {"ok", "name", "agents", "topics", "error": {"message", "file", '
                   '"line", "key"}} on stdout instead of a sentence.')
def validate(file: Path, as_json: bool) -> None:
    """Check a topology file: keys, values, references, cycles, model files, field flow.

    Model files are opened and python entrypoints imported to check them, never
    instantiated nor called. Exits 0 when FILE is valid and 1 when it is not, naming
    file:line: key: problem.

    \b
    Example:
        $ streamcompose validate topologies/ocr_cascade.yaml
        $ streamcompose validate topologies/ocr_cascade.yaml --json
    """
    if not as_json:
        click.echo(summary(load_checked(file), file))
        return
    try:
        t = load_checked(file)
    except StreamComposeError as exc:
        click.echo(json.dumps(report(None, exc)))
        sys.exit(1)
    click.echo(json.dumps(report(t)))


@click.command()
@file_argument
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "png"]),
              default="mermaid", show_default=True, help="What to draw.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write; mermaid and dot go to stdout without it, png to "
                   "NAME.png in the current directory.")
def graph(file: Path, fmt: str, output: Path | None) -> None:
    """Draw the inference graph of a topology file: topics, agents and the edges between.

    Edges are labelled with the topic carrying the data; dashed edges lead to the
    dead-letter topic. PNG is drawn with Pillow (no Graphviz needed). When a file is
    written its path is printed.

    \b
    Example:
        $ streamcompose graph topologies/ocr_cascade.yaml
        $ streamcompose graph topologies/ocr_cascade.yaml --format dot | dot -Tsvg > g.svg
        $ streamcompose graph topologies/ocr_cascade.yaml --format png -o ocr.png
    """
    t = load_checked(file)
    if fmt == "png":
        target = output or Path.cwd() / f"{t.name}.png"
        try:
            click.echo(to_png(t, target))
        except OSError as exc:
            raise click.FileError(str(target), hint=exc.strerror or str(exc)) from exc
        return
    text = to_mermaid(t) if fmt == "mermaid" else to_dot(t)
    if output is None:
        click.echo(text)
        return
    try:
        output.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise click.FileError(str(output), hint=exc.strerror or str(exc)) from exc
    click.echo(output)


COMMANDS = [validate, graph]
