"""``streamcompose render grafana | prometheus`` and ``streamcompose top``: observing a
deployment with Grafana and Prometheus, or without them.

Example::

    $ streamcompose render prometheus digits -o prometheus.yml
    $ prometheus --config.file=prometheus.yml
    $ streamcompose render grafana digits -o digits-dashboard.json
    $ streamcompose top digits
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import click

from streamcompose.cli.deploy_cmd import plain_name
from streamcompose.cli.render_cmd import render
from streamcompose.deploy import status as deployment_status
from streamcompose.deploy.registry import Deployment
from streamcompose.errors import DeploymentError
from streamcompose.observe.dashboard import dashboard_json
from streamcompose.observe.prometheus_config import scrape_config
from streamcompose.observe.scrape import Sample, read_metrics
from streamcompose.observe.top import summarize, table

output_option = click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                             default=None, help="Write to this file instead of stdout.")


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@render.command()
@click.argument("name", required=False, callback=plain_name)
@output_option
def grafana(name: str | None, output: Path | None) -> None:
    """The Grafana dashboard JSON, its topology variable starting at NAME (any deployed
    topology without NAME: the file dashboards/streamcompose.json).

    Example: streamcompose render grafana digits -o digits-dashboard.json
    """
    _emit(dashboard_json(name), output)


@render.command()
@click.argument("name", callback=plain_name)
@click.option("--interval", default="15s", show_default=True,
              help="Scrape interval, a Prometheus duration.")
@output_option
def prometheus(name: str, interval: str, output: Path | None) -> None:
    """A Prometheus configuration scraping every worker of deployment NAME; it follows
    restarted workers (file service discovery), so write it once.

    Example: streamcompose render prometheus digits -o prometheus.yml
    """
    deployment = Deployment(name)
    deployment.manifest()  # raises when NAME is not deployed
    _emit(scrape_config(name, deployment.dir, interval), output)


def _scrape(name: str) -> dict[str, list[list[Sample]]]:
    """Agent -> the samples of each of its workers (empty where unreadable)."""
    found: dict[str, list[list[Sample]]] = {}
    for agent in deployment_status(name, with_lag=False)[0]["agents"]:
        found[agent["name"]] = []
        for worker in agent["workers"]:
            samples: list[Sample] = []
            if worker["alive"] and worker["metrics_port"]:
                with contextlib.suppress(DeploymentError):  # starting or stopping: not up
                    samples = read_metrics(worker["metrics_port"])
            found[agent["name"]].append(samples)
    return found


@click.command()
@click.argument("name", callback=plain_name)
@click.option("--interval", default=2.0, show_default=True,
              help="Seconds between refreshes (and between the two scrapes of --once).")
@click.option("--once", is_flag=True, help="Print one table (or JSON document) and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (implies --once).")
def top(name: str, interval: float, once: bool, as_json: bool) -> None:
    """A live table of deployment NAME's agents from their workers' metrics: rates,
    inference latency, batch size, queue time, lag, errors, restarts and drift.

    Exits 1 when a worker cannot be read with --once.

    Example: streamcompose top digits --once --json
    """
    before, started = _scrape(name), time.monotonic()
    while True:
        time.sleep(interval)
        after, now = _scrape(name), time.monotonic()
        rows = summarize(before, after, now - started)
        if as_json:
            click.echo(json.dumps({"name": name, "interval_s": round(now - started, 3),
                                   "agents": [r.to_json() for r in rows]}))
        elif once:
            click.echo(table(name, rows))
        else:
            click.clear()
            click.echo(table(name, rows) + f"\n(every {interval:g} s; Ctrl-C to quit)")
        if once or as_json:
            if any(r.up < r.workers for r in rows):
                raise SystemExit(1)
            return
        before, started = after, now


COMMANDS = [top]
