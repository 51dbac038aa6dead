"""What a client's target names: a deployed topology (its manifest gives the input, output
and dead-letter topics, and the priority lanes) or a topic.

>>> resolve_topics("digits-not-deployed")
Topics(input='digits-not-deployed.in', output='digits-not-deployed.out', \
dlq='digits-not-deployed.dlq')
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamcompose.deploy.registry import Deployment
from streamcompose.errors import StreamComposeError
from streamcompose.topology.serving_specs import PrioritySpec


@dataclass(frozen=True)
class Topics:
    """The input, output and dead-letter topics of a target."""

    input: str
    output: str
    dlq: str
    #: priority lane -> input topic, most urgent first (a topology with ``priorities``)
    lanes: dict[str, str] = field(default_factory=dict, repr=False)
    default_lane: str | None = field(default=None, repr=False)

    def route(self, priority: str | int | None) -> tuple[str, str | None]:
        """The input topic for a request of ``priority`` and the lane it names (the
        priority itself where the target has no lanes).

        >>> t = Topics("d.in", "d.out", "d.dlq", {"high": "d.in.high", "normal": "d.in"})
        >>> t.route(9), t.route(None), Topics("x.in", "x.out", "x.dlq").route("high")
        (('d.in.high', 'high'), ('d.in', 'normal'), ('x.in', 'high'))
        """
        if not self.lanes:
            return self.input, None if priority is None else str(priority)
        try:
            lane = PrioritySpec(tuple(self.lanes), self.default_lane).lane_of(priority)
        except ValueError as exc:
            raise StreamComposeError(f"{exc}; the lanes of {self.input} are "
                                     f"{', '.join(self.lanes)}") from None
        return self.lanes[lane], lane


def resolve_topics(target: str) -> Topics:
    """Topics of a deployed topology, or of ``<target>.in/.out/.dlq``, or ``target``
    itself when it names a topic (contains a dot).

    >>> resolve_topics("orders.in")
    Topics(input='orders.in', output='orders.in', dlq='orders.dlq')
    """
    d = Deployment(target)
    if d.exists():
        m = d.manifest()
        return Topics(m["input"], m["output"], m["dlq"], m.get("lanes") or {},
                      m.get("default_lane"))
    if "." in target:
        return Topics(target, target, target.rsplit(".", 1)[0] + ".dlq")
    return Topics(f"{target}.in", f"{target}.out", f"{target}.dlq")
