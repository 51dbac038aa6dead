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
>>> p.look(20_900, ["cnn"]).gave_up(["cnn"], 0, entered_ms=10_500, first_ms=19_000)
False
>>> p.saw("cnn", 0, entered_ms=11_600, now=21_000)          # passed it by 1.1 s
>>> p.look(21_000, ["cnn"]).gave_up(["cnn"], 0, entered_ms=10_500, first_ms=19_000)
True
>>> p.look(22_000, ["cnn"]).gave_up(["cnn"], 0, entered_ms=11_700, first_ms=20_500)
True
>>> p.look(21_499, ["cnn", "mlp"]).gave_up(["mlp"], 0, entered_ms=11_700, first_ms=20_500)
False
>>> p.saw("mlp", 1, entered_ms=12_000, now=21_499)          # busy on another partition
>>> p.look(21_500, ["mlp"]).gave_up(["mlp"], 0, entered_ms=11_700, first_ms=20_500)
False
>>> p.unread("mlp", now=23_000)                             # its topic has more to read
>>> p.look(23_999, ["mlp"]).gave_up(["mlp"], 0, entered_ms=11_700, first_ms=20_500)
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

    def look(self, now: int, branches: Iterable[str]) -> ProgressLook:
        """The progress as it stands at ``now``, to judge many open requests by (a joiner
        looks at all of them every few tens of ms); :meth:`ProgressLook.may_give_up`
        covers ``branches`` (the joiner's inputs), :meth:`ProgressLook.gave_up` any
        branch (a gate's ``sc-expect`` may name others)."""
        return ProgressLook(self, now, branches)

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


class ProgressLook:
    """:class:`BranchProgress` at one moment, worked out once for every request judged
    then: a branch not heard of is silent since the request's first result, or since the
    joiner :meth:`~BranchProgress.resumed` if that is later."""

    def __init__(self, progress: BranchProgress, now: int, branches: Iterable[str]) -> None:
        timeout = self.timeout_ms = progress.timeout_ms
        self.now = now
        self._since = progress._since or None
        self._heard = progress._heard  # read only while the look is in use
        self._passed = {key: entered - timeout for key, entered in progress._entered.items()}
        self._passed_any: dict[int, int] = {}  # the latest of each partition's branches
        for (_, partition), passed in self._passed.items():
            self._passed_any[partition] = max(passed, self._passed_any.get(partition, passed))
        self._quiet = any(heard is None or now - heard >= timeout
                          for heard in (self._heard.get(b, self._since) for b in branches))

    def may_give_up(self, partition: int, entered_ms: int) -> bool:
        """False when none of the branches looked at can be given up for such a request
        (none is silent, none passed it): most open requests, judged without looking at
        what they miss."""
        return self._quiet or 0 < entered_ms <= self._passed_any.get(partition, 0)

    def gave_up(self, missing: Iterable[str], partition: int, entered_ms: int,
                first_ms: int) -> bool:
        """Whether none of the ``missing`` branches has anything more to give a request of
        ``partition`` that entered at ``entered_ms`` and whose first branch result came
        at ``first_ms``: each passed it by ``timeout_ms`` or was silent that long."""
        for branch in missing:
            heard = self._heard.get(branch, self._since)
            if self.now - max(first_ms if heard is None else heard, first_ms) >= self.timeout_ms:
                continue
            if not 0 < entered_ms <= self._passed.get((branch, partition), 0):
                return False
        return True


__all__ = ["BranchProgress", "ProgressLook"]
