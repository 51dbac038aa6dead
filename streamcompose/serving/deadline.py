"""Request deadlines: the header ``sc-deadline`` holds the moment (milliseconds since the
epoch) after which nobody waits for a request's answer any more. The client sets it
(``Client.infer(timeout=...)``, ``publish --deadline-ms``), or an agent stamps it from a
topology's or agent's ``deadline_ms`` (counted from when the request entered) on
requests that carry none; it then travels with every downstream record. Every agent
checks it before spending model time on a request: an expired one is dead-lettered with
reason ``expired`` instead.

>>> from streamcompose.codec import Trace
>>> t = Trace("r1", entered_ms=1_000)
>>> stamped = with_default(t, 500)
>>> deadline_of(stamped), deadline_of(with_default(stamped, 9_000))
(1500, 1500)
>>> expired(stamped, now=1_499), expired(stamped, now=1_500), expired(t, now=10**13)
(False, True, False)
"""

from __future__ import annotations

from streamcompose.codec import Trace
from streamcompose.errors import RequestExpiredError

DEADLINE = "sc-deadline"


def deadline_of(trace: Trace) -> int | None:
    """The request's deadline in ms since the epoch, or None (none, or unreadable)."""
    raw = None
    for name, value in trace.extra:  # the last one counts, as in a dict of them
        if name == DEADLINE:
            raw = value
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def deadline_header(deadline_ms: int) -> tuple[str, bytes]:
    """The header that gives a request the deadline ``deadline_ms`` (ms since epoch)."""
    return DEADLINE, str(int(deadline_ms)).encode()


def with_default(trace: Trace, default_ms: float | None) -> Trace:
    """``trace`` with a deadline ``default_ms`` after it entered, unless it has one."""
    if default_ms is None or deadline_of(trace) is not None:
        return trace
    extra = (*(h for h in trace.extra if h[0] != DEADLINE),
             deadline_header(trace.entered_ms + int(default_ms)))
    return Trace(trace.request_id, trace.entered_ms, trace.path, trace.content_type, extra)


def expired(trace: Trace, now: int) -> bool:
    """Whether the request's deadline has passed at ``now`` (ms since epoch)."""
    deadline = deadline_of(trace)
    return deadline is not None and now >= deadline


def expired_error(trace: Trace, agent: str, now: int) -> RequestExpiredError:
    """The error an expired request is dead-lettered with, naming who saw it expire.

    >>> from streamcompose.codec import Trace
    >>> t = Trace("r1", 1_000, extra=(deadline_header(1_200),))
    >>> print(expired_error(t, "cnn", now=1_450))
    request r1 expired 250 ms before agent 'cnn' could serve it (deadline 1200, \
entered 1000, now 1450)
    """
    deadline = deadline_of(trace) or now
    return RequestExpiredError(
        f"request {trace.request_id} expired {now - deadline} ms before agent {agent!r} "
        f"could serve it (deadline {deadline}, entered {trace.entered_ms}, now {now})",
        agent=agent, request_id=trace.request_id)
