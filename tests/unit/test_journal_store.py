"""The journal file: round trip, a torn tail, corruption reported with its offset, trimming."""

from __future__ import annotations

from pathlib import Path

from retransmit.journal_store import JournalFile

S = b"MTQP000042"


def write(path: Path, first: int, n: int) -> None:
    f = JournalFile(path)
    f.reset(S, first)
    for i in range(n):
        f.append(first + i, bytes([65 + i % 26]) * (1 + i % 5))
    f.close()


def test_round_trip_and_append_after_load(tmp_path: Path) -> None:
    p = tmp_path / "j.bin"
    write(p, 100, 50)
    f = JournalFile(p)
    loaded = f.load(1000)
    assert (loaded.session, loaded.first_sequence, len(loaded.blocks), loaded.clean) == (S, 100, 50, True)
    f.open_for_append(S, 150)
    f.append(150, b"new")
    f.close()
    again = JournalFile(p).load(1000)
    assert again.blocks[-1] == b"new" and len(again.blocks) == 51


def test_torn_tail_is_dropped_and_counted(tmp_path: Path) -> None:
    p = tmp_path / "j.bin"
    write(p, 1, 20)
    p.write_bytes(p.read_bytes()[:-3])  # a crash mid-write
    loaded = JournalFile(p).load(1000)
    assert len(loaded.blocks) == 19 and loaded.torn_tail_bytes > 0 and not loaded.clean and not loaded.error


def test_corruption_stops_the_load_at_its_offset(tmp_path: Path) -> None:
    p = tmp_path / "j.bin"
    write(p, 1, 20)
    data = bytearray(p.read_bytes())
    data[14 + 5 * 11 + 15] ^= 0xFF  # somewhere in the sequence number of a later record
    p.write_bytes(bytes(data))
    loaded = JournalFile(p).load(1000)
    assert loaded.error and "offset" in loaded.error and 0 < len(loaded.blocks) < 20
    assert JournalFile(tmp_path / "missing.bin").load(10).session is None
    (tmp_path / "junk.bin").write_bytes(b"not a journal at all")
    assert "not a journal file" in JournalFile(tmp_path / "junk.bin").load(10).error


def test_load_keeps_the_newest_within_the_bound(tmp_path: Path) -> None:
    p = tmp_path / "j.bin"
    write(p, 1, 30)
    loaded = JournalFile(p).load(10)
    assert (loaded.first_sequence, len(loaded.blocks), loaded.trimmed) == (21, 10, 20)
