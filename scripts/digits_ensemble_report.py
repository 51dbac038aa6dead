"""Deploy a digits ensemble, stream the held-out digits through it and compare accuracies.

Usage::

    python scripts/digits_ensemble_report.py --bootstrap 127.0.0.1:9092 \\
        [--topology topologies/digits_ensemble.yaml] [--samples 450] [--name NAME] [--json]

Deploys the topology (``digits_ensemble.yaml``: soft vote, or ``digits_stacking.yaml``:
stacking meta-model) under a unique name, publishes the held-out digits
(``topologies/models/digits_test.npz``) with ``Client.infer``, concurrently in chunks,
and prints the accuracy of each member alone and of the same ensemble computed directly
in-process (``topologies/digits/direct.py``: onnxruntime and torch, then the numpy soft
vote with the joiner's ``weights``, or the meta-model, on the members' probabilities)
beside the ensemble's through Kafka. It counts the streamed labels equal to the direct
ones (all must be), says whether the ensemble is at least as accurate as its best
member, and stops the deployment. ``--json`` prints a machine-readable summary instead
of the table.

Exit status: 0 when every streamed label equals the direct one, 1 otherwise, 2 on a
usage or deployment error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "topologies"))

from digits import direct  # noqa: E402
from reporting import (  # noqa: E402
    Summary,
    deploy_and_stream,
    labels_and_proba,
    print_footer,
    print_rows,
)
from reporting import main as report_main  # noqa: E402

from streamcompose.topology import Topology, load_topology  # noqa: E402
from streamcompose.topology.model import JoinSpec  # noqa: E402

STRATEGIES = ("soft_vote", "stacking")


def ensemble_joiner(topology: Topology) -> tuple[str, JoinSpec]:
    """The name and join spec of the topology's sink joiner, checked to fuse the members
    of :data:`digits.direct.MEMBERS`, in that order, by a strategy this report computes."""
    joiners = [a for a in topology.agents if a.join is not None and topology.is_sink(a.name)]
    if len(joiners) != 1:
        raise ValueError(f"{topology.source} must end in one joiner, found "
                         f"{[a.name for a in joiners]}")
    (agent,) = joiners
    assert agent.join is not None
    if agent.inputs != direct.MEMBERS:
        raise ValueError(f"joiner {agent.name!r} fuses {', '.join(agent.inputs)}; this report "
                         f"knows the members {', '.join(direct.MEMBERS)} (in that order)")
    if agent.join.strategy not in STRATEGIES:
        raise ValueError(f"joiner {agent.name!r} uses {agent.join.strategy}; this report "
                         f"computes {' and '.join(STRATEGIES)}")
    return agent.name, agent.join


def direct_ensemble(join: JoinSpec, probas: dict[str, np.ndarray]) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """The ensemble's labels and probabilities computed in-process from the members' (the
    soft vote weighted as the joiner's ``weights`` say)."""
    if join.strategy == "stacking":
        assert join.model is not None and join.model.path is not None
        return direct.stack(probas, join.model.path)
    proba = direct.soft_vote(probas, join.weights)
    return proba.argmax(axis=1), proba


def report(args: argparse.Namespace) -> Summary:
    """Deploy, stream, compute directly and compare; returns the summary."""
    topology = load_topology(args.topology)
    joiner, join = ensemble_joiner(topology)
    with np.load(direct.MODELS_DIR / "digits_test.npz") as data:
        pixels, truth = data["X"][:args.samples], data["y"][:args.samples]
    probas = direct.member_probabilities(pixels)
    members = {m: direct.accuracy(probas[m].argmax(axis=1), truth) for m in direct.MEMBERS}
    direct_labels, direct_proba = direct_ensemble(join, probas)

    name, results, elapsed = deploy_and_stream(args.topology, topology, args,
                                               [{"pixels": row.tolist()} for row in pixels])
    streamed, streamed_proba = labels_and_proba(results)
    best = max(members, key=lambda m: members[m])
    ensemble = direct.accuracy(streamed, truth)
    return {
        "topology": str(args.topology), "name": name, "joiner": joiner,
        "strategy": join.strategy, "samples": len(truth), "members": members,
        "weights": ({m: float(join.weights.get(m, 1.0)) for m in direct.MEMBERS}
                    if join.strategy == "soft_vote" else None),
        "direct": direct.accuracy(direct_labels, truth), "streamed": ensemble,
        "agree": int(np.sum(streamed == direct_labels)),
        "max_proba_diff": float(np.abs(streamed_proba - direct_proba).max()),
        "best_member": best, "ensemble_ge_best": ensemble >= members[best],
        "result_fields": sorted(results[0]), "elapsed_s": round(elapsed, 3),
    }


def print_table(summary: Summary) -> None:
    """The summary as a table of accuracies and the comparison lines."""
    n, what = summary["samples"], summary["strategy"].replace("_", " ")
    weights = summary["weights"]
    members = ", ".join(summary["members"]) if weights is None else ", ".join(
        f"{m} ×{w:g}" for m, w in weights.items())
    print(f"\n{summary['name']} ({what} of {members}) on {n} held-out digits\n")
    rows = [(f"{m} (member, direct)", acc) for m, acc in summary["members"].items()]
    rows += [(f"ensemble, direct ({'numpy' if what == 'soft vote' else 'meta-model'})",
              summary["direct"]), ("ensemble through Kafka", summary["streamed"])]
    print_rows(rows, "accuracy", lambda acc: f"{acc:.4f}  ({round(acc * n)}/{n})")
    best = summary["best_member"]
    print(f"\nstreamed labels equal to the direct computation: {summary['agree']}/{n} "
          f"(max |proba difference| {summary['max_proba_diff']:.2e})")
    print(f"ensemble >= best member ({best}, {summary['members'][best]:.4f}): "
          f"{'yes' if summary['ensemble_ge_best'] else 'no'}")
    print_footer(summary)


def add_topology(parser: argparse.ArgumentParser) -> None:
    """The ``--topology`` option: which digits ensemble to deploy."""
    parser.add_argument("--topology", type=Path,
                        default=ROOT / "topologies" / "digits_ensemble.yaml",
                        help="digits_ensemble.yaml (default) or digits_stacking.yaml")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the report; return the exit status."""
    return report_main(__doc__.splitlines()[0], report, print_table, argv,
                       samples_help="held-out digits to send (default: all 450)",
                       add_arguments=add_topology)


if __name__ == "__main__":
    sys.exit(main())
