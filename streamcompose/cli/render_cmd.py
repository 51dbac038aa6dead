"""``streamcompose render k8s | compose``: a topology as Kubernetes manifests (KEDA
autoscaling included) or as a docker compose file."""

from __future__ import annotations

from pathlib import Path

import click

from streamcompose.render.common import RenderOptions, dump, dump_all
from streamcompose.topology import load_topology

image_option = click.option("--image", required=True,
                            help="The streamcompose image (docker/: a cpu or cuda build).")
base_dir_option = click.option("--base-dir", default="/app/topologies", show_default=True,
                               help="Folder in the image that model paths and python "
                                    "modules resolve against.")


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """KEY=VALUE options as a mapping (a usage error otherwise)."""
    pairs = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        pairs[key] = value
    return pairs


def _toleration(text: str) -> dict[str, str]:
    """``KEY[=VALUE]:EFFECT`` as a toleration.

    >>> _toleration("nvidia.com/gpu:NoSchedule")
    {'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'}
    >>> _toleration("pool=gpu:NoExecute")
    {'key': 'pool', 'operator': 'Equal', 'value': 'gpu', 'effect': 'NoExecute'}
    """
    spec, _, effect = text.rpartition(":")
    if not spec or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise click.BadParameter(f"{text!r} is not KEY[=VALUE]:EFFECT (EFFECT: NoSchedule, "
                                 "PreferNoSchedule or NoExecute)", param_hint="--gpu-toleration")
    key, sep, value = spec.partition("=")
    if sep:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


@click.group()
def render() -> None:
    """Render a topology for a cluster (k8s, compose), or the configuration of monitoring
    tools (grafana, prometheus); nothing is applied or started."""


@render.command("k8s")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@image_option
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write one file per object into this folder (default: stdout).")
@base_dir_option
@click.option("--kafka-secret", default=None,
              help="Secret with keys 'bootstrap' and 'client.properties' [<name>-kafka].")
@click.option("--models-claim", default=None,
              help="PersistentVolumeClaim mounted over the image's models folder.")
@click.option("--gpu-node-selector", multiple=True, metavar="KEY=VALUE",
              help="Node selector of device: cuda agents (repeatable).")
@click.option("--gpu-toleration", multiple=True, metavar="KEY[=VALUE]:EFFECT",
              help="Toleration of device: cuda agents (repeatable).")
@click.option("--keda-auth", default=None,
              help="KEDA TriggerAuthentication for the Kafka triggers (secured clusters).")
@click.option("--name", default=None, help="Render FILE under this topology name.")
def k8s(file: str, image: str, out_dir: str | None, base_dir: str, kafka_secret: str | None,
        models_claim: str | None, gpu_node_selector: tuple[str, ...],
        gpu_toleration: tuple[str, ...], keda_auth: str | None, name: str | None) -> None:
    """Kubernetes manifests of FILE: ConfigMap, topics Job, per agent a Deployment, a
    PodDisruptionBudget and (with autoscale:) a KEDA ScaledObject.

    Example: streamcompose render k8s topologies/digits_cascade.yaml --image sc:cpu -o k8s/
    """
    from streamcompose.render.k8s import render_k8s

    options = RenderOptions(
        image=image, base_dir=base_dir, models_claim=models_claim, kafka_secret=kafka_secret,
        gpu_node_selector=_pairs(gpu_node_selector, "--gpu-node-selector"),
        gpu_tolerations=tuple(_toleration(t) for t in gpu_toleration), keda_auth=keda_auth)
    objects = render_k8s(load_topology(file, name), options)
    if out_dir is None:
        click.echo(dump_all(objects), nl=False)
        return
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for i, obj in enumerate(objects):
        path = folder / f"{i:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        path.write_text(dump_all([obj]), encoding="utf-8")
    click.echo(f"wrote {len(objects)} objects to {folder}", err=True)


@render.command("compose")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@image_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the compose file here (default: stdout).")
@base_dir_option
@click.option("--models-volume", default=None,
              help="Host folder or volume mounted over the image's models folder.")
@click.option("--name", default=None, help="Render FILE under this topology name.")
def compose(file: str, image: str, output: str | None, base_dir: str,
            models_volume: str | None, name: str | None) -> None:
    """A docker compose file of FILE: Kafka (KRaft), a topics service, one service per
    agent.

    Example: streamcompose render compose topologies/digits_cascade.yaml --image sc:cpu
    """
    from streamcompose.render.compose import render_compose

    options = RenderOptions(image=image, base_dir=base_dir, models_claim=models_volume)
    text = dump(render_compose(load_topology(file, name), options))
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")


COMMANDS = [render]
