"""The layers a relay can put between our channel in and our channel out: a filter and a delay line.

Sans-I/O: `offer(messages, now_ns)` takes what the upstream line handler
delivered (in order, exactly once); `due(now_ns)` gives back, in the same order, what is due
for the plant now; `next_due_ns()` says when the next batch is.

Rules:
1. Filter: with an instrument set, a market or directory message passes only if its instrument
   id is in the set. Session events (`S`) never pass: the downstream plant has its own session.
2. Delay: a batch offered at `now_ns` is due at `now_ns + delay_ns`, never earlier; order is kept.
   The queue is bounded (`max_queued_messages`): going over it is an error the shell reports
   loudly and stops on, never a silent drop (holding rate x delay messages is the price of a
   delay; spilling them to disk is not built).
"""

from __future__ import annotations

from collections import deque

from decoders import SYSTEM_EVENT

__all__ = ["RelayLayers", "QueueFull"]


class QueueFull(RuntimeError):
    """The delay line holds more than its bound: rate x delay exceeds max_queued_messages."""


class RelayLayers:
    """Filter, then delay; see the module rules."""

    def __init__(self, delay_ns: int = 0, instruments: set[int] | None = None, max_queued_messages: int = 10_000_000) -> None:
        if delay_ns < 0 or max_queued_messages < 1:
            raise ValueError("delay must not be negative and the queue bound must be positive")
        self.delay_ns = delay_ns
        self.instruments = instruments or None
        self.max_queued = max_queued_messages
        self.queue: deque[tuple[int, list[tuple]]] = deque()  # (due ns, messages), due times non-decreasing
        self.queued = 0
        self.passed = 0
        self.filtered = 0

    def offer(self, messages: list | tuple, now_ns: int) -> None:
        keep = self.instruments
        out = [m for m in messages if m[0] != SYSTEM_EVENT and (keep is None or m[2] in keep)]
        self.filtered += len(messages) - len(out)
        if not out:
            return
        self.queued += len(out)
        if self.queued > self.max_queued:
            raise QueueFull(f"{self.queued:,} messages held for the delay, over the bound of {self.max_queued:,}")
        self.queue.append((now_ns + self.delay_ns, out))

    def next_due_ns(self) -> int | None:
        return self.queue[0][0] if self.queue else None

    def due(self, now_ns: int) -> list[tuple]:
        out: list[tuple] = []
        q = self.queue
        while q and q[0][0] <= now_ns:
            out += q.popleft()[1]
        self.queued -= len(out)
        self.passed += len(out)
        return out
