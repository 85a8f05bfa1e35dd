"""Journal figures: reads cost their count, not the journal's size; appends per second.

(a) 2,000 messages read from the middle of a 2 M-message journal (target < 1 ms: a
    retransmission answer must not cost more because the journal is long);
(b) a full read of 100 k / 200 k / 400 k-message journals, which must scale linearly
    (time per message about constant), so a server saving its journal is not quadratic;
(c) append throughput, one message at a time (the mirror's path) and in batches of 20
    (the plant's `extend` of one datagram), with the count bound trimming all along.

    python bench/journal.py [--repeat 5]

Each figure is the best of `--repeat` runs: the machine's noise only ever adds time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import fmt  # noqa: E402
from retransmit.journal import Journal  # noqa: E402

BLOCK = bytes(45)  # a quote's size


def filled(n: int) -> Journal:
    j = Journal(max_messages=n, max_bytes=1 << 40)
    step = 100_000
    for start in range(1, n + 1, step):
        j.extend(start, [BLOCK] * min(step, n + 1 - start), 0)
    return j


def best_s(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    rows: list[tuple[str, str, str]] = []

    big = filled(2_000_000)
    mid = best_s(lambda big=big: big.get(1_000_000, 2000), args.repeat)
    rows.append(("get 2,000 from the middle of 2 M", f"{fmt(mid * 1e3)} ms", "target < 1 ms"))
    del big

    per_msg = []
    for n in (100_000, 200_000, 400_000):
        j = filled(n)
        t = best_s(lambda j=j: j.get(j.first_sequence, len(j)), args.repeat)
        per_msg.append(t / n)
        rows.append((f"full read of {n // 1000} k", f"{fmt(t * 1e3)} ms", f"{fmt(t / n * 1e9)} ns/message"))
    rows.append(("full read 400 k / 100 k per message", fmt(per_msg[-1] / per_msg[0]), "linear: about 1"))

    def append_one(n: int = 500_000) -> None:
        j = Journal(max_messages=100_000, max_bytes=1 << 40)
        for s in range(1, n + 1):
            j.append(s, BLOCK, s)

    def extend_20(n: int = 500_000) -> None:
        j = Journal(max_messages=100_000, max_bytes=1 << 40)
        batch = [BLOCK] * 20
        for s in range(1, n + 1, 20):
            j.extend(s, batch, s)

    t = best_s(append_one, max(1, args.repeat // 2))
    rows.append(("append, one at a time (bound 100 k, trimming)", f"{fmt(500_000 / t)} msg/s", ""))
    t = best_s(extend_20, max(1, args.repeat // 2))
    rows.append(("extend, 20 per call (bound 100 k, trimming)", f"{fmt(500_000 / t)} msg/s", ""))

    w = max(len(r[0]) for r in rows)
    v = max(len(r[1]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{w}}  {value:>{v}}  {note}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
