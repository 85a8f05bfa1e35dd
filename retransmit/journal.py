"""The journal: sequenced message blocks by sequence number, bounded by count, bytes and age.

Invariants:
1. Sequence numbers held are contiguous: `first_sequence <= seq < next_sequence`.
2. `append` only accepts `next_sequence` (or anything, when empty); a gap in what is
   appended is a caller bug and raises, because a journal with holes would serve a
   retransmission that silently skips messages.
3. Trimming is from the oldest end only, whenever any bound is exceeded, message by
   message (whole segments at a time where they can go whole).
4. `get` costs O(log segments + count), whatever the journal's size.
Pure data structure: time comes in as `now_ns`, no clock is read here.

What is held is a list of segments, each a run of consecutive messages appended together:
either a list of blocks (`extend`, `append`: the server's mirror, a journal file) or framed
bytes with the offsets of their blocks, each block after its 2-byte big-endian length as a
datagram carries it (`extend_datagram`, `extend_datagrams`: the plant's own datagrams). The
plant journals every datagram it sends without slicing it message by message; a block is
cut out only when a retransmission asks for it, which is rare next to publishing. `pieces`
hands a retransmission whole runs of framed messages to copy instead of packing each message
alone, framing what list segments hold in one call per run of them. A trimmed prefix is
deleted once it is more than half the segments, so memory stays within twice the bounds and
each segment is moved O(1) times on average.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import Any

from decoders.moldudp64 import frame_blocks

__all__ = ["Journal", "JournalGap", "Piece"]

Piece = tuple[bytes, Any, int, int]  # framed data, the offsets of its blocks, first block, end block (Journal.pieces)


class JournalGap(ValueError):
    """An append that would leave a hole in the journal."""


class Journal:
    """Holds the newest messages of one session; oldest are dropped first."""

    __slots__ = ("max_messages", "max_bytes", "max_age_ns", "_firsts", "_data", "_offsets", "_counts", "_sizes", "_times", "_head", "_skip",
                 "first_sequence", "next_sequence", "nbytes", "trimmed")

    def __init__(self, max_messages: int = 1_000_000, max_bytes: int = 256 << 20, max_age_ns: int | None = None) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("journal bounds must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_age_ns = max_age_ns
        self.reset(1)
        self.trimmed = 0  # messages dropped to respect the bounds

    def __len__(self) -> int:
        return self.next_sequence - self.first_sequence

    def reset(self, first_sequence: int) -> None:
        """Forget everything; the next append must carry `first_sequence` (new session, image)."""
        # segment i: first sequence _firsts[i], _counts[i] messages appended at _times[i]; _data[i] is a list of
        # blocks (_offsets[i] None) or a datagram whose block k is data[off[k] + 2 : off[k + 1]] (off = _offsets[i]:
        # where each block's 2-byte length prefix starts, then where the last block ends)
        self._firsts: list[int] = []
        self._data: list[list[bytes] | bytes] = []
        self._offsets: list[array | bytes | None] = []  # bytes: the same uint16 offsets, from the native packer
        self._counts: list[int] = []
        self._sizes: list[int] = []  # bytes of each segment's messages, so that whole segments are trimmed at once
        self._times: list[int] = []
        self._head = 0  # segments before it are trimmed, not yet deleted
        self._skip = 0  # messages of segment _head already trimmed
        self.nbytes = 0
        self.first_sequence = self.next_sequence = first_sequence

    # -- appending ----------------------------------------------------------

    def _check(self, sequence: int) -> None:
        if self.next_sequence != self.first_sequence:
            if sequence != self.next_sequence:
                raise JournalGap(f"append of {sequence}, journal expects {self.next_sequence}")
        else:
            self.first_sequence = self.next_sequence = sequence

    def _add(self, sequence: int, data: list[bytes] | bytes, offsets: array | None, count: int, nbytes: int, now_ns: int) -> None:
        self._firsts.append(sequence)
        self._data.append(data)
        self._offsets.append(offsets)
        self._counts.append(count)
        self._sizes.append(nbytes)
        self._times.append(now_ns)
        self.next_sequence = sequence + count
        self.nbytes += nbytes
        self._trim(now_ns)

    def append(self, sequence: int, block: bytes, now_ns: int) -> None:
        self._check(sequence)
        self._add(sequence, [block], None, 1, len(block), now_ns)

    def extend(self, sequence: int, blocks: list[bytes], now_ns: int) -> None:
        """Append consecutive blocks from `sequence` on: one check and one trim for all of them."""
        if not blocks:
            return
        self._check(sequence)
        blocks = list(blocks)
        self._add(sequence, blocks, None, len(blocks), sum(map(len, blocks)), now_ns)

    def extend_datagram(self, sequence: int, datagram: bytes, block_starts: list[int], end: int, now_ns: int) -> None:
        """Append a datagram's messages, held as the datagram itself: block k is the message whose 2-byte length
        prefix is at `block_starts[k]`, the last one ending at `end`."""
        if not block_starts:
            return
        self._check(sequence)
        offsets = array("H", block_starts)  # a MoldUDP64 datagram is under 64 KiB
        offsets.append(end)
        count = len(block_starts)
        self._add(sequence, datagram, offsets, count, end - block_starts[0] - 2 * count, now_ns)

    def extend_datagrams(self, firsts: list[int], datagrams: list[bytes], offsets: list[bytes], counts: list[int], sizes: list[int],
                         now_ns: int) -> None:
        """Append consecutive datagrams in one call (the plant's native packer, decoders/_native_seal.c): datagram i
        starts at sequence firsts[i] and holds counts[i] blocks, whose starts and end are offsets[i] as native
        unsigned 16-bit integers; sizes[i] is its messages' bytes. One check and one trim for all of them."""
        if not datagrams:
            return
        self._check(firsts[0])
        n = len(datagrams)
        self._firsts += firsts
        self._data += datagrams
        self._offsets += offsets
        self._counts += counts
        self._sizes += sizes
        self._times += [now_ns] * n
        self.next_sequence = firsts[-1] + counts[-1]
        self.nbytes += sum(sizes)
        self._trim(now_ns)

    # -- trimming -----------------------------------------------------------

    def expire(self, now_ns: int) -> None:
        """Apply the age bound; call from a timer, appends apply it too."""
        self._trim(now_ns)

    def _block_bytes(self, segment: int, k: int, stop: int) -> int:
        """Bytes of blocks k..stop-1 of `segment`."""
        offsets = self._offsets[segment]
        if offsets is None:
            return sum(map(len, self._data[segment][k:stop]))  # type: ignore[index]
        if type(offsets) is bytes:
            offsets = memoryview(offsets).cast("H")
        return offsets[stop] - offsets[k] - 2 * (stop - k)

    def _drop(self, n: int) -> None:
        """Trim the `n` oldest messages, whole segments at once where they go whole."""
        head, skip = self._head, self._skip
        counts, firsts = self._counts, self._firsts
        target = self.first_sequence + n  # the new first sequence
        last = head if skip + n <= counts[head] else bisect_right(firsts, target - 1, head) - 1  # holds the last one trimmed
        if last == head:
            self.nbytes -= self._block_bytes(head, skip, skip + n)
        else:
            self.nbytes -= (self._block_bytes(head, skip, counts[head]) + sum(self._sizes[head + 1 : last])
                            + self._block_bytes(last, 0, target - firsts[last]))
        head, skip = last, target - firsts[last]
        if skip == counts[head]:
            head, skip = head + 1, 0
        self._head, self._skip = head, skip
        self.first_sequence += n
        self.trimmed += n

    def _trim(self, now_ns: int) -> None:
        start = self.first_sequence
        excess = self.next_sequence - self.first_sequence - self.max_messages
        if excess > 0:
            self._drop(excess)
        while self.nbytes > self.max_bytes:
            self._drop(1)  # over the byte bound: one message at a time
        if self.max_age_ns is not None:
            horizon = now_ns - self.max_age_ns
            while self.next_sequence - self.first_sequence > 1 and self._times[self._head] < horizon:
                self._drop(min(self._counts[self._head] - self._skip, self.next_sequence - self.first_sequence - 1))
        if self.first_sequence == start:
            return
        head = self._head
        if head > len(self._firsts) - head:  # the dead prefix is over half the segments: delete it
            for lst in (self._firsts, self._data, self._offsets, self._counts, self._sizes, self._times):
                del lst[:head]
            self._head = 0

    # -- reading ------------------------------------------------------------

    def get(self, sequence: int, count: int) -> list[bytes]:
        """Blocks `sequence .. sequence+count-1`, clipped to what is held (possibly empty)."""
        seq = max(sequence, self.first_sequence)
        stop = min(sequence + count, self.next_sequence)
        out: list[bytes] = []
        if seq >= stop:
            return out
        firsts = self._firsts
        i = bisect_right(firsts, seq, self._head) - 1
        while seq < stop:
            k = seq - firsts[i]
            n = min(self._counts[i] - k, stop - seq)
            data, offsets = self._data[i], self._offsets[i]
            if offsets is None:
                out += data[k : k + n]
            else:
                if type(offsets) is bytes:
                    offsets = memoryview(offsets).cast("H")
                out += [data[offsets[j] + 2 : offsets[j + 1]] for j in range(k, k + n)]
            seq += n
            i += 1
        return out

    def pieces(self, sequence: int, count: int) -> list[Piece]:
        """Blocks `sequence .. sequence+count-1`, clipped to what is held, framed: (data, offsets, k, stop) runs whose
        blocks k..stop-1 are `data[offsets[k]:offsets[stop]]`, each after its 2-byte length (offsets as `frame_blocks`
        gives them): a framed segment's own bytes, or consecutive list segments framed together, in one call. It walks
        the segments as `get` does, inline: sharing the walk through a list or a generator cost the answers 7-12 %
        (bench/retransmit.py core figure, one-message segments)."""
        seq = max(sequence, self.first_sequence)
        stop = min(sequence + count, self.next_sequence)
        out: list[Piece] = []
        listed: list[bytes] = []  # blocks of list segments not yet framed
        firsts = self._firsts
        i = bisect_right(firsts, seq, self._head) - 1 if seq < stop else 0
        while seq < stop:
            k = seq - firsts[i]
            n = min(self._counts[i] - k, stop - seq)
            data, offsets = self._data[i], self._offsets[i]
            if offsets is None:
                listed += data[k : k + n]  # type: ignore[index]
            else:
                if listed:
                    out.append((*frame_blocks(listed), 0, len(listed)))
                    listed = []
                if type(offsets) is bytes:
                    offsets = memoryview(offsets).cast("H")
                out.append((data, offsets, k, k + n))  # type: ignore[arg-type]
            seq += n
            i += 1
        if listed:
            out.append((*frame_blocks(listed), 0, len(listed)))
        return out
