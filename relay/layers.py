"""The layers a relay can put between our channel in and our channel out: a filter and a delay line.

Sans-I/O but for one file: `offer(messages, now_ns)` takes what the upstream line handler
delivered (in order, exactly once); `due(now_ns)` gives back, in the same order, what is due
for the plant now; `next_due_ns()` says when the next batch is.

Rules:
1. Filter: with an instrument set, a market or directory message passes only if its instrument
   id is in the set. Session events (`S`) never pass: the downstream plant has its own session.
2. Delay: a batch offered at `now_ns` is due at `now_ns + delay_ns`, never earlier; order is kept.
   Without a delay a batch passes as it came (no copy, no encoding).
3. A delayed batch is held encoded (the channel's own message blocks, about 40 bytes a message
   instead of about 150 as tuples, and nothing for the garbage collector to walk), in memory up
   to `memory_bytes`. Past that, batches are appended to a spill file (opened in `spill_dir`
   and unlinked at once, so a crash leaves nothing behind) and read back in order, a chunk at a
   time, as the memory queue drains below half its bound; once the file is read out it is
   truncated and batches stay in memory again. So a 15-minute delay at 100 k msg/s (90 M
   messages, about 4 GB) needs the disk, not the memory.
4. Bounded: more than `max_queued_messages` held, or a spill write that fails (disk full), is
   `QueueFull`, which the shell reports loudly and stops on: never a silent drop.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections import deque
from typing import Any

from decoders import CODECS, SYSTEM_EVENT
from decoders.moldudp64 import decode_messages

__all__ = ["RelayLayers", "QueueFull"]

# a held batch: due ns, payload bytes, message count, 4 spare; then the messages as MoldUDP64 blocks (2-byte length
# each), so the 20-byte head stands where a datagram's header does and the datagram decoder reads the blocks
_HEAD = struct.Struct(">QII4x")
_LEN = struct.Struct(">H")
MAX_BATCH = 32_768  # messages per held batch (a count of 65,535 would read as MoldUDP64's end of session)
READ_CHUNK = 1 << 20  # bytes read back from the spill file per call, so a refill never stalls the loop


class QueueFull(RuntimeError):
    """The delay line holds more than its bound (rate x delay exceeds max_queued_messages), or cannot spill."""


def encode_batch(due_ns: int, messages: list[tuple]) -> bytes:
    enc = CODECS.encode
    parts = [b""]
    for m in messages:
        e = enc(m)
        parts += (_LEN.pack(len(e)), e)
    parts[0] = _HEAD.pack(due_ns, sum(map(len, parts)), len(messages))
    return b"".join(parts)


class RelayLayers:
    """Filter, then delay; see the module rules."""

    def __init__(self, delay_ns: int = 0, instruments: set[int] | None = None, max_queued_messages: int = 10_000_000,
                 memory_bytes: int = 256 << 20, spill_dir: str = "") -> None:
        if delay_ns < 0 or max_queued_messages < 1 or memory_bytes < 1:
            raise ValueError("delay must not be negative and the bounds must be positive")
        self.delay_ns = delay_ns
        self.instruments = instruments or None
        self.max_queued = max_queued_messages
        self.memory_bytes = memory_bytes
        self.spill_dir = spill_dir or None
        self.queue: deque[Any] = deque()  # (due ns, messages) without a delay; else encoded batches; due times non-decreasing
        self.held_bytes = 0  # encoded bytes in `queue`
        self.queued = 0  # messages held, memory and file
        self.passed = 0
        self.filtered = 0
        self.spill: Any = None  # the spill file, opened at the first spill
        self.spill_read = 0  # offset of the next unread batch in it
        self.spill_end = 0  # bytes written to it
        self.spill_messages = 0  # messages in it not read back yet
        self.spilled_batches = 0
        self.spill_peak_bytes = 0

    # -- in

    def offer(self, messages: list | tuple, now_ns: int) -> None:
        keep = self.instruments
        out = [m for m in messages if m[0] != SYSTEM_EVENT and (keep is None or m[2] in keep)]
        self.filtered += len(messages) - len(out)
        if not out:
            return
        if self.queued + len(out) > self.max_queued:
            raise QueueFull(f"{self.queued + len(out):,} messages held for the delay, over the bound of {self.max_queued:,}")
        self.queued += len(out)
        if not self.delay_ns:
            self.queue.append((now_ns, out))
            return
        for i in range(0, len(out), MAX_BATCH):
            part = out[i:i + MAX_BATCH] if len(out) > MAX_BATCH else out
            batch = encode_batch(now_ns + self.delay_ns, part)
            if self.spill_end > self.spill_read or self.held_bytes + len(batch) > self.memory_bytes:
                self._spill(batch, len(part))  # the file's tail is later than all of memory: once spilling, append there
            else:
                self.queue.append(batch)
                self.held_bytes += len(batch)

    def _spill(self, batch: bytes, count: int) -> None:
        try:
            if self.spill is None:
                fd, path = tempfile.mkstemp(prefix="md-relay-delay-", dir=self.spill_dir)
                os.unlink(path)  # nothing is left behind, whatever way the relay ends
                self.spill = os.fdopen(fd, "w+b", buffering=0)
            self.spill.seek(self.spill_end)
            self.spill.write(batch)
        except OSError as exc:
            raise QueueFull(f"cannot spill the delay to disk ({exc}) with {self.queued:,} messages held") from None
        self.spill_end += len(batch)
        self.spill_messages += count
        self.spilled_batches += 1
        self.spill_peak_bytes = max(self.spill_peak_bytes, self.spill_end - self.spill_read)

    def _refill(self) -> None:
        """Move the next chunk of spilled batches back to memory (in order)."""
        f = self.spill
        f.seek(self.spill_read)
        data = f.read(max(min(READ_CHUNK, self.memory_bytes - self.held_bytes), _HEAD.size))  # within the memory bound
        off = 0
        while off + _HEAD.size <= len(data):
            size = _HEAD.size + _HEAD.unpack_from(data, off)[1]
            if off + size > len(data):
                if off or self.queue:
                    break  # the rest of this batch comes with a later chunk, when memory has room for it
                data += f.read(size - len(data))  # memory is empty: read the next batch whole, whatever its size
            batch = data[off:off + size]
            self.queue.append(batch)
            self.held_bytes += size
            self.spill_messages -= _HEAD.unpack_from(batch)[2]
            off += size
        self.spill_read += off
        if self.spill_read >= self.spill_end:  # read out: start the file over
            f.truncate(0)
            self.spill_read = self.spill_end = 0

    # -- out

    def next_due_ns(self) -> int | None:
        if not self.queue and self.spill_end > self.spill_read:
            self._refill()  # a batch larger than the memory bound went straight to the file
        if not self.queue:
            return None
        head = self.queue[0]
        return head[0] if self.delay_ns == 0 else _HEAD.unpack_from(head)[0]

    def due(self, now_ns: int) -> list[tuple]:
        out: list[tuple] = []
        q = self.queue
        if not self.delay_ns:
            while q and q[0][0] <= now_ns:
                out += q.popleft()[1]
        else:
            if self.spill_end > self.spill_read and (not q or self.held_bytes < self.memory_bytes // 2):
                self._refill()
            while q:
                due_ns, _, count = _HEAD.unpack_from(q[0])
                if due_ns > now_ns:
                    break
                batch = q.popleft()
                self.held_bytes -= len(batch)
                out += decode_messages(batch, count, CODECS)
                if not q and self.spill_end > self.spill_read:
                    self._refill()
        self.queued -= len(out)
        self.passed += len(out)
        return out

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()
            self.spill = None
