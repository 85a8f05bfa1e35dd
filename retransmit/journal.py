"""The journal: sequenced message blocks by sequence number, bounded by count, bytes and age.

Invariants:
1. Sequence numbers held are contiguous: `first_sequence <= seq < next_sequence`.
2. `append` only accepts `next_sequence` (or anything, when empty); a gap in what is
   appended is a caller bug and raises, because a journal with holes would serve a
   retransmission that silently skips messages.
3. Trimming is from the oldest end only, whenever any bound is exceeded.
4. `get` costs O(count), whatever the journal's size: the blocks live in a plain list
   read by slicing, and trimming only moves a start offset (a deque, indexed one
   message at a time, cost O(size) per message read from the middle). The dead prefix
   is deleted once it is more than half the list, so memory stays within twice the
   bounds and each trimmed block is moved O(1) times on average.
Pure data structure: time comes in as `now_ns`, no clock is read here.
"""

from __future__ import annotations

__all__ = ["Journal", "JournalGap"]


class JournalGap(ValueError):
    """An append that would leave a hole in the journal."""


class Journal:
    """Holds the newest messages of one session; oldest are dropped first."""

    __slots__ = ("max_messages", "max_bytes", "max_age_ns", "_blocks", "_times", "_start", "first_sequence", "nbytes", "trimmed")

    def __init__(self, max_messages: int = 1_000_000, max_bytes: int = 256 << 20, max_age_ns: int | None = None) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("journal bounds must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_age_ns = max_age_ns
        # _blocks[_start:] are held, _blocks[:_start] are trimmed but not yet deleted
        self._blocks: list[bytes] = []
        self._times: list[int] = []  # append time of each block, same indices as _blocks
        self._start = 0
        self.first_sequence = 1
        self.nbytes = 0
        self.trimmed = 0  # messages dropped to respect the bounds

    @property
    def next_sequence(self) -> int:
        return self.first_sequence + len(self._blocks) - self._start

    def __len__(self) -> int:
        return len(self._blocks) - self._start

    def reset(self, first_sequence: int) -> None:
        """Forget everything; the next append must carry `first_sequence` (new session, image)."""
        self._blocks = []
        self._times = []
        self._start = 0
        self.nbytes = 0
        self.first_sequence = first_sequence

    def append(self, sequence: int, block: bytes, now_ns: int) -> None:
        held = len(self._blocks) - self._start
        if held and sequence != self.first_sequence + held:
            raise JournalGap(f"append of {sequence}, journal expects {self.next_sequence}")
        if not held:
            self.first_sequence = sequence
        self._blocks.append(block)
        self._times.append(now_ns)
        self.nbytes += len(block)
        self._trim(now_ns)

    def extend(self, sequence: int, blocks: list[bytes], now_ns: int) -> None:
        """Append consecutive blocks from `sequence` on: one check and one trim for all of them."""
        if not blocks:
            return
        held = len(self._blocks) - self._start
        if held and sequence != self.first_sequence + held:
            raise JournalGap(f"append of {sequence}, journal expects {self.next_sequence}")
        if not held:
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
        start, end = self._start, len(blocks)
        nbytes = self.nbytes
        first = start
        while start < end and (end - start > self.max_messages or nbytes > self.max_bytes):
            nbytes -= len(blocks[start])
            start += 1
        if self.max_age_ns is not None:
            horizon = now_ns - self.max_age_ns
            while end - start > 1 and times[start] < horizon:
                nbytes -= len(blocks[start])
                start += 1
        if start == first:
            return
        self.nbytes = nbytes
        self.first_sequence += start - first
        self.trimmed += start - first
        if start > end - start:  # the dead prefix is over half the list: delete it (amortized O(1) per block)
            del blocks[:start]
            del times[:start]
            start = 0
        self._start = start

    def get(self, sequence: int, count: int) -> list[bytes]:
        """Blocks `sequence .. sequence+count-1`, clipped to what is held (possibly empty); O(count)."""
        start = max(sequence, self.first_sequence)
        stop = min(sequence + count, self.next_sequence)
        if start >= stop:
            return []
        base = self._start + start - self.first_sequence
        return self._blocks[base : base + (stop - start)]
