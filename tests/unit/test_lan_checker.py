"""The nothing-lost checker must catch every way a delivered stream can be wrong (no root needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lan.checker import check


def quote(seq: int, price: int = 100) -> dict:
    return {"type": "quote", "msg_type": "Q", "timestamp_ns": seq, "instrument_id": 1, "bid_price": price, "bid_size": 1,
            "ask_price": price + 1, "ask_size": 1}


def write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def plant(tmp_path: Path, n: int = 10) -> Path:
    return write(tmp_path / "plant.jsonl", [{"sequence": s, **quote(s)} for s in range(1, n + 1)])


def handler(tmp_path: Path, items: list[dict]) -> Path:
    start = [{"channel": "ch1", "event": "SessionStarted", "session": "X", "first_sequence": 1}]
    return write(tmp_path / "h.jsonl", start + items + [{"final": {"channels": {"ch1": {}}}}])


def msg(seq: int, **change) -> dict:
    return {"channel": "ch1", "sequence": seq, **quote(seq), **change}


def gap(first: int, last: int) -> dict:
    return {"channel": "ch1", "event": "GapEvent", "first": first, "last": last, "reason": "recovery_timeout", "gap": [first, last]}


def image(n: int) -> dict:
    return {"channel": "ch1", "event": "ImageApplied", "sequence": n, "instruments": 1, "dropped_buffered": 0}


def test_an_exact_stream_passes(tmp_path: Path) -> None:
    (v,), _ = check([plant(tmp_path)], handler(tmp_path, [msg(s) for s in range(1, 11)]))
    assert v.delivered == 10 and not v.gaps


@pytest.mark.parametrize(("items", "complaint"), [
    ([msg(s) for s in (1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10)], "duplicate or backwards"),
    ([msg(s) for s in (1, 2, 4, 3, 5, 6, 7, 8, 9, 10)], "silent hole"),
    ([msg(s) for s in (1, 2, 3, 5, 6, 7, 8, 9, 10)], "silent hole"),
    ([msg(s) for s in range(1, 10)], "stopped at 9"),
    ([msg(s) if s != 4 else msg(4, bid_price=99) for s in range(1, 11)], "message 4 differs"),
    ([msg(1), msg(2), gap(3, 4)] + [msg(s) for s in range(5, 11)], "not expected in this scenario"),
    ([msg(1), image(5)] + [msg(s) for s in range(2, 11)], "without an unrecoverable gap"),
    ([msg(s) for s in range(3, 11)], "without an image or a gap event"),
])
def test_every_fault_is_caught(tmp_path: Path, items: list[dict], complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        check([plant(tmp_path)], handler(tmp_path, items))


def test_declared_gaps_and_a_late_join_image_pass(tmp_path: Path) -> None:
    items = [image(3), msg(4), gap(5, 6)] + [msg(s) for s in range(7, 11)]
    (v,), _ = check([plant(tmp_path)], handler(tmp_path, items), allow_gap=lambda a, b, _: (a, b) == (5, 6))
    assert v.covered_by_image == 3 and v.gaps == [(5, 6, "recovery_timeout")] and v.delivered == 5


def test_a_session_count_mismatch_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="1 sessions delivered, 2 published"):
        check([plant(tmp_path), plant(tmp_path)], handler(tmp_path, [msg(s) for s in range(1, 11)]))
