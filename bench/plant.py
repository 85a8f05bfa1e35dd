"""Ticker plant throughput on loopback, in one run, with ratios and a breakdown.

Rows (messages/s and CPU µs per message, a receiver process draining both groups):
  synthetic source only           generating messages, nothing sent
  sequence + send, pre-generated  the plant's hot path on both feeds, messages made beforehand
  full: source + sequence + send  what `python -m tickerplant` does flat out
  bare sendto floor               the same number of full datagrams sent twice with plain sendto

    python bench/plant.py [--seconds 5]

Target (issue 3): >= 1 M messages/s on one core with full datagrams.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mdcommon.mcast_send_io import open_sender  # noqa: E402
from tickerplant.config import FeedConfig, PlantConfig  # noqa: E402
from tickerplant.plant_io import Plant  # noqa: E402
from tickerplant.source import SyntheticMarket  # noqa: E402

RECEIVER = r"""
import selectors, sys, time
sys.path.insert(0, sys.argv[1])
from mdcommon.mcast_recv_io import open_receiver
socks = [open_receiver("lo", sys.argv[2], int(sys.argv[3]), 8 << 20)[0], open_receiver("lo", sys.argv[4], int(sys.argv[5]), 8 << 20)[0]]
sel = selectors.DefaultSelector()
for s in socks: sel.register(s, selectors.EVENT_READ)
buf = bytearray(65536); n = 0; quiet = 0
print("ready", flush=True)
while quiet < 20:
    ev = sel.select(0.1)
    quiet = 0 if ev else quiet + 1
    for k, _ in ev:
        while True:
            try: k.fileobj.recv_into(buf); n += 1
            except BlockingIOError: break
print(n, flush=True)
"""


def receiver(a, b) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", RECEIVER, str(ROOT), a[0], str(a[1]), b[0], str(b[1])], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def measure(fn, seconds: float) -> tuple[int, float, float]:
    """(messages, wall s, cpu s) of calling fn() -> messages until `seconds` pass."""
    n = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        n += fn()
    return n, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="time per row [s] (default 5)")
    args = ap.parse_args(argv)
    rng = random.Random()
    x, port = rng.randrange(1, 250), rng.randrange(20000, 60000, 2)
    a, b = (f"239.198.{x}.1", port), (f"239.198.{x}.2", port + 1)
    config = PlantConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1]), keep_image=False,
                         session_instance=1)
    batch = 2000
    rows = []

    market = SyntheticMarket(10_000, seed=1)
    rows.append(("synthetic source only", *measure(lambda: len(market.next_messages(batch, 0)), args.seconds), None))

    pool = [market.next_messages(batch, 0) for _ in range(50)]
    rx = receiver(a, b)
    plant = Plant(config)
    it = [0]

    def hot() -> int:
        plant.publish_many(pool[it[0] % 50])
        it[0] += 1
        return batch

    n, wall, cpu = measure(hot, args.seconds)
    plant.flush()
    dg_sent = plant.feeds[0][3]["datagrams"]
    rows.append(("sequence + send, pre-generated", n, wall, cpu, dg_sent))
    plant.close()
    rx_hot = int(rx.communicate(timeout=60)[0].strip())

    rx = receiver(a, b)
    plant = Plant(config)

    def full() -> int:
        plant.publish_many(market.next_messages(batch, time.time_ns()))
        return batch

    n, wall, cpu = measure(full, args.seconds)
    plant.flush()
    dg_full = plant.feeds[0][3]["datagrams"]
    rows.append(("full: source + sequence + send", n, wall, cpu, dg_full))
    plant.close()
    rx_full = int(rx.communicate(timeout=60)[0].strip())

    datagram = plant.sequencer.writer.buf[:1400]  # a full datagram's worth of bytes
    msgs_per_dg = n / max(dg_full, 1)
    sa, sb = open_sender("lo"), open_sender("lo")
    rx = receiver(a, b)

    refused = [0]

    def bare() -> int:
        """Messages' worth of datagrams that went out on both feeds (a full queue counts as refused)."""
        ok = 0
        for _ in range(100):
            for s, addr in ((sa, a), (sb, b)):
                try:
                    s.sendto(datagram, addr)
                    ok += 1
                except BlockingIOError:
                    refused[0] += 1
        return int(ok / 2 * msgs_per_dg)

    n_bare, wall_b, cpu_b = measure(bare, args.seconds)
    rows.append(("bare sendto floor (same datagrams)", n_bare, wall_b, cpu_b, int(n_bare / msgs_per_dg)))
    rx_bare = int(rx.communicate(timeout=60)[0].strip())
    sa.close()
    sb.close()

    print(f"plant benchmark; Python {sys.version.split()[0]}; {args.seconds:.0f} s per row; datagrams up to 1400 bytes, "
          f"{msgs_per_dg:.1f} messages each; both feeds")
    print(f"{'row':38} {'msg/s':>12} {'cpu µs/msg':>11} {'datagrams/s':>12} {'vs floor':>9}")
    floor_rate = n_bare / wall_b
    for name, n_, wall_, cpu_, dgs in rows:
        rate = n_ / wall_
        print(f"{name:38} {rate:12,.0f} {cpu_ / n_ * 1e6:11.2f} {(dgs / wall_ if dgs else 0):12,.0f} {rate / floor_rate:8.2f}x")
    print(f"\nbare floor: {refused[0]:,} sends refused by a full socket queue (not counted)")
    print(f"receiver saw {rx_hot:,} / {rx_full:,} / {rx_bare:,} datagrams on both groups for the three sending rows")
    full_rate = rows[2][1] / rows[2][2]
    print(f"{'MET ' if full_rate >= 1e6 else 'MISS'} >= 1 M messages/s (full path): {full_rate / 1e6:.2f} M; "
          f"hot path alone {rows[1][1] / rows[1][2] / 1e6:.2f} M")
    return 0


if __name__ == "__main__":
    sys.exit(main())
