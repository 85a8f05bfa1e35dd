"""The benchmark report's arithmetic: medians with min and max, same-run ratios, verdicts (no timing here)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))  # appended: bench/retransmit.py must not shadow the package

from common import Samples, merge_samples, percentiles, summarize  # noqa: E402
from report import cell, grid, paced_target, table, verdict  # noqa: E402


def test_summarize_gives_median_min_max_and_ignores_nan():
    assert summarize([3.0, 1.0, 2.0, float("nan")]) == (2.0, 1.0, 3.0, 3)
    med, lo, hi, n = summarize([])
    assert n == 0 and math.isnan(med) and math.isnan(lo) and math.isnan(hi)


def test_percentiles_are_nearest_rank():
    assert percentiles(list(range(1, 101)), (0.5, 0.99, 1.0)) == [51, 100, 100]
    assert all(math.isnan(x) for x in percentiles([]))


def test_cell_shows_median_range_and_count():
    s = Samples()
    for v in (0.5, 0.7, 0.6):
        s.add("ratio.x", v)
    assert cell(s, "ratio.x") == "0.6 [0.5–0.7] (n=3)"
    assert cell(s, "missing") == "–"


def test_samples_round_trip_and_merge(tmp_path):
    a, b = Samples(), Samples()
    a.add("f", 1)
    b.add("f", 2)
    b.note("n", "text")
    a.write(tmp_path / "a.json")
    m = merge_samples([Samples.load(tmp_path / "a.json"), b])
    assert m.figures == {"f": [1.0, 2.0]} and m.notes == {"n": "text"}


def test_verdict_uses_the_median_of_same_run_ratios():
    s = Samples()
    for v in (0.65, 0.55, 0.62):
        s.add("ratio.handler_vs_c_recv", v)
    ok, text = verdict(s, "ratio.handler_vs_c_recv", 0.60)
    assert ok is True and "0.62" in text
    s.add("lost", 0)
    s.add("lost", 3)
    ok, _ = verdict(s, "ratio.handler_vs_c_recv", 0.60, extra_zero="lost")
    assert ok is False
    assert verdict(Samples(), "nothing", 1.0)[0] is None


def test_tables_leave_out_unmeasured_rows():
    s = Samples()
    s.add("curve.10k.p50_us", 80)
    assert table(s, [("p50", "curve.10k.p50_us"), ("absent", "x")])[2:] == ["| p50 | 80 (n=1) |"]
    rows = grid(s, "rate", [("10 k/s", "10k"), ("100 k/s", "100k")], [("p50 µs", "p50_us")], "curve.{row}.{col}")
    assert rows[2:] == ["| 10 k/s | 80 (n=1) |"]


def _handler_samples(lost: list[float], fractions: list[float]) -> Samples:
    s = Samples()
    for lo, fr in zip(lost, fractions):
        s.add("floor.c_recv_dgrams_s", 200_000.0)
        s.add("handler.at_target.dgrams_s", 200_000.0 * fr)
        s.add("handler.at_target.lost", lo)
        s.add("ratio.handler_vs_c_recv", fr)
    return s


def test_paced_target_accepts_the_pacers_shortfall_only_with_zero_loss():
    s = _handler_samples([0, 0, 0], [0.59998, 0.5999, 0.6])
    ok, text = verdict(s, "ratio.handler_vs_c_recv", 0.60)
    assert ok is False  # the median prints a hair under the target
    ok, text = paced_target(s, ok, text, 0.60)
    assert ok is True and "lost nothing in any of the 3 repetitions" in text
    lossy = _handler_samples([0, 12, 0], [0.59998, 0.5999, 0.6])
    assert paced_target(lossy, *verdict(lossy, "ratio.handler_vs_c_recv", 0.60), 0.60)[0] is False
    slow = _handler_samples([0, 0, 0], [0.59998, 0.55, 0.6])  # the pacer fell well short: not the target rate
    assert paced_target(slow, *verdict(slow, "ratio.handler_vs_c_recv", 0.60), 0.60)[0] is False
