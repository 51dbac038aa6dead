"""``streamcompose deploy | status | stop``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from streamcompose.cli.main import bootstrap_option
from streamcompose.deploy import deploy as deploy_topology
from streamcompose.deploy import set_weights as change_weights
from streamcompose.deploy import status as deployment_status
from streamcompose.deploy import stop as stop_deployment
from streamcompose.deploy.registry import check_name
from streamcompose.errors import DeploymentError


def plain_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A click callback: a deployment name must be a plain name (usage error if not)."""
    if value is None:
        return None
    try:
        return check_name(value)
    except DeploymentError as exc:
        raise click.BadParameter(str(exc)) from None


def json_object(_ctx: click.Context, _param: click.Parameter, value: str | None
                ) -> dict[str, Any] | None:
    """A click callback: a JSON object given on the command line (usage error if not)."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"expected a JSON object, got {value!r}")
    return parsed


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@bootstrap_option
@click.option("--name", default=None, callback=plain_name,
              help="Deploy under this name instead of the file's.")
@click.option("--timeout", default=180.0, show_default=True,
              help="Seconds to wait for every worker to join its group.")
@click.option("--agents", default=None,
              help="Run only these agents (comma separated) on this host; another host "
                   "deploys the rest against the same cluster.")
@click.option("--json", "as_json", is_flag=True, help="Print the deployment as JSON.")
def deploy(file: str, bootstrap: str, name: str | None, timeout: float, agents: str | None,
           as_json: bool) -> None:
    """Create the topics of FILE, start its agents and wait until all have joined.

    Example: streamcompose deploy topologies/ocr_cascade.yaml --agents detect,recognise
    """
    def joined(worker: str) -> None:
        if not as_json:
            click.echo(f"  joined: {worker}", err=True)

    hosted = [a.strip() for a in agents.split(",") if a.strip()] if agents is not None else None
    m = deploy_topology(file, bootstrap, name, timeout=timeout, progress=joined, agents=hosted)
    if as_json:
        click.echo(json.dumps(m))
        return
    here = [a for a in m["agents"] if a["here"]]
    workers = sum(a["replicas"] for a in here)
    click.echo(f"deployed {m['name']}: {len(here)} of {len(m['agents'])} agents here, "
               f"{workers} workers")
    click.echo(f"input:  {m['input']}\noutput: {m['output']}\ndead letters: {m['dlq']}")


@click.command()
@click.argument("name", required=False, callback=plain_name)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--no-lag", is_flag=True, help="Skip asking the broker for consumer lag.")
def status(name: str | None, as_json: bool, no_lag: bool) -> None:
    """Agents, worker processes, restarts and consumer lag of NAME (or of all deployments).

    Besides this host's workers, it lists every member of each agent's consumer group as
    the broker sees it (workers on other hosts too): client id, host, partitions, and
    the lag per partition. Exits 1 when a worker or the supervisor here is not alive.

    Example: streamcompose status ocr --json
    """
    found = deployment_status(name, with_lag=not no_lag)
    healthy = all(d["supervisor"]["alive"] and all(w["alive"] for a in d["agents"]
                                                   for w in a["workers"]) for d in found)
    if as_json:
        click.echo(json.dumps(found if name is None else found[0]))
    else:
        if not found:
            click.echo("no deployments")
        for d in found:
            sup = "alive" if d["supervisor"]["alive"] else "DEAD"
            click.echo(f"{d['name']} ({d['file']}) on {d['bootstrap']}, supervisor "
                       f"{d['supervisor']['pid']} {sup}")
            click.echo(f"  {'agent':<16}{'replica':>8}{'pid':>9}  {'status':<10}{'restarts':>9}"
                       f"{'metrics':>9}{'lag':>8}  version")
            upgrading = d.get("upgrade") or {}
            if upgrading.get("state") not in (None, "done", "failed"):
                click.echo(f"  {upgrading['kind']} of {upgrading['agent']} under way: "
                           f"{upgrading['from_version']} -> {upgrading['to_version']}, "
                           f"{upgrading['state']}")
            for a in d["agents"]:
                if not a["workers"]:
                    where = "no worker here" if a["here"] else "not on this host"
                    click.echo(f"  {a['name']:<16}{'-':>8}{'-':>9}  {where:<28}"
                               f"{'' if a['lag'] is None else a['lag']:>8}")
                for i, w in enumerate(a["workers"]):
                    state = w["status"] if w["alive"] else "dead"
                    lag = "" if a["lag"] is None or i else a["lag"]
                    click.echo(f"  {a['name']:<16}{w['replica']:>8}{w['pid'] or '-':>9}  "
                               f"{state:<10}{w['restarts']:>9}{w['metrics_port'] or '-':>9}"
                               f"{lag:>8}  {w['version'] or '-'}")
                _print_cluster(a)
                if a["colocated"]:
                    click.echo(f"  {'':<16}co-located: {', '.join(a['colocated'])}")
    if not healthy:
        sys.exit(1)


def _print_cluster(agent: dict) -> None:
    """The agent's group members on every host, lag per partition, autoscaling."""
    if agent.get("members") == []:
        click.echo(f"    no worker on any host is in its consumer group "
                   f"({agent.get('group_state', 'Empty')})")
    for member in agent.get("members", []):
        where = "here" if member["local"] else "remote"
        click.echo(f"    member {member['client_id']} on {member['host']} ({where}): "
                   f"{', '.join(member['partitions']) or 'no partitions'}")
    lagging = {p: n for p, n in agent.get("partition_lag", {}).items() if n}
    if lagging:
        click.echo("    lag " + ", ".join(f"{p}={n}" for p, n in lagging.items()))
    scaling = agent.get("autoscale")
    if scaling:
        last = scaling["decisions"][-1] if scaling["decisions"] else None
        change = (f"; last: {last['direction']} {last['from']} -> {last['to']} at lag "
                  f"{last['lag']}" if last else "")
        click.echo(f"    autoscale {scaling['min']}-{scaling['max']} workers, "
                   f"{scaling['lag_per_replica']} lag each: {scaling['workers']} now{change}")


@click.command()
@click.argument("name", callback=plain_name)
def stop(name: str) -> None:
    """Stop NAME's workers: each drains its batch in flight, commits and exits.

    Example: streamcompose stop ocr
    """
    was_running = stop_deployment(name)
    click.echo(f"stopped {name}" if was_running else f"{name} was not running; cleaned up")


@click.command("set-weights")
@click.argument("name", callback=plain_name)
@click.argument("agent")
@click.argument("weights", nargs=-1, required=True)
def set_weights(name: str, agent: str, weights: tuple[str, ...]) -> None:
    """Change the variant weights of traffic split AGENT in deployment NAME while it runs.

    Example: streamcompose set-weights ab ab model_v1=90 model_v2=10
    """
    parsed = {}
    for item in weights:
        variant, sep, value = item.partition("=")
        try:
            parsed[variant] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise click.BadParameter(f"{item!r} is not VARIANT=WEIGHT", param_hint="WEIGHTS")
    sent = change_weights(name, agent, parsed)
    click.echo(f"{name}/{agent}: " + ", ".join(f"{v}={w:g}" for v, w in sent.items()))


COMMANDS = [deploy, status, stop, set_weights]
