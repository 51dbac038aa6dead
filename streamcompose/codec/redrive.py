"""The ``sc-redrive`` header: the provenance of a request that ``dlq redrive`` published
again, a JSON object naming the dead letter (its topic, partition and offset), the agent
that failed it, the topic it was published to again and when (``at``, ms since the
epoch). It travels with the request through every later hop, so a result shows it came
from a redrive.

A redriven request is meant for the agent that failed it only: other agents reading the
same topic (a fan-out) pass over it there, and take its later hops as usual.

>>> h = redrive_header(Redrive("digits.dlq", 0, 41, "cnn", "digits.preprocess", 1000))
>>> h[0], json.loads(h[1])["offset"]
('sc-redrive', 41)
>>> meant_for(("cnn",), "digits.preprocess", [h]), meant_for(("mlp",), "digits.preprocess", [h])
(True, False)
>>> meant_for(("postprocess",), "digits.cnn", [h])  # a later hop
True
>>> meant_for(("mlp", "cnn"), "digits.preprocess", [h])  # a group with cnn in it
True
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

REDRIVE = "sc-redrive"
#: headers a request published again (by ``dlq redrive`` or ``replay``) leaves behind: its
#: deadline (issue 12's ``sc-deadline``) passed long ago, the new run is asked for now
NOT_REPUBLISHED = ("sc-deadline",)


@dataclass(frozen=True)
class Redrive:
    """Which dead letter a redriven request comes from, whom it is for, where and when."""

    dlq: str
    partition: int
    offset: int
    agent: str
    topic: str
    at: int


def redrive_header(redrive: Redrive) -> tuple[str, bytes]:
    """The ``sc-redrive`` header of a redriven request."""
    return REDRIVE, json.dumps(asdict(redrive), separators=(",", ":")).encode()


def read_redrive(headers: Sequence[tuple[str, bytes]] | None) -> Redrive | None:
    """The redrive a record's headers carry, or None (none, or not readable)."""
    for key, value in headers or ():
        if key == REDRIVE:
            try:
                return Redrive(**json.loads(value))
            except (TypeError, ValueError):
                return None
    return None


def meant_for(agents: Collection[str], topic: str,
              headers: Sequence[tuple[str, bytes]] | None) -> bool:
    """Whether one of ``agents`` (a worker's, a co-located group's) takes a record of
    ``topic``: always, unless it is a request redriven on that topic for another agent."""
    redrive = read_redrive(headers)
    return redrive is None or redrive.topic != topic or redrive.agent in agents
