"""The ``replication:`` key of a topology: how many copies of its topics the cluster keeps.

Left out, ``deploy`` chooses from the cluster it finds: 3 replicas and
``min.insync.replicas`` 2 on three or more brokers, fewer on a smaller cluster (see
:meth:`ReplicationSpec.resolve`). With producers acknowledging ``acks=all``, a record is
stored once ``min_insync`` replicas hold it, so one broker may die without losing it.

>>> ReplicationSpec().resolve(brokers=3)
(3, 2)
>>> ReplicationSpec().resolve(brokers=1)
(1, 1)
>>> ReplicationSpec(factor=2).resolve(brokers=5)
(2, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamcompose.errors import DeploymentError

if TYPE_CHECKING:
    from streamcompose.topology.parse_specs import Reader

__all__ = ["REPLICATION_KEYS", "ReplicationSpec", "parse_replication"]

REPLICATION_KEYS = {"factor", "min_insync"}
DEFAULT_FACTOR = 3


@dataclass(frozen=True)
class ReplicationSpec:
    """``factor``: replicas of each topic; ``min_insync``: the replicas that must hold a
    record before it is acknowledged. None: chosen from the cluster's size."""

    factor: int | None = None
    min_insync: int | None = None

    def resolve(self, brokers: int, topology: str | None = None) -> tuple[int, int]:
        """(replication factor, min.insync.replicas) on a cluster of ``brokers``."""
        factor = self.factor or min(DEFAULT_FACTOR, brokers)
        if factor > brokers:
            raise DeploymentError(
                f"replication.factor is {factor} but the cluster has {brokers} broker"
                f"{'s' if brokers != 1 else ''}: lower it or add brokers", topology=topology)
        min_insync = self.min_insync or (2 if factor >= 3 else 1)
        return factor, min(min_insync, factor)


def parse_replication(r: Reader, raw: Any, key: str) -> ReplicationSpec:
    """The spec of ``raw``, a mapping with ``factor`` and/or ``min_insync``."""
    spec = r.mapping(raw, key, REPLICATION_KEYS)
    factor = r.number(spec["factor"], f"{key}.factor", integer=True, minimum=1) \
        if "factor" in spec else None
    min_insync = r.number(spec["min_insync"], f"{key}.min_insync", integer=True, minimum=1) \
        if "min_insync" in spec else None
    if factor is not None and min_insync is not None and min_insync > factor:
        raise r.doc.error(f"min_insync ({min_insync}) cannot exceed factor ({factor}): a "
                          "record could never be acknowledged", f"{key}.min_insync")
    return ReplicationSpec(factor, min_insync)

