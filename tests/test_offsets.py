"""OffsetTracker: only the contiguous run of done offsets is ever committed."""

from __future__ import annotations

import random
from typing import NamedTuple

import pytest

from streamcompose.delivery.offsets import OffsetTracker


class TP(NamedTuple):  # stands in for aiokafka's TopicPartition (any hashable works)
    topic: str
    partition: int


A, B, C = TP("t", 0), TP("t", 1), TP("u", 0)


def tracked(partition=A, offsets=range(10, 15)) -> OffsetTracker:
    t = OffsetTracker()
    for off in offsets:
        t.track(partition, off)
    return t


def test_nothing_committable_until_the_first_offset_is_done() -> None:
    t = tracked()
    assert t.committable() == {}
    for off in (14, 12, 11):
        t.done(A, off)
    assert t.committable() == {}
    assert t.in_flight() == 2


def test_commit_position_is_one_past_the_last_contiguous_done_offset() -> None:
    t = tracked()
    t.done(A, 10)
    assert t.committable() == {A: 11}
    t.done(A, 12)  # 11 still pending: the gap holds 12 back
    assert t.committable() == {}
    t.done(A, 11)
    assert t.committable() == {A: 13}
    t.done(A, 14)
    assert t.committable() == {}
    t.done(A, 13)
    assert t.committable() == {A: 15}
    assert t.in_flight() == 0
    assert t.committable() == {}


def test_out_of_order_completion_in_reverse() -> None:
    t = tracked()
    for off in reversed(range(10, 15)):
        assert t.committable() == {}
        t.done(A, off)
    assert t.committable() == {A: 15}


def test_random_completion_order_never_commits_past_a_pending_offset() -> None:
    rng = random.Random(1234)
    offsets = list(range(100, 160))
    t = tracked(A, offsets)
    order = offsets[:]
    rng.shuffle(order)
    done: set[int] = set()
    position = 100
    for off in order:
        t.done(A, off)
        done.add(off)
        moved = t.committable()
        expected = position
        while expected in done:
            expected += 1
        if expected != position:
            assert moved == {A: expected}
            position = expected
        else:
            assert moved == {}
        assert all(o in done for o in range(100, position))
    assert position == 160


def test_gaps_in_offsets_are_fine() -> None:
    """Compacted topics and transaction markers leave holes in offsets."""
    t = tracked(A, [3, 7, 8, 20])
    t.done(A, 7)
    t.done(A, 3)
    assert t.committable() == {A: 8}
    t.done(A, 20)
    t.done(A, 8)
    assert t.committable() == {A: 21}


def test_partitions_are_independent() -> None:
    t = OffsetTracker()
    for off in range(3):
        t.track(A, off)
        t.track(B, 100 + off)
        t.track(C, 50 + off)
    t.done(A, 0)
    t.done(B, 101)
    t.done(C, 50)
    t.done(C, 51)
    assert t.committable() == {A: 1, C: 52}
    t.done(B, 100)
    assert t.committable() == {B: 102}
    assert t.in_flight() == 4
    assert t.in_flight([A]) == 2
    assert t.in_flight([B, C]) == 2
    assert t.in_flight([C]) == 1


def test_committable_returns_only_partitions_that_moved() -> None:
    t = OffsetTracker()
    t.track(A, 0)
    t.track(B, 0)
    t.done(A, 0)
    assert t.committable() == {A: 1}
    t.track(A, 1)
    t.done(B, 0)
    assert t.committable() == {B: 1}  # A has not moved since its last commit
    assert t.committable() == {}
    t.done(A, 1)
    assert t.committable() == {A: 2}


def test_done_for_unknown_offsets_or_partitions_is_ignored() -> None:
    t = tracked(A, [5, 6])
    t.done(A, 99)
    t.done(B, 5)
    assert t.committable() == {}
    assert t.in_flight() == 2
    t.done(A, 5)
    t.done(A, 5)  # twice is harmless
    assert t.committable() == {A: 6}
    t.done(A, 5)  # already committed and dropped: ignored
    assert t.in_flight() == 1
    assert t.committable() == {}


def test_forget_drops_a_partitions_pending_records_and_commit_position() -> None:
    t = OffsetTracker()
    for off in range(4):
        t.track(A, off)
        t.track(B, off)
    t.done(A, 0)
    t.done(B, 0)
    assert t.committable() == {A: 1, B: 1}
    t.forget([A, TP("never", 9)])  # unknown partitions are ignored
    assert t.in_flight() == 3
    assert t.in_flight([A]) == 0
    t.done(A, 1)  # a late acknowledgement for a revoked partition
    assert t.committable() == {}
    # reassigned later, the partition starts afresh (re-delivered from the last commit)
    t.track(A, 1)
    t.done(A, 1)
    assert t.committable() == {A: 2}


def test_forget_then_reassign_may_commit_a_lower_position() -> None:
    """After a rebalance the remembered position is dropped, so a re-delivered range
    commits again instead of being suppressed as 'not moved'."""
    t = tracked(A, range(0, 10))
    for off in range(10):
        t.done(A, off)
    assert t.committable() == {A: 10}
    t.forget([A])
    t.track(A, 4)
    t.done(A, 4)
    assert t.committable() == {A: 5}


@pytest.mark.parametrize("partitions", [None, [A, B], []])
def test_in_flight_counts(partitions) -> None:
    t = OffsetTracker()
    assert t.in_flight(partitions) == 0
    for off in range(5):
        t.track(A, off)
    for off in range(3):
        t.track(B, off)
    t.done(A, 1)
    t.done(B, 2)
    expected = {None: 6, (A, B): 6, (): 0}[None if partitions is None else tuple(partitions)]
    assert t.in_flight(partitions) == expected
    assert t.in_flight(iter([A])) == 4  # any iterable
    t.committable()  # committing nothing (A:0 and B:0 pending) changes no counts
    assert t.in_flight() == 6


def test_in_flight_excludes_done_records_awaiting_commit() -> None:
    t = tracked(A, range(3))
    t.done(A, 2)
    assert t.in_flight() == 2  # 2 is done though not committable
    t.done(A, 0)
    t.committable()
    assert t.in_flight() == 1


def test_doc_example() -> None:
    t = OffsetTracker()
    for off in (5, 6, 7):
        t.track("p0", off)
    t.done("p0", 6)
    assert t.committable() == {}
    t.done("p0", 5)
    assert t.committable() == {"p0": 7}


def test_a_failed_commit_never_takes_a_newer_one_back():
    t = OffsetTracker()
    for off in range(3):
        t.track("p", off)
    t.done("p", 0)
    first = t.committable()  # {p: 1}, in flight
    t.done("p", 1)
    t.done("p", 2)
    assert t.committable() == {"p": 3}  # committed meanwhile
    t.uncommit(first)  # the first commit failed afterwards
    assert t.committable() == {}
