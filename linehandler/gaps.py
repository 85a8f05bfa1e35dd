"""Missing ranges of one stream, and the plan for recovering each by NACK.

Invariants:
1. Gaps are disjoint, sorted by `first`, and lie in `[expected, horizon)` of the session
   that owns them: a sequence is in a gap exactly when it is known to exist and is
   neither delivered nor buffered.
2. A gap's recovery state (attempts, server, deadlines) survives splitting: when a
   message fills the middle of a gap, both halves keep the original detection time, so
   the give-up bound counts from when the loss was first seen.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Gap", "GapList"]


@dataclass(slots=True)
class Gap:
    first: int
    last: int
    detected_ns: int
    due_ns: int  # when the next NACK may go (end of gap-wait, or of a backoff)
    attempts: int = 0
    server: int = 0
    failures_on_server: int = 0
    outstanding: bool = False  # a request for it is in flight
    timeout_ns: int = 0  # when the in-flight request counts as failed
    sent_first: int = 0
    sent_count: int = 0
    too_old_servers: int = 0  # bit set of servers that answered "too old"
    abandoned: str = ""  # reason, once recovery has been given up

    def copy_state(self, first: int, last: int) -> Gap:
        return Gap(first, last, self.detected_ns, self.due_ns, self.attempts, self.server, self.failures_on_server,
                   self.outstanding, self.timeout_ns, self.sent_first, self.sent_count, self.too_old_servers, self.abandoned)


class GapList:
    """Sorted disjoint gaps with range removal."""

    def __init__(self) -> None:
        self.gaps: list[Gap] = []

    def __len__(self) -> int:
        return len(self.gaps)

    def __iter__(self):
        return iter(self.gaps)

    def add(self, gap: Gap) -> None:
        """Append a gap above every existing one (new losses are always past the horizon)."""
        if self.gaps and self.gaps[-1].last >= gap.first:
            raise ValueError(f"gap {gap.first}-{gap.last} overlaps {self.gaps[-1].first}-{self.gaps[-1].last}")
        self.gaps.append(gap)

    def remove_range(self, first: int, last: int) -> list[Gap]:
        """Sequences `first..last` arrived: trim, split or drop the gaps they touch.

        Returns the gaps that vanished entirely (for recovery figures)."""
        if first > last or not self.gaps:
            return []
        gone: list[Gap] = []
        out: list[Gap] = []
        for g in self.gaps:
            if g.last < first or g.first > last:
                out.append(g)
                continue
            if first <= g.first and g.last <= last:
                gone.append(g)
                continue
            if g.first < first:
                out.append(g.copy_state(g.first, first - 1))
            if g.last > last:
                out.append(g.copy_state(last + 1, g.last))
        self.gaps = out
        return gone

    def drop_below(self, sequence: int) -> None:
        """Forget everything below `sequence` (an image or a skip moved past it)."""
        self.remove_range(0, sequence - 1)

    def head(self) -> Gap | None:
        return self.gaps[0] if self.gaps else None

    def missing(self) -> int:
        return sum(g.last - g.first + 1 for g in self.gaps)
