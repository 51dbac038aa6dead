"""How long a gathering batch waits when ``batch: {max_wait_ms: auto}``: only as long as
waiting pays.

The policy learns two things while the agent runs: the arrival rate (an exponentially
weighted average of the gaps between fetched records) and what a model call costs by
batch size (a line ``fixed + per_item × size`` fitted to the calls made, weighted
towards recent ones). When a batch of ``n`` items is gathering, it waits for more items
only if at least one more is expected before the wait's ceiling (``max_wait_ms``) and
before a model call would have finished anyway, and never longer than it takes to fill
the batch at the current rate:

    wait = min(ceiling, model_time(max_size), (max_size - n) / rate), or 0 when
    rate × min(ceiling, model_time(max_size)) < 1

So a lone request at low load is not held (fewer than one more item is expected), and
under load batches fill. Waiting longer than a model call would cost more latency than
an extra call costs.

>>> p = WaitPolicy(max_size=64, ceiling_s=0.05)
>>> p.wait_s(1)                      # nothing learnt yet: no wait
0.0
>>> for i in range(100):             # 10 items/s: one every 100 ms
...     p.arrived(1, i * 0.1)
>>> p.ran(1, 0.002); p.ran(64, 0.02)
>>> p.wait_s(1)                      # the next item is 100 ms away: do not wait
0.0
>>> for i in range(2000):            # 20000 items/s
...     p.arrived(1, 10 + i / 20000)
>>> round(p.wait_s(1), 4)            # 63 more in 3.15 ms, within a model call
0.0031
"""

from __future__ import annotations

RATE_WEIGHT = 0.05  # weight of the newest gap in the arrival rate's average
RUN_WEIGHT = 0.1  # weight of the newest call in each batch size's average time


class WaitPolicy:
    """Chooses the wait of a gathering batch from the arrival rate and model times."""

    def __init__(self, max_size: int, ceiling_s: float) -> None:
        self.max_size, self.ceiling_s = max_size, ceiling_s
        self._gap_s: float | None = None  # average seconds between items
        self._last: float | None = None
        self._times: dict[int, float] = {}  # batch size: average seconds of a call

    def arrived(self, count: int, now: float) -> None:
        """``count`` items arrived at ``now`` (seconds, monotonic)."""
        if self._last is not None and count > 0:
            gap = max(now - self._last, 0.0) / count
            self._gap_s = gap if self._gap_s is None else (
                self._gap_s + RATE_WEIGHT * (gap - self._gap_s))
        self._last = now

    def ran(self, size: int, seconds: float) -> None:
        """A model call on ``size`` items took ``seconds``."""
        if size > 0:
            old = self._times.get(size)
            self._times[size] = seconds if old is None else old + RUN_WEIGHT * (seconds - old)

    def rate(self) -> float:
        """Items per second lately (0 before two arrivals)."""
        return 0.0 if not self._gap_s else 1.0 / self._gap_s

    def model_time(self, size: int) -> float | None:
        """The expected seconds of a call on ``size`` items: the least-squares line
        through the average time of each size seen (the only average, if one size)."""
        if not self._times:
            return None
        if len(self._times) == 1:
            (seen, t), = self._times.items()
            return t * size / seen
        n = len(self._times)
        mx = sum(self._times) / n
        my = sum(self._times.values()) / n
        sxx = sum((x - mx) ** 2 for x in self._times)
        slope = sum((x - mx) * (y - my) for x, y in self._times.items()) / sxx
        return max(my + slope * (size - mx), 0.0)

    def wait_s(self, gathered: int) -> float:
        """How long a batch holding ``gathered`` items should wait for more, at most."""
        rate, full = self.rate(), self.model_time(self.max_size)
        if gathered >= self.max_size or rate <= 0 or full is None:
            return 0.0
        horizon = min(self.ceiling_s, full)
        if rate * horizon < 1:
            return 0.0
        return min(horizon, (self.max_size - gathered) / rate)
