"""The journal on disk, so that a restarted retransmission server keeps its history.

File: `MDJ1` + session (10 bytes), then records `sequence (u64 BE) | length (u16 BE) |
message block`, appended as the mirror delivers. Loading trusts nothing: a torn last
record (a crash mid-write) is dropped and counted; any other defect (bad magic, a
sequence that does not follow, a record past the end) stops the load there with the
byte offset in the error, keeping the contiguous history read so far. Writes are
buffered and flushed from the server's loop; they are not fsync'ed, so a power loss can
cost the last moments, which peers or the plant's journal can still serve.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["JournalFile", "LoadedJournal", "MAGIC"]

MAGIC = b"MDJ1"
_HEADER = struct.Struct(">4s10s")
_RECORD = struct.Struct(">QH")


@dataclass
class LoadedJournal:
    session: bytes | None = None
    first_sequence: int = 0
    blocks: list[bytes] = field(default_factory=list)
    torn_tail_bytes: int = 0
    error: str = ""  # why loading stopped early, with the offset, if it did
    trimmed: int = 0  # older records left out to respect max_messages

    @property
    def clean(self) -> bool:
        """The file holds exactly what was loaded, so appending to it is safe."""
        return not (self.torn_tail_bytes or self.error or self.trimmed)


class JournalFile:
    """Append-only store for one session's journal."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] | None = None
        self.session: bytes | None = None
        self.next_sequence = 0
        self.bytes_written = 0

    def load(self, max_messages: int) -> LoadedJournal:
        """The newest contiguous `max_messages` of the file (empty if there is no file)."""
        out = LoadedJournal()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return out
        if len(data) < _HEADER.size:
            out.error = f"{self.path}: {len(data)} bytes, shorter than the header"
            return out
        magic, session = _HEADER.unpack_from(data, 0)
        if magic != MAGIC or not session.isascii():
            out.error = f"{self.path}: not a journal file (bad header at offset 0)"
            return out
        out.session = session
        off = _HEADER.size
        blocks: list[bytes] = []
        first = expected = 0
        while off < len(data):
            if off + _RECORD.size > len(data):
                out.torn_tail_bytes = len(data) - off
                break
            seq, length = _RECORD.unpack_from(data, off)
            end = off + _RECORD.size + length
            if end > len(data):
                out.torn_tail_bytes = len(data) - off
                break
            if length == 0 or (expected and seq != expected):
                out.error = f"{self.path}: record at offset {off} has sequence {seq} (expected {expected}) and length {length}"
                break
            if not expected:
                first = seq
            blocks.append(data[off + _RECORD.size : end])
            expected = seq + 1
            off = end
        if len(blocks) > max_messages:
            out.trimmed = len(blocks) - max_messages
            first += out.trimmed
            blocks = blocks[-max_messages:]
        out.first_sequence = first
        out.blocks = blocks
        return out

    def reset(self, session: bytes, first_sequence: int, blocks: list[bytes] | None = None) -> None:
        """Start the file over for `session` (new session, or history dropped), optionally with blocks."""
        self.close()
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        fh = open(tmp, "wb")  # noqa: SIM115 - becomes the open journal below
        fh.write(_HEADER.pack(MAGIC, session))
        self._fh = fh
        self.bytes_written = 0
        self.session = session
        self.next_sequence = first_sequence
        for b in blocks or ():
            self.append(self.next_sequence, b)
        fh.flush()
        os.replace(tmp, self.path)

    def append(self, sequence: int, block: bytes) -> None:
        if self._fh is None or sequence != self.next_sequence:
            raise ValueError(f"journal file expects {self.next_sequence}, got {sequence}")
        self._fh.write(_RECORD.pack(sequence, len(block)))
        self._fh.write(block)
        self.next_sequence = sequence + 1
        self.bytes_written += _RECORD.size + len(block)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def open_for_append(self, session: bytes, next_sequence: int) -> None:
        """Continue a file `load` found clean, appending from `next_sequence` (else use `reset`)."""
        self.close()
        self._fh = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self.session = session
        self.next_sequence = next_sequence

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
