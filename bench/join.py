"""What a late joiner pays per live message it buffers while its image comes, in one run, with ratios.

A joiner buffers the live feed (A and B) from its first datagram until the image ends, then drops
what the image covers and delivers the rest, applying it to the image that became its replica.
At 100 k msg/s a joiner that waits 5 s buffers 500,000 messages, so this cost, not the image, is
most of a joiner's CPU (docs/performance.md, "Where the time goes in what is still missed"). In-process, on a
fake clock: the plant's own datagrams (SyntheticMarket → Sequencer), fed to a `HandlerCore` as a
late joiner, then an image of every instrument (two fields each), then the image's end.

Per buffered message (CPU ns, the median over repetitions):
  buffer   the datagrams on A and B while joining (decode, arbitration, the buffer)
  finish   `on_image_end`: drop what the image covers, deliver the rest and apply it to the replica
  in order the same messages from sequence 1 to a core that is not joining, its replica of the same
           instruments loaded first: the steady state, for comparison (join/in order = (buffer + finish) / it)

Rows for a small and a large instrument universe show what the replica's size costs: applying a
message to one of 200,000 Python records misses the caches that 1,000 records fit in.

    python bench/join.py [--messages 300000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from decoders import BACKEND, CODECS, SCHEMA_FINGERPRINT, make_session  # noqa: E402
from linehandler.session import HandlerCore  # noqa: E402
from tickerplant.sequencer import Sequencer  # noqa: E402
from tickerplant.source import SyntheticMarket  # noqa: E402

FIRST = 5_000_001  # the joiner's first live sequence: the session is well under way


def datagrams(instruments: int, messages: int, first: int = FIRST) -> list[bytes]:
    market = SyntheticMarket(instruments, seed=1)
    seq = Sequencer(make_session(SCHEMA_FINGERPRINT, 3), CODECS, first_sequence=first)
    out: list[bytes] = []
    t = n = 0
    while n < messages:
        msgs = market.next_messages(3000, t)
        out += seq.publish_many(msgs, t)
        n += len(msgs)
        t += 1_000_000
    return out + seq.flush(t)


def image(instruments: int) -> list[tuple]:
    return [(b"I", 0, iid, f"S{iid}", -4, ((1, 1, 100), (3, 1, 101))) for iid in range(instruments)]


def core(delivered: list[int]) -> HandlerCore:
    def on_messages(first: int, msgs) -> None:
        delivered[0] += len(msgs)
    return HandlerCore(lambda s, m: None, lambda e: None, image_servers=1, nack_servers=1, keep_image=True, on_messages=on_messages)


def feed_both(c: HandlerCore, dgs: list[bytes]) -> tuple[float, int]:
    """Every datagram on A then B, 1 µs apart: (CPU seconds taken, the fake clock after)."""
    now = 1
    t0 = time.process_time()
    for d in dgs:
        c.on_datagram("A", d, now)
        c.on_datagram("B", d, now)
        now += 1000
    return time.process_time() - t0, now


def joiner(dgs: list[bytes], img: list[tuple]) -> dict:
    got = [0]
    c = core(got)
    buffering, now = feed_both(c, dgs)
    assert c.joining, "the core should be joining"
    t1 = time.process_time()
    c.on_image_messages(img)
    t2 = time.process_time()
    c.on_image_end(FIRST + 2999, now)  # the image covers the first live datagrams' messages, as a fresh one does
    t3 = time.process_time()
    assert not c.joining and got[0] > 0
    return {"delivered": got[0], "buffer_ns": buffering / got[0] * 1e9, "finish_ns": (t3 - t2) / got[0] * 1e9,
            "image_s": t2 - t1}


def in_order(dgs: list[bytes], img: list[tuple]) -> dict:
    """The same messages from sequence 1 to a core with the image loaded: no join, no buffer."""
    got = [0]
    c = core(got)
    c.image.apply_many(img)
    taken, _ = feed_both(c, dgs)
    assert not c.joining and not c.buffer and got[0] > 0
    return {"delivered": got[0], "ns": taken / got[0] * 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=300_000, help="live messages buffered per join")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    print(f"late join, per buffered message; {args.messages:,} messages; backend {BACKEND}; CPU ns, median of {args.repeats}")
    print(f"{'instruments':>12} {'buffer':>8} {'finish':>8} {'in order':>9} {'join/in order':>14} {'image s':>8}")
    out = {}
    for instruments in (1_000, 200_000):
        dgs = datagrams(instruments, args.messages)
        img = image(instruments)
        runs = [joiner(dgs, img) for _ in range(args.repeats)]
        from_one = datagrams(instruments, args.messages, 1)
        steady = [in_order(from_one, img)["ns"] for _ in range(args.repeats)]
        b = statistics.median(r["buffer_ns"] for r in runs)
        f = statistics.median(r["finish_ns"] for r in runs)
        o = statistics.median(steady)
        i = statistics.median(r["image_s"] for r in runs)
        out[instruments] = {"buffer_ns": b, "finish_ns": f, "in_order_ns": o, "ratio": (b + f) / o, "image_s": i}
        print(f"{instruments:>12,} {b:>8.0f} {f:>8.0f} {o:>9.0f} {(b + f) / o:>14.2f} {i:>8.2f}")
    big, small = out[200_000], out[1_000]
    print(f"finish at 200,000 instruments / at 1,000: {big['finish_ns'] / small['finish_ns']:.2f} "
          "(the replica's apply missing the caches)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
