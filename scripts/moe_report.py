"""Deploy the mixture of experts, stream the held-out samples through it and compare.

Usage::

    python scripts/moe_report.py --bootstrap 127.0.0.1:9092 [--samples 750] \\
        [--name NAME] [--chunk 50] [--timeout 120] [--json]

Deploys ``topologies/moe.yaml`` under a unique name (in ``$STREAMCOMPOSE_HOME``),
publishes the held-out samples (``topologies/models/moe_test.npz``, from
``scripts/train_moe.py``) with ``Client.infer``, the first alone and then concurrently
in chunks, and prints the accuracy, on the whole test set and region by region, of each
expert alone, of the gate at telling the regions apart, of the mixture through Kafka
and of the same mixture computed directly (``topologies/moe/direct.py``: onnxruntime,
then the top-k routing and the gate-weighted mean in numpy). It counts the streamed
labels equal to the direct ones (all must be) and the requests routed to the same
experts, gives the largest differences of probabilities and gate weights, and each
expert's load (the requests it got, read from the results' ``gate_weights``), then
stops the deployment. ``--json`` prints a machine-readable summary instead.

Exit status: 0 when every streamed label equals the direct one, 1 otherwise, 2 on a
usage or deployment error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
sys.path.insert(0, str(TOPOLOGIES))

from moe import direct  # noqa: E402
from moe.data import REGIONS  # noqa: E402
from reporting import (  # noqa: E402
    Payload,
    Summary,
    deploy_and_stream,
    labels_and_proba,
    print_footer,
    print_rows,
)
from reporting import main as report_main  # noqa: E402

from streamcompose.topology import Topology, load_topology  # noqa: E402

TOPOLOGY = TOPOLOGIES / "moe.yaml"
GATE, COMBINE = "gate", "combine"


def checked_top_k(topology: Topology) -> int:
    """The gate's ``top_k``, once the topology is checked to route to, and combine, the
    experts of :data:`moe.direct.EXPERTS` in that order, as the direct computation does."""
    gate, combine = topology.agent(GATE), topology.agent(COMBINE)
    if gate.router is None or gate.router.kind != "route" or gate.router.capacity is not None:
        raise ValueError(f"agent {GATE!r} of {topology.source} must be a mixture-of-experts "
                         "router without capacity")
    if gate.router.targets != direct.EXPERTS or combine.inputs != direct.EXPERTS:
        raise ValueError(f"{topology.source} must route to and combine "
                         f"{', '.join(direct.EXPERTS)} in that order")
    if combine.join is None or combine.join.strategy != "gate_weighted":
        raise ValueError(f"agent {COMBINE!r} of {topology.source} must be a gate_weighted "
                         "joiner")
    return gate.router.top_k


def streamed_routing(results: list[Payload]) -> tuple[np.ndarray, np.ndarray]:
    """The experts each result says its request went to (bool [N,E]) and their gate
    weights (float64 [N,E], 0 for the others), read from its ``gate_weights``."""
    chosen = np.array([[e in r["gate_weights"] for e in direct.EXPERTS] for r in results])
    weights = np.array([[float(r["gate_weights"].get(e, 0.0)) for e in direct.EXPERTS]
                        for r in results])
    return chosen, weights


def accuracies(labels: np.ndarray, truth: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """Accuracy on all samples (``all``) and on each region's (by region name; a region
    without samples is left out)."""
    out = {"all": direct.accuracy(labels, truth)}
    for number, name in enumerate(REGIONS):
        mine = region == number
        if mine.any():
            out[name] = direct.accuracy(labels[mine], truth[mine])
    return out


def report(args: argparse.Namespace) -> Summary:
    """Deploy, stream, compute directly and compare; returns the summary."""
    topology = load_topology(TOPOLOGY)
    top_k = checked_top_k(topology)
    test = direct.load_test()
    x, truth, region = (a[:args.samples] for a in (test.x, test.y, test.region))
    scores = direct.gate_scores(x)
    probas = direct.expert_probabilities(x)
    expected = direct.moe(scores, probas, top_k)

    name, results, elapsed = deploy_and_stream(TOPOLOGY, topology, args,
                                               [{"features": row.tolist()} for row in x])
    labels, proba = labels_and_proba(results)
    chosen, weights = streamed_routing(results)
    experts = {e: accuracies(probas[e].argmax(axis=1), truth, region) for e in direct.EXPERTS}
    streamed = accuracies(labels, truth, region)
    return {
        "name": name, "samples": len(truth), "top_k": top_k,
        "experts": experts,
        "gate_regions": accuracies(scores.argmax(axis=1), region, region),
        "direct": accuracies(expected.labels, truth, region),
        "streamed": streamed,
        "agree": int(np.sum(labels == expected.labels)),
        "max_proba_diff": float(np.abs(proba - expected.proba).max()),
        "same_experts": int(np.sum((chosen == expected.chosen).all(axis=1))),
        "max_weight_diff": float(np.abs(weights - expected.weights).max()),
        "load": direct.expert_load(chosen), "direct_load": direct.expert_load(expected.chosen),
        "partial": sum("missing" in r for r in results),
        "beats_every_expert": all(streamed["all"] > a["all"] for a in experts.values()),
        "result_fields": sorted({f for r in results for f in r}),
        "elapsed_s": round(elapsed, 3),
    }


def print_table(summary: Summary) -> None:
    """The summary as a table of accuracies and the comparison lines."""
    n = summary["samples"]
    experts = ", ".join(summary["experts"])
    print(f"\n{summary['name']} (gate -> top {summary['top_k']} of {experts} -> "
          f"gate-weighted mean) on {n} held-out samples\n")
    rows = [(f"{e} alone (direct)", acc) for e, acc in summary["experts"].items()]
    rows += [("gate: region (direct)", summary["gate_regions"]),
             ("mixture, direct (numpy)", summary["direct"]),
             ("mixture through Kafka", summary["streamed"])]

    def cells(acc: dict[str, float]) -> str:
        overall = f"{acc['all']:.4f} ({round(acc['all'] * n)}/{n})"
        return f"{overall:<18}" + "".join(
            f"  {acc[r]:8.4f}" if r in acc else f"  {'-':>8}" for r in REGIONS)

    print_rows(rows, f"{'accuracy':<18}" + "".join(f"  region {r}" for r in REGIONS), cells)
    print(f"\nstreamed labels equal to the direct ones: {summary['agree']}/{n} "
          f"(max |proba difference| {summary['max_proba_diff']:.2e})")
    print(f"requests routed to the same experts: {summary['same_experts']}/{n} "
          f"(max |gate weight difference| {summary['max_weight_diff']:.2e})")
    load = ", ".join(f"{e} {k} ({summary['direct_load'][e]})"
                     for e, k in summary["load"].items())
    print(f"expert load (requests each got, from the results' gate_weights; direct in "
          f"brackets):\n  {load}")
    print(f"mixture better than every expert alone: "
          f"{'yes' if summary['beats_every_expert'] else 'no'}; partial results "
          f"(an expert missing): {summary['partial']}")
    print_footer(summary)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the report; return the exit status."""
    return report_main(__doc__.splitlines()[0], report, print_table, argv,
                       samples_help="held-out samples to send (default: all 750)")


if __name__ == "__main__":
    sys.exit(main())
