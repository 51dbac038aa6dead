"""How far each branch of a joiner has got.

A branch agent answers the requests of a partition in the order they entered, so the
newest entry time among its results on a partition says which requests it has passed.
A request missing a branch's result waits while that branch is behind it but still
delivering (a backlog: its fast siblings ran ahead); the joiner gives up on the branch
once the branch has answered requests of the partition that entered ``timeout_ms`` after
this one (it dead-lettered or skipped it) or has said nothing at all for ``timeout_ms``
(it is stuck or gone). Silence counts over all partitions: a busy branch works through
one partition's backlog before the next, and a dead replica's partitions go to another.
A branch whose topic holds records the joiner has not read yet is not silent either
(:meth:`BranchProgress.unread`): the joiner is behind it, as when it drains a backlog
that its branches answered long ago.
Entry times come from the clients' clocks: clients whose clocks differ by more than
``timeout_ms`` and write to one partition can make a request look passed too early.

>>> p = BranchProgress(timeout_ms=1000)
>>> p.saw("cnn", 0, entered_ms=10_000, now=20_000)
>>> p.gave_up("cnn", 0, entered_ms=10_500, first_ms=19_000, now=20_900)  # behind, delivering
False
>>> p.saw("cnn", 0, entered_ms=11_600, now=21_000)                     # passed it by 1.1 s
>>> p.gave_up("cnn", 0, entered_ms=10_500, first_ms=19_000, now=21_000)
True
>>> p.gave_up("cnn", 0, entered_ms=11_700, first_ms=20_500, now=22_000)  # silent for 1 s
True
>>> p.gave_up("mlp", 0, entered_ms=11_700, first_ms=20_500, now=21_499)  # never heard of
False
>>> p.saw("mlp", 1, entered_ms=12_000, now=21_499)     # busy on another partition
>>> p.gave_up("mlp", 0, entered_ms=11_700, first_ms=20_500, now=21_500)
False
>>> p.unread("mlp", now=23_000)                       # its topic has more to read
>>> p.gave_up("mlp", 0, entered_ms=11_700, first_ms=20_500, now=23_999)
False
"""

from __future__ import annotations

from collections.abc import Iterable


class BranchProgress:
    """The newest entry time each branch delivered on each partition, and when it last
    delivered."""

    def __init__(self, timeout_ms: float) -> None:
        self.timeout_ms = timeout_ms
        self._entered: dict[tuple[str, int], int] = {}
        self._heard: dict[str, int] = {}
        self._since: int | None = None  # when the joiner (re)started, if it says

    def saw(self, branch: str, partition: int, entered_ms: int, now: int) -> None:
        """Note a result of ``branch`` for a request that entered at ``entered_ms``."""
        key = (branch, partition)
        self._heard[branch] = now
        if entered_ms > self._entered.get(key, 0):
            self._entered[key] = entered_ms

    def unread(self, branch: str, now: int) -> None:
        """``branch``'s topic holds records not read yet at ``now``: it is not silent."""
        self._heard[branch] = now

    def gave_up(self, branch: str, partition: int, entered_ms: int, first_ms: int,
                now: int) -> bool:
        """Whether a request of ``partition`` that entered at ``entered_ms`` and whose
        first branch result came at ``first_ms`` has nothing more to expect from
        ``branch``; a branch not heard of is silent since ``first_ms``, or since the
        joiner :meth:`resumed` if that is later."""
        heard = self._heard.get(branch, self._since or first_ms)
        if now - max(heard, first_ms) >= self.timeout_ms:
            return True
        return (entered_ms > 0
                and self._entered.get((branch, partition), 0) - entered_ms >= self.timeout_ms)

    def resumed(self, now: int) -> None:
        """The joiner runs again from ``now`` (it restored open requests): branches get
        ``timeout_ms`` from then to be heard of, as they may be starting too."""
        self._heard.clear()
        self._since = now

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what was known of partitions given away."""
        gone = set(partitions)
        for key in [k for k in self._entered if k[1] in gone]:
            del self._entered[key]


__all__ = ["BranchProgress"]
