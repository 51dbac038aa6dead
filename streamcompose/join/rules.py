"""The rules of a join, written once: how many branch results complete a request, which
results are taken, and what a request that timed out gives. The joiner step and
:class:`~streamcompose.testing.LocalRunner` both decide through :class:`JoinRule`.

>>> from streamcompose.topology.model import JoinSpec
>>> rule = JoinRule(JoinSpec(strategy="soft_vote", mode="quorum", quorum=2), ("a", "b", "c"))
>>> rule.verdict({"c", "a"}, None)
Verdict(answered=('a', 'c'), missing=(), complete=True, dead_letter=False)
>>> rule.verdict({"b"}, None)
Verdict(answered=('b',), missing=('a', 'c'), complete=False, dead_letter=False)
>>> rule.accepts({"a", "c"}, "b", None)
False
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from streamcompose.topology.model import JoinSpec


@dataclass(frozen=True)
class Verdict:
    """What a join gives for the branch results it has: the branches fused (in the
    joiner's input order), the expected ones missing (none once complete), whether it is
    complete, and whether it goes to the dead-letter topic instead (``on_timeout: dlq``)."""

    answered: tuple[str, ...]
    missing: tuple[str, ...]
    complete: bool
    dead_letter: bool


class JoinRule:
    """Decides, for one joiner, when a request is complete and what it gives."""

    def __init__(self, spec: JoinSpec, branches: Sequence[str]) -> None:
        self.spec, self.branches = spec, tuple(branches)
        self._needed = spec.needed(len(self.branches))

    def needed(self, expect: Sequence[str] | None) -> int:
        """Results that complete a request: one per expected branch when a router named
        them (mixture of experts), else what ``mode`` asks of all branches."""
        return len(expect) if expect else self._needed

    def accepts(self, seen: Collection[str], branch: str, expect: Sequence[str] | None
                ) -> bool:
        """Whether a result of ``branch`` is taken: not a repeat, and still needed."""
        return branch not in seen and len(seen) < self.needed(expect)

    def missing(self, seen: Collection[str], expect: Sequence[str] | None
                ) -> tuple[str, ...]:
        """The branches expected (those a router named, else all) without a result."""
        return tuple(b for b in (expect or self.branches) if b not in seen)

    def verdict(self, seen: Collection[str], expect: Sequence[str] | None) -> Verdict:
        answered = tuple(b for b in self.branches if b in seen)
        complete = len(answered) >= self.needed(expect)
        missing = () if complete else self.missing(seen, expect)
        return Verdict(answered, missing, complete,
                       not complete and self.spec.on_timeout == "dlq")
