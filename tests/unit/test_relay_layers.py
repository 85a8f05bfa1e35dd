"""The relay's delay line at volume and at its limits (the state machine in tests/model covers the interleavings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.layers import QueueFull, RelayLayers

MS = 1_000_000


def quote(i: int) -> tuple:
    return (b"Q", 1_700_000_000_000_000_000 + i, i % 97, 1_000_000 + i, 100, 1_000_100 + i, 200)


def test_a_delay_far_larger_than_memory_goes_through_its_file_in_order_within_the_bound(tmp_path: Path) -> None:
    memory = 64 << 10
    lay = RelayLayers(100 * MS, memory_bytes=memory, spill_dir=str(tmp_path))
    sent = [quote(i) for i in range(200_000)]
    got: list[tuple] = []
    now = 0
    for k in range(0, len(sent), 50):  # 50 messages per ms for 4 s, 100 ms late: 5,000 held at a time, about 200 KB encoded
        lay.offer(sent[k:k + 50], now)
        got += lay.due(now)
        assert lay.held_bytes <= memory
        now += MS
    assert lay.spill_peak_bytes > 2 * memory
    assert list(tmp_path.iterdir()) == []  # the spill file is unlinked while open
    while lay.queued:
        now += MS
        got += lay.due(now)
    assert got == sent
    assert lay.spill_end == 0  # read out and started over
    lay.close()


def test_a_spill_that_cannot_be_written_stops_the_relay_loudly(tmp_path: Path) -> None:
    lay = RelayLayers(10 * MS, memory_bytes=100, spill_dir=str(tmp_path / "gone"))
    with pytest.raises(QueueFull, match="cannot spill"):
        lay.offer([quote(i) for i in range(10)], 0)


def test_more_than_the_bound_is_refused_loudly_and_what_was_held_still_comes_out() -> None:
    lay = RelayLayers(10 * MS, max_queued_messages=25)
    lay.offer([quote(i) for i in range(20)], 0)
    with pytest.raises(QueueFull, match="over the bound of 25"):
        lay.offer([quote(i) for i in range(20, 30)], 0)
    assert lay.due(10 * MS) == [quote(i) for i in range(20)]
