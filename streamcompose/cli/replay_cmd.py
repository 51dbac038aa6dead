"""``streamcompose replay | shadow-report``: a candidate model, or a shadow, against what
the live agent answered to the same recorded requests."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from streamcompose.cli.deploy_cmd import json_object, plain_name
from streamcompose.kafka.ranges import Position, parse_position
from streamcompose.replay import Selection, replay, shadow_report
from streamcompose.replay.report import Report


def position_option(_ctx: click.Context, _param: click.Parameter, value: str | None
              ) -> Position | None:
    if value is None:
        return None
    try:
        return parse_position(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _agent_candidate(_ctx: click.Context, _param: click.Parameter, value: str
                     ) -> tuple[str, str]:
    agent, sep, candidate = value.partition("=")
    if not sep or not agent or not candidate:
        raise click.BadParameter(f"{value!r} is not AGENT=CANDIDATE (a model file or "
                                 "module:callable)")
    return agent, candidate


def _selection_options(command: Any) -> Any:
    for option in reversed([
            click.option("--from", "start", callback=position_option, metavar="TIME|OFFSET",
                         help="First request: an offset (in every partition), an ISO time "
                              "or an age (10m, 2h). Default: the oldest kept."),
            click.option("--to", "end", callback=position_option, metavar="TIME|OFFSET",
                         help="Stop before this offset or time. Default: now."),
            click.option("--limit", type=click.IntRange(min=1), default=None,
                         help="At most N requests (the earliest)."),
            click.option("--field", "fields", multiple=True,
                         help="A field to compare (repeatable). Default: the fields the "
                              "agent produced."),
            click.option("--tolerance", type=float, default=1e-6, show_default=True,
                         help="Numbers this close agree."),
            click.option("--json", "as_json", is_flag=True,
                         help="Print the report as JSON, per-request differences included."),
            click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                         default=None, help="Write the per-request differences here, one "
                                            "JSON object per line."),
            click.option("--fail-below", type=click.FloatRange(0, 1), default=None,
                         help="Exit 1 when the agreement is below this rate (0..1)."),
            click.option("--no-progress", is_flag=True, help="No progress bars.")]):
        command = option(command)
    return command


def _bar(disabled: bool) -> Any:
    return partial(_tqdm, disabled)


def _tqdm(disabled: bool, desc: str, total: int) -> tqdm:
    return tqdm(desc=desc, total=total, unit="req", file=sys.stderr, disable=disabled,
                leave=False)


def _show(report: Report, as_json: bool, out: Path | None, fail_below: float | None) -> None:
    if out is not None:
        with out.open("w", encoding="utf-8") as f:
            for d in report.differences:
                f.write(json.dumps(d.to_json()) + "\n")
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo(report.render())
        if out is not None:
            click.echo(f"{len(report.differences)} per-request differences written to {out}")
    if fail_below is not None and (report.agreement or 0.0) < fail_below:
        click.echo(f"agreement {report.agreement} is below {fail_below}", err=True)
        sys.exit(1)


@click.command("replay")
@click.argument("name", callback=plain_name)
@click.option("--agent", "agent_candidate", required=True, callback=_agent_candidate,
              metavar="AGENT=CANDIDATE",
              help="The live agent and the candidate: a model file (.onnx, .pt) or "
                   "module:callable.")
@click.option("--options", callback=json_object, default=None, metavar="JSON",
              help="The candidate model's options (default: the live agent's, when the "
                   "runtime is the same).")
@click.option("--keep", is_flag=True, help="Keep the side deployment and its topics.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Feed the candidate at most N requests a second (default: all at once, "
                   "so its latency includes the queue of the whole replay).")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for the candidate's next answer.")
@_selection_options
def replay_command(name: str, agent_candidate: tuple[str, str], options: dict[str, Any] | None,
                   keep: bool, rate: float | None, timeout: float, start: Position | None,
                   end: Position | None,
                   limit: int | None, fields: tuple[str, ...], tolerance: float,
                   as_json: bool, out: Path | None, fail_below: float | None,
                   no_progress: bool) -> None:
    """Run the requests AGENT of deployment NAME received through a candidate model in a
    temporary side deployment, and compare its answers with the live agent's.

    The requests are read from the agent's input topics (nothing is published on the
    live path) and matched by request id. The report gives the agreement, the labels that
    flipped and a confusion table (classifiers), numeric differences, the latency of both
    and the requests only one side answered.

    Example: streamcompose replay digits --agent cnn=models/digits_cnn_v2.pt --limit 500
    """
    agent, candidate = agent_candidate
    sel = Selection(start, end, limit, fields, tolerance)
    report = replay(name, agent, candidate, sel, options=options, keep=keep, rate=rate,
                    timeout=timeout, bar=_bar(no_progress))
    _show(report, as_json, out, fail_below)


@click.command("shadow-report")
@click.argument("name", callback=plain_name)
@click.argument("agent")
@_selection_options
def shadow_report_command(name: str, agent: str, start: Position | None,
                          end: Position | None, limit: int | None, fields: tuple[str, ...],
                          tolerance: float, as_json: bool, out: Path | None,
                          fail_below: float | None, no_progress: bool) -> None:
    """Compare what shadow AGENT of deployment NAME answered with what its primary
    answered to the same requests (AGENT: the shadow, or a shadow router with one).

    Example: streamcompose shadow-report mirror model_v2 --from 1h --json
    """
    sel = Selection(start, end, limit, fields, tolerance)
    _show(shadow_report(name, agent, sel, bar=_bar(no_progress)), as_json, out, fail_below)


COMMANDS = [replay_command, shadow_report_command]
