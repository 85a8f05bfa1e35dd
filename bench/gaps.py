"""Handler core cost per datagram against the number of open gaps: a stream with thousands of
holes must not cost each datagram more than one with ten (issue 16: with 10 k gaps it was about
300 µs a datagram, because quality scanned every gap and range removal rebuilt the list).

With N gaps open (every other datagram lost on both feeds, no server), time per datagram for:
(a) the next datagrams past the horizon (each buffered, each opening one more gap);
(b) the lost datagrams arriving late, in random order (each filling a gap in the middle).
(c) the loop's question every turn, the earliest deadline of all (heaps since issue 18; a scan before).
Target: < 10 µs a datagram with 10 k gaps, and about flat from 100 gaps up.

    python bench/gaps.py [--gaps 100,1000,10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session  # noqa: E402
from linehandler.session import HandlerCore, RecoveryPolicy  # noqa: E402
from tickerplant.sequencer import Sequencer  # noqa: E402

SESSION = make_session(SCHEMA_FINGERPRINT, 100)
PER = 3


def datagrams(n: int) -> list[bytes]:
    seq = Sequencer(SESSION, CODECS, max_datagram_bytes=20 + PER * 47)
    msgs = [(b"Q", i, 1 + i % 7, 1000 + i, 1, 1001 + i, 2) for i in range(1, n * PER + 1)]
    return seq.publish_many(msgs, 0) + seq.flush(0)


def run(gaps: int) -> tuple[float, float, float]:
    dgs = datagrams(4 * gaps + 8)
    policy = RecoveryPolicy(stale_after_ns=10**15, give_up_ns=10**15, max_buffer_messages=10**9, max_buffer_bytes=1 << 40,
                            max_ahead_messages=10**9, min_ahead_messages=10**9)
    core = HandlerCore(lambda s, m: None, lambda e: None, policy, nack_servers=0, rng=random.Random(1))
    now = 1
    core.on_datagram("A", dgs[0], now)
    core.on_datagram("A", dgs[1], now)
    for i in range(3, 2 * gaps + 2, 2):  # every other datagram lost: `gaps` holes
        core.on_datagram("A", dgs[i], now)
    assert len(core.gaps) >= gaps, len(core.gaps)
    ahead = [dgs[i] for i in range(2 * gaps + 3, 4 * gaps + 3, 2)][:1000]
    t = time.perf_counter()
    for d in ahead:
        core.on_datagram("B", d, now)
    t_ahead = (time.perf_counter() - t) / len(ahead)
    fills = [dgs[i] for i in range(4, 2 * gaps + 2, 2)]
    random.Random(2).shuffle(fills)
    fills = fills[:1000]
    t = time.perf_counter()
    for d in fills:
        core.on_datagram("B", d, now)
    t_fill = (time.perf_counter() - t) / len(fills)
    t = time.perf_counter()
    for _ in range(1000):  # what the loop asks every turn: the earliest deadline of every gap
        core.next_timer()
    t_timer = (time.perf_counter() - t) / 1000
    return t_ahead, t_fill, t_timer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaps", default="100,1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"{'open gaps':>10} {'ahead us/datagram':>18} {'fill us/datagram':>17} {'fill vs 100 gaps':>17} {'next_timer us':>14}")
    base = None
    for n in (int(x) for x in args.gaps.split(",")):
        best = min((run(n) for _ in range(args.repeat)), key=lambda r: r[0] + r[1])
        base = base or best[1]
        print(f"{n:>10} {best[0] * 1e6:>18.2f} {best[1] * 1e6:>17.2f} {best[1] / base:>16.2f}x {best[2] * 1e6:>14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
