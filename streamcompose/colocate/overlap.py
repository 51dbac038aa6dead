"""Whether a wave's members run at once or one after the other: whichever has been faster.

Running a fan-out's branches on a thread pool pays when their model calls are long and a
core is free; for cheap models on a busy machine the hand-off and the contention for the
interpreter cost more than the overlap gains. Each wave keeps the time per record of the
last few batches of both ways, takes the way whose median is lower, and tries the other
now and then, so that it follows a change in load or batch size.

A median, not an average: on a shared machine a batch now and then is stalled many times
its usual time (the process is preempted, the collector runs), and a batch of one record
carries a whole call's overhead. An average fed such a batch chose the slower way for
dozens of batches after it.

>>> choice = OverlapChoice(explore_every=4)
>>> first = choice.concurrent(0); choice.took(0, first, 0.010, 10)
>>> second = choice.concurrent(0); choice.took(0, second, 0.020, 10)
>>> first, second  # each way is tried once
(False, True)
>>> [choice.concurrent(0) for _ in range(4)]  # the faster, and the other every 4th call
[False, True, False, False]
>>> choice.took(0, False, 1.0, 10)  # one stalled batch does not change the choice
>>> choice.concurrent(0)
False
"""

from __future__ import annotations

from collections import defaultdict, deque
from statistics import median_low

WINDOW = 9  # recent batches whose median time per record counts


class StepPace:
    """A step's time per record, the median of its last :data:`WINDOW` batches, and so
    the seconds a batch should take. The worker's pipeline asks it whether a group's
    step is quick enough for the event loop; :class:`OverlapChoice` keeps one per way.

    >>> pace = StepPace()
    >>> pace.expected(10) is None
    True
    >>> for seconds in (0.001, 0.001, 0.5):  # one stalled batch does not count
    ...     pace.ran(seconds, 10)
    >>> pace.expected(10)
    0.001
    """

    def __init__(self, window: int = WINDOW) -> None:
        self._recent: deque[float] = deque(maxlen=window)

    def ran(self, seconds: float, records: int) -> None:
        self._recent.append(seconds / records)

    def expected(self, records: int) -> float | None:
        """The seconds a batch of ``records`` should take; None before the first."""
        return median_low(self._recent) * records if self._recent else None


class OverlapChoice:
    """Chooses, wave by wave, between running its members at once and one by one."""

    def __init__(self, explore_every: int = 20, window: int = WINDOW) -> None:
        self.explore_every = explore_every
        #: wave -> way (at once?) -> its pace over its latest batches
        self.paces: dict[int, dict[bool, StepPace]] = defaultdict(
            lambda: {False: StepPace(window), True: StepPace(window)})
        self.calls: dict[int, int] = defaultdict(int)

    def cost(self, wave: int) -> dict[bool, float]:
        """The median seconds per record of each way ``wave`` has run in."""
        return {way: per_record for way, pace in self.paces[wave].items()
                if (per_record := pace.expected(1)) is not None}

    def concurrent(self, wave: int) -> bool:
        """Whether the next batch of ``wave`` runs its members at once."""
        cost = self.cost(wave)
        self.calls[wave] += 1
        for way in (False, True):
            if way not in cost:
                return way
        best = cost[True] < cost[False]
        return not best if self.calls[wave] % self.explore_every == 0 else best

    def took(self, wave: int, concurrent: bool, seconds: float, records: int) -> None:
        """A batch of ``records`` ran through ``wave`` in ``seconds``."""
        self.paces[wave][concurrent].ran(seconds, max(1, records))
