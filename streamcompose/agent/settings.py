"""The knobs of an agent worker, in one frozen object instead of module constants.

>>> s = WorkerSettings()
>>> s.commit_interval_s, s.session_timeout_ms
(0.05, 10000)
>>> WorkerSettings(fetch_records=50).fetch_records
50
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker polls, commits, waits and retries.

    * ``fetch_records``, ``poll_ms``: at most that many records a fetch, waiting at most
      that long for them.
    * ``commit_interval_s``: how often at-least-once workers commit acknowledged offsets.
    * ``drain_timeout_s``: how long a rebalance or a stop waits for records in flight.
    * ``session_timeout_ms``: how long the group waits for a silent member. Members are
      static (``group.instance.id`` per replica), so a worker restarted within this time
      takes its partitions back without a rebalance.
    * ``transaction_timeout_ms``: after this, the broker aborts the open transaction of
      a dead exactly-once worker that nobody restarted (downstream readers wait for it).
    * ``request_timeout_ms``: how long a produced record may wait for the broker; long,
      so that a broker outage delays results instead of failing them.
    * ``connect_retry_s``: the pause between attempts to reach an absent broker.
    * ``retry_backoff_ms``: the producer's pause before retrying a request. Short, because
      a transaction begun while the broker still writes the markers of the previous one
      is refused (``CONCURRENT_TRANSACTIONS``) and retried after this pause: at the
      client's default of 100 ms, a stateful step committing every few polls waits that
      long now and then.
    * ``gil_switch_ms``: how long a thread of a worker process runs Python before another
      one waiting for the interpreter gets it. The model thread needs it briefly at the
      start and end of each batch, and the event loop between its socket calls; at
      Python's default of 5 ms each of those hand-offs can wait that long while the model
      stands idle.
    * ``group_inline_ms``: a co-located group runs its step on the event loop instead of
      the model thread on a batch it expects (from its time per record so far) to take
      less than this. Each of its members' model calls gives up the interpreter, and on
      the model thread must win it back from the busy loop when it returns; on the loop
      nothing competes. A slower step stays on the model thread, so that the loop keeps
      fetching and committing while it runs. 0 keeps every step on the model thread.
    * ``freeze_heap``: once its model is loaded and warmed up, the worker moves every
      object then alive out of the garbage collector's reach (``gc.freeze``). Otherwise
      each full collection walks the objects of torch, the model and the libraries
      again: 80 to 120 ms with the event loop stopped, every half second at full load
      (1 to 2 ms frozen). Objects frozen are still freed when nothing refers to them;
      only a cycle that includes one of them is never collected.
    """

    fetch_records: int = 500
    poll_ms: int = 100
    commit_interval_s: float = 0.05
    drain_timeout_s: float = 30.0
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    transaction_timeout_ms: int = 15_000
    request_timeout_ms: int = 300_000
    connect_retry_s: float = 1.0
    retry_backoff_ms: int = 5
    gil_switch_ms: float = 0.5
    group_inline_ms: float = 20.0
    freeze_heap: bool = True
