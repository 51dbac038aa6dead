"""Whether a wave's members run at once or one after the other: whichever has been faster.

Running a fan-out's branches on a thread pool pays when their model calls are long and a
core is free; for cheap models on a busy machine the hand-off and the contention for the
interpreter cost more than the overlap gains. Each wave keeps the time per record of both
ways (an exponential average), takes the faster, and tries the other now and then, so
that it follows a change in load or batch size.

>>> choice = OverlapChoice(explore_every=4)
>>> first = choice.concurrent(0); choice.took(0, first, 0.010, 10)
>>> second = choice.concurrent(0); choice.took(0, second, 0.020, 10)
>>> first, second  # each way is tried once
(False, True)
>>> [choice.concurrent(0) for _ in range(4)]  # the faster, and the other every 4th call
[False, True, False, False]
"""

from __future__ import annotations

from collections import defaultdict

WEIGHT = 0.2  # of the newest batch in the averages


class OverlapChoice:
    """Chooses, wave by wave, between running its members at once and one by one."""

    def __init__(self, explore_every: int = 20) -> None:
        self.explore_every = explore_every
        self.cost: dict[int, dict[bool, float]] = defaultdict(dict)  # wave -> way -> s/record
        self.calls: dict[int, int] = defaultdict(int)

    def concurrent(self, wave: int) -> bool:
        """Whether the next batch of ``wave`` runs its members at once."""
        cost = self.cost[wave]
        self.calls[wave] += 1
        for way in (False, True):
            if way not in cost:
                return way
        best = cost[True] < cost[False]
        return not best if self.calls[wave] % self.explore_every == 0 else best

    def took(self, wave: int, concurrent: bool, seconds: float, records: int) -> None:
        """A batch of ``records`` ran through ``wave`` in ``seconds``."""
        per_record = seconds / max(1, records)
        cost = self.cost[wave]
        old = cost.get(concurrent)
        cost[concurrent] = per_record if old is None else old + WEIGHT * (per_record - old)
