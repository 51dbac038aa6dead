"""What the broker knows of consumer groups: their members on every host (client id,
client host), the partitions each is assigned and the lag per partition.
``streamcompose status`` reads it, so that it shows the workers of every host, not only
those of the local supervisor.

Example (needs a broker)::

    info = asyncio.run(describe_group("127.0.0.1:9092", "streamcompose.digits.cnn",
                                      ["digits.preprocess"]))
    print(info.state, [m.client_host for m in info.members], info.lag)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.protocol.group import LeaveGroupRequest, MemberAssignment

from streamcompose.kafka.admin import CONNECT_TIMEOUT_S, _admin, partition_lag
from streamcompose.kafka.diagnose import unreachable


@dataclass(frozen=True)
class GroupMember:
    """One member of a consumer group, as the group coordinator sees it (a worker's
    client id is ``<topology>.<agent>.<replica>``)."""

    client_id: str
    client_host: str
    partitions: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "host": self.client_host,
                "partitions": list(self.partitions)}


@dataclass(frozen=True)
class GroupInfo:
    """A consumer group: its state, members and lag per partition (``topic[p]``)."""

    group: str
    state: str
    members: tuple[GroupMember, ...] = ()
    lag: dict[str, int] = field(default_factory=dict)

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())


def _assigned(raw: bytes) -> tuple[str, ...]:
    """The partitions in a member's assignment (the consumer protocol's encoding).

    >>> blob = MemberAssignment(0, [("a", [1, 0])], b"").encode()
    >>> _assigned(blob)
    ('a[0]', 'a[1]')
    >>> _assigned(b"")
    ()
    """
    if not raw:
        return ()
    assignment = MemberAssignment.decode(raw)
    return tuple(sorted(f"{topic}[{p}]" for topic, parts in assignment.assignment
                        for p in parts))


def _member(raw: dict[str, Any]) -> GroupMember:
    host = raw.get("client_host", "").lstrip("/")
    return GroupMember(client_id=raw.get("client_id", ""), client_host=host,
                       partitions=_assigned(raw.get("member_assignment", b"")))


async def describe_group(bootstrap: str, group: str, topics: list[str]) -> GroupInfo:
    """The group's state and members, and its lag on ``topics`` per partition."""
    admin = await _admin(bootstrap)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_TIMEOUT_S
    try:
        while True:
            try:
                responses = await admin.describe_consumer_groups([group])
                break
            except KafkaError as exc:  # a fresh cluster creates its offsets topic first
                if not exc.retriable or loop.time() > deadline:
                    raise unreachable(bootstrap, exc) from exc
                await asyncio.sleep(0.5)
    finally:
        await admin.close()
    described = [g for r in responses for g in r.to_object()["groups"]
                 if g["group"] == group]
    state = described[0]["state"] if described else "Dead"
    members = tuple(sorted((_member(m) for g in described for m in g["members"]),
                           key=lambda m: m.client_id))
    lag = await partition_lag(bootstrap, group, topics)
    return GroupInfo(group, state or "Empty", members,
                     {f"{tp.topic}[{tp.partition}]": n for tp, n in sorted(lag.items())})


async def leave_group(bootstrap: str, group: str, client_id: str) -> int:
    """Remove the members with ``client_id`` from ``group`` at once: a static member
    (``group.instance.id``) does not leave when it closes, so its partitions would wait
    a session timeout before moving to the others. Returns how many were removed."""
    admin = await _admin(bootstrap)
    try:
        node = await admin.find_coordinator(group)
        responses = await admin.describe_consumer_groups([group], group_coordinator_id=node)
        ids = [m["member_id"] for r in responses for g in r.to_object()["groups"]
               for m in g["members"] if m["client_id"] == client_id]
        for member_id in ids:
            await admin._send_request(LeaveGroupRequest(group, member_id), node)
        return len(ids)
    except KafkaError as exc:
        raise unreachable(bootstrap, exc) from exc
    finally:
        await admin.close()
