"""The joiner's look at its open requests (:class:`ProgressLook`) against the rule it
applies, written out plainly: a missing branch is given up on once it passed the request
by ``timeout_ms`` or has been silent that long (a branch not heard of: since the
request's first result, or since the joiner resumed if later)."""

from __future__ import annotations

import random

import pytest

from streamcompose.join.progress import BranchProgress


class Reference:
    """The rule, one branch at a time, as a joiner applied it before it had looks."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.entered: dict[tuple[str, int], int] = {}
        self.heard: dict[str, int] = {}
        self.since: int | None = None

    def saw(self, branch: str, partition: int, entered_ms: int, now: int) -> None:
        self.heard[branch] = now
        self.entered[branch, partition] = max(entered_ms, self.entered.get((branch, partition), 0))

    def unread(self, branch: str, now: int) -> None:
        self.heard[branch] = now

    def resumed(self, now: int) -> None:
        self.heard.clear()
        self.since = now

    def forget(self, partitions: list[int]) -> None:
        self.entered = {k: v for k, v in self.entered.items() if k[1] not in partitions}

    def gave_up(self, branch: str, partition: int, entered_ms: int, first_ms: int,
                now: int) -> bool:
        heard = self.heard.get(branch, self.since or first_ms)
        if now - max(heard, first_ms) >= self.timeout_ms:
            return True
        return (entered_ms > 0
                and self.entered.get((branch, partition), 0) - entered_ms >= self.timeout_ms)


@pytest.mark.parametrize("seed", range(6))
def test_a_look_gives_the_verdicts_of_the_rule(seed):
    """Random histories of results, unread topics, resumes and revoked partitions; the
    requests judged miss branches the joiner reads and, as a gate's ``sc-expect`` may
    name, branches it does not."""
    rng = random.Random(seed)
    read, unlisted = ["x", "y", "z"], ["w"]
    judged = 0
    for _ in range(300):
        timeout = rng.choice([100, 1000, 5000])
        look_at, rule = BranchProgress(timeout), Reference(timeout)
        now = 10_000
        for _ in range(rng.randint(0, 25)):
            now += rng.randint(0, timeout * 3 // 2)
            event = rng.random()
            if event < 0.6:
                args = (rng.choice(read), rng.randint(0, 2), rng.randint(0, now), now)
                look_at.saw(*args)
                rule.saw(*args)
            elif event < 0.75:
                branch = rng.choice(read + unlisted)
                look_at.unread(branch, now)
                rule.unread(branch, now)
            elif event < 0.9:
                at = rng.choice([now, 0])
                look_at.resumed(at)
                rule.resumed(at)
            else:
                gone = [rng.randint(0, 2)]
                look_at.forget(gone)
                rule.forget(gone)
            at = now + rng.randint(0, 2 * timeout)
            look = look_at.look(at, read)
            for _ in range(10):
                missing = rng.sample(read + unlisted, rng.randint(0, 3))
                partition = rng.randint(0, 2)
                entered = rng.choice([0, rng.randint(0, at)])
                first = rng.randint(max(0, at - 3 * timeout), at)
                want = all(rule.gave_up(b, partition, entered, first, at) for b in missing)
                listed = set(missing) <= set(read) and missing
                got = (look.may_give_up(partition, entered) if listed else True) \
                    and look.gave_up(missing, partition, entered, first)
                assert got == want, (missing, partition, entered, first, at)
                judged += 1
    assert judged > 10_000
