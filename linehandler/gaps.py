"""Missing ranges of one stream, and the plan for recovering each by NACK.

Invariants:
1. Gaps are non-empty, disjoint, sorted by `first`, and lie in `[expected, horizon)` of the
   session that owns them: a sequence is in a gap exactly when it is known to exist and is
   neither delivered nor buffered.
2. A gap's recovery state (attempts, server, deadlines) survives splitting: when a
   message fills the middle of a gap, both halves keep the original detection time, so
   the give-up bound counts from when the loss was first seen.
3. Every operation a datagram can cause is O(log n + k) in the number of gaps n and the
   gaps it touches k (a sorted list keyed by `first`): a stream with ten thousand open
   gaps costs a datagram no more than one with ten.
4. `flagged` counts the gaps in recovery (asked for at least once, or given up), so the
   stream's quality is known without a scan; attempts and abandonment change through
   `note_attempt` and `abandon` only.
5. The earliest deadline is known without a scan either: every change to a gap's
   deadlines (`due_ns`, `timeout_ns`, `detected_ns`) is followed by `schedule(gap)`, and a
   gap's request state changes through `set_outstanding`, which keeps the count of requests
   in flight (a gap waiting on another handler's request, `by_other`, is not ours in flight).
   Deadlines sit in two heaps (NACKs due; timeouts and give-ups) whose entries are
   checked against the gap when they reach the top, so a stale entry is dropped, never
   obeyed. The handler model test compares both with a scan after every step.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count

from sortedcontainers import SortedKeyList

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
    by_other: bool = False  # outstanding on another handler's request heard on the request group, not on ours
    heard: int = 0  # times a heard request stood in for ours (at most one per own attempt: recovery.py)

    def copy_state(self, first: int, last: int) -> Gap:
        return Gap(first, last, self.detected_ns, self.due_ns, self.attempts, self.server, self.failures_on_server,
                   self.outstanding, self.timeout_ns, self.sent_first, self.sent_count, self.too_old_servers, self.abandoned,
                   self.by_other, self.heard)

    @property
    def flagged(self) -> bool:
        return bool(self.attempts or self.abandoned)


def _first(g: Gap) -> int:
    return g.first


_DUE, _TIMEOUT, _GIVE_UP = 0, 1, 2


class GapList:
    """Sorted disjoint gaps with range removal; see the module invariants."""

    def __init__(self, give_up_ns: int = 10_000_000_000) -> None:
        self.gaps: SortedKeyList = SortedKeyList(key=_first)
        self.flagged = 0
        self.give_up_ns = give_up_ns
        self._due: list[tuple[int, int, Gap, int]] = []  # (deadline, tie, gap, kind): NACKs that may go
        self._other: list[tuple[int, int, Gap, int]] = []  # request timeouts and give-ups
        self._tie = count()
        self._requests: dict[tuple[int, int], int] = {}  # (server, first sequence asked) -> outstanding gaps it covers

    def __len__(self) -> int:
        return len(self.gaps)

    def __bool__(self) -> bool:
        return bool(self.gaps)

    def __iter__(self) -> Iterator[Gap]:
        return iter(self.gaps)

    def add(self, gap: Gap) -> None:
        """Insert a gap that overlaps none (new losses lie past the horizon, or below `expected` after an image)."""
        if gap.first > gap.last:
            raise ValueError(f"empty gap {gap.first}-{gap.last}")
        gaps = self.gaps
        i = gaps.bisect_key_left(gap.first)
        if (i < len(gaps) and gaps[i].first <= gap.last) or (i > 0 and gaps[i - 1].last >= gap.first):
            raise ValueError(f"gap {gap.first}-{gap.last} overlaps an open gap")
        gaps.add(gap)
        if gap.flagged:
            self.flagged += 1
        if gap.outstanding and not gap.by_other:
            self._count_request(gap, 1)
        self.schedule(gap)

    def _overlapping(self, first: int, last: int) -> tuple[int, list[Gap]]:
        """The position of the first gap that holds any of `first..last`, and those gaps in order."""
        gaps = self.gaps
        i = gaps.bisect_key_right(first)
        if i > 0:
            prev = gaps[i - 1]
            if prev.last >= first:
                i -= 1
                if prev.last >= last:
                    return i, [prev]  # the common case: one gap holds the whole range
        start = i
        out = []
        n = len(gaps)
        while i < n:  # by position: islice() would chain every sublist to the end first
            g = gaps[i]
            if g.first > last:
                break
            out.append(g)
            i += 1
        return start, out

    def index_of(self, gap: Gap) -> int:
        return self.gaps.bisect_key_left(gap.first)

    def after(self, gap: Gap) -> Iterator[Gap]:
        """The gaps above `gap`, in order (lazily: a caller usually stops after a few)."""
        gaps = self.gaps
        i = self.index_of(gap) + 1
        while i < len(gaps):
            yield gaps[i]
            i += 1

    def remove_range(self, first: int, last: int) -> list[Gap]:
        """Sequences `first..last` arrived: trim, split or drop the gaps they touch.

        Returns the gaps that vanished entirely (for recovery figures)."""
        gaps = self.gaps
        if first > last or not gaps:
            return []
        i, hit = self._overlapping(first, last)
        if not hit:
            return []
        del gaps[i : i + len(hit)]  # by position: no search, no field-by-field comparison
        gone: list[Gap] = []
        for g in hit:
            if g.flagged:
                self.flagged -= 1
            if g.outstanding and not g.by_other:
                self._count_request(g, -1)
            if first <= g.first and g.last <= last:
                gone.append(g)
                continue
            if g.first < first:
                self.add(g.copy_state(g.first, first - 1))
            if g.last > last:
                self.add(g.copy_state(last + 1, g.last))
        return gone

    def drop_below(self, sequence: int) -> None:
        """Forget everything below `sequence` (an image or a skip moved past it)."""
        self.remove_range(0, sequence - 1)

    def note_attempt(self, gap: Gap) -> None:
        if not gap.flagged:
            self.flagged += 1
        gap.attempts += 1

    def abandon(self, gap: Gap, reason: str) -> None:
        if gap.abandoned:
            return
        if not gap.flagged:
            self.flagged += 1
        gap.abandoned = reason

    # -- requests in flight and deadlines ---------------------------------------

    def _count_request(self, gap: Gap, delta: int) -> None:
        key = (gap.server, gap.sent_first)
        n = self._requests.get(key, 0) + delta
        if n:
            self._requests[key] = n
        else:
            del self._requests[key]

    def set_outstanding(self, gap: Gap, outstanding: bool, by_other: bool = False) -> None:
        """A request for `gap` went (its server and sent_first already set) or ended; `by_other`: the request
        is another handler's, heard on the request group, so none of ours is in flight for it."""
        if gap.outstanding == outstanding and gap.by_other == (outstanding and by_other):
            return
        live = self._live(gap)
        if gap.outstanding and not gap.by_other and live:
            self._count_request(gap, -1)
        if outstanding and not by_other and live:
            self._count_request(gap, 1)
        gap.outstanding = outstanding
        gap.by_other = outstanding and by_other

    def in_flight(self) -> int:
        """Requests outstanding: one per (server, first sequence asked), however many gaps it covers."""
        return len(self._requests)

    def schedule(self, gap: Gap) -> None:
        """Note `gap`'s deadlines as they are now (call after changing any of them)."""
        if gap.abandoned:
            return
        tie = next(self._tie)
        heapq.heappush(self._other, (gap.detected_ns + self.give_up_ns, tie, gap, _GIVE_UP))
        if gap.outstanding:
            heapq.heappush(self._other, (gap.timeout_ns, tie, gap, _TIMEOUT))
        else:
            heapq.heappush(self._due, (gap.due_ns, tie, gap, _DUE))
        if len(self._due) + len(self._other) > 8 * len(self.gaps) + 64:
            self._rebuild()

    def _rebuild(self) -> None:
        """Drop every stale entry at once (they are dropped lazily otherwise): the heaps stay O(gaps)."""
        self._due, self._other = [], []
        for g in self.gaps:
            if not g.abandoned:
                tie = next(self._tie)
                self._other.append((g.detected_ns + self.give_up_ns, tie, g, _GIVE_UP))
                if g.outstanding:
                    self._other.append((g.timeout_ns, tie, g, _TIMEOUT))
                else:
                    self._due.append((g.due_ns, tie, g, _DUE))
        heapq.heapify(self._due)
        heapq.heapify(self._other)

    def _live(self, gap: Gap) -> bool:
        gaps = self.gaps
        i = gaps.bisect_key_left(gap.first)
        return i < len(gaps) and gaps[i] is gap

    def _valid(self, deadline: int, gap: Gap, kind: int) -> bool:
        if gap.abandoned or not self._live(gap):
            return False
        if kind == _DUE:
            return not gap.outstanding and deadline == gap.due_ns
        if kind == _TIMEOUT:
            return gap.outstanding and deadline == gap.timeout_ns
        return deadline == gap.detected_ns + self.give_up_ns

    def _top(self, heap: list) -> int | None:
        while heap:
            deadline, _, gap, kind = heap[0]
            if self._valid(deadline, gap, kind):
                return deadline
            heapq.heappop(heap)
        return None

    def next_deadline(self, requests_full: bool) -> int | None:
        """The earliest deadline of any open gap: a timeout, a give-up, or (unless every request slot is
        taken, when a due NACK must wait for an answer anyway) a NACK that may go."""
        other = self._top(self._other)
        if requests_full:
            return other
        due = self._top(self._due)
        return due if other is None else other if due is None else min(due, other)

    def head(self) -> Gap | None:
        return self.gaps[0] if self.gaps else None

    def missing(self) -> int:
        return sum(g.last - g.first + 1 for g in self.gaps)
