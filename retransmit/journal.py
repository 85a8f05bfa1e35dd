"""The journal: sequenced message blocks by sequence number, bounded by count, bytes and age.

Invariants:
1. Sequence numbers held are contiguous: `first_sequence <= seq < next_sequence`.
2. `append` only accepts `next_sequence` (or anything, when empty); a gap in what is
   appended is a caller bug and raises, because a journal with holes would serve a
   retransmission that silently skips messages.
3. Trimming is from the oldest end only, whenever any bound is exceeded.
Pure data structure: time comes in as `now_ns`, no clock is read here.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Journal", "JournalGap"]


class JournalGap(ValueError):
    """An append that would leave a hole in the journal."""


class Journal:
    """Holds the newest messages of one session; oldest are dropped first."""

    def __init__(self, max_messages: int = 1_000_000, max_bytes: int = 256 << 20, max_age_ns: int | None = None) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("journal bounds must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_age_ns = max_age_ns
        self._blocks: deque[bytes] = deque()
        self._times: deque[int] = deque()
        self.first_sequence = 1
        self.nbytes = 0
        self.trimmed = 0  # messages dropped to respect the bounds

    @property
    def next_sequence(self) -> int:
        return self.first_sequence + len(self._blocks)

    def __len__(self) -> int:
        return len(self._blocks)

    def reset(self, first_sequence: int) -> None:
        """Forget everything; the next append must carry `first_sequence` (new session, image)."""
        self._blocks.clear()
        self._times.clear()
        self.nbytes = 0
        self.first_sequence = first_sequence

    def append(self, sequence: int, block: bytes, now_ns: int) -> None:
        if self._blocks and sequence != self.next_sequence:
            raise JournalGap(f"append of {sequence}, journal expects {self.next_sequence}")
        if not self._blocks:
            self.first_sequence = sequence
        self._blocks.append(block)
        self._times.append(now_ns)
        self.nbytes += len(block)
        self._trim(now_ns)

    def extend(self, sequence: int, blocks: list[bytes], now_ns: int) -> None:
        """Append consecutive blocks from `sequence` on: one check and one trim for all of them."""
        if not blocks:
            return
        if self._blocks and sequence != self.next_sequence:
            raise JournalGap(f"append of {sequence}, journal expects {self.next_sequence}")
        if not self._blocks:
            self.first_sequence = sequence
        self._blocks.extend(blocks)
        self._times.extend([now_ns] * len(blocks))
        self.nbytes += sum(map(len, blocks))
        self._trim(now_ns)

    def expire(self, now_ns: int) -> None:
        """Apply the age bound; call from a timer, appends apply it too."""
        self._trim(now_ns)

    def _trim(self, now_ns: int) -> None:
        blocks, times = self._blocks, self._times
        while blocks and (len(blocks) > self.max_messages or self.nbytes > self.max_bytes):
            self.nbytes -= len(blocks.popleft())
            times.popleft()
            self.first_sequence += 1
            self.trimmed += 1
        if self.max_age_ns is not None:
            horizon = now_ns - self.max_age_ns
            while len(blocks) > 1 and times[0] < horizon:
                self.nbytes -= len(blocks.popleft())
                times.popleft()
                self.first_sequence += 1
                self.trimmed += 1

    def get(self, sequence: int, count: int) -> list[bytes]:
        """Blocks `sequence .. sequence+count-1`, clipped to what is held (possibly empty)."""
        start = max(sequence, self.first_sequence)
        stop = min(sequence + count, self.next_sequence)
        if start >= stop:
            return []
        base = start - self.first_sequence
        blocks = self._blocks
        return [blocks[i] for i in range(base, base + (stop - start))]
