"""Line handler throughput and latency, in one run, with ratios.

(a) core only, from memory: datagrams of 30 mixed messages, every datagram delivered on
    A and then on B (the B copy is a duplicate), into a counting callback; with and
    without the replica image.
(b) live on loopback: a running plant at a given rate, the handler's own loop, against a
    bare `recv_into` loop draining the same two groups (the floor), same duration;
    publish-to-callback latency p50/p99/p99.9 from the messages' publish timestamps.

    python bench/handler.py [--seconds 3] [--rates 10000,100000]

Targets (issue 4): (a) >= 1.5 M msg/s; (b) >= 60 % of the floor's datagrams/s with zero
loss; p99 < 500 µs at 100 k msg/s.
"""

from __future__ import annotations

import argparse
import random
import selectors
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session  # noqa: E402
from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig  # noqa: E402
from linehandler.handler_io import LineHandler  # noqa: E402
from linehandler.session import HandlerCore  # noqa: E402
from mdcommon.mcast_recv_io import open_receiver  # noqa: E402
from tickerplant.sequencer import Sequencer  # noqa: E402
from tickerplant.source import SyntheticMarket  # noqa: E402


def datagrams(n_messages: int) -> list[bytes]:
    market = SyntheticMarket(10_000, seed=3)
    seq = Sequencer(make_session(SCHEMA_FINGERPRINT, 1), CODECS, max_datagram_bytes=1400)
    msgs = market.next_messages(n_messages, 1)
    return seq.publish_many(msgs, 0) + seq.flush(0)


def core_rate(dgs: list[bytes], keep_image: bool, repeats: int, batched: bool = False) -> list[float]:
    out = []
    n_msgs = sum(int.from_bytes(d[18:20], "big") for d in dgs)
    for _ in range(repeats):
        count = [0]

        def on_message(seq: int, msg: tuple, c=count) -> None:
            c[0] += 1

        def on_messages(first: int, msgs: list, c=count) -> None:
            c[0] += len(msgs)

        core = (HandlerCore(None, lambda ev: None, keep_image=keep_image, on_messages=on_messages) if batched
                else HandlerCore(on_message, lambda ev: None, keep_image=keep_image))
        feed = core.on_datagram
        t0 = time.perf_counter()
        for d in dgs:
            feed("A", d, 0)
            feed("B", d, 0)
        dt = time.perf_counter() - t0
        assert count[0] == n_msgs
        out.append(n_msgs / dt)
    return out


def run_plant(a, b, rate: float, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tickerplant", "--feed-a-group", a[0], "--feed-a-port", str(a[1]),
                             "--feed-b-group", b[0], "--feed-b-port", str(b[1]), "--source-rate", str(rate), "--source-burst-seconds", "0",
                             "--source-instruments", "10000", "--duration-s", str(seconds), "--stats-interval-s", "0",
                             "--max-batch-delay-us", "100", "--end-of-session-linger-ms", "200", "--no-keep-image"],
                            cwd=ROOT, stderr=subprocess.DEVNULL)


def floor(a, b, rate: float, seconds: float) -> tuple[int, int]:
    """Datagrams and messages a bare recv_into loop takes from both groups."""
    sa, _ = open_receiver("lo", *a)
    sb, _ = open_receiver("lo", *b)
    sel = selectors.DefaultSelector()
    sel.register(sa, selectors.EVENT_READ)
    sel.register(sb, selectors.EVENT_READ)
    buf = bytearray(65536)
    n = msgs = 0
    plant = run_plant(a, b, rate, seconds)
    end = time.monotonic() + seconds + 3
    eos = 0
    while time.monotonic() < end and eos < 2:
        for key, _ in sel.select(0.2):
            while True:
                try:
                    key.fileobj.recv_into(buf)
                except BlockingIOError:
                    break
                n += 1
                c = int.from_bytes(buf[18:20], "big")
                if c == 0xFFFF:
                    eos += 1
                elif c:
                    msgs += c
    plant.wait()
    sa.close()
    sb.close()
    return n, msgs


def live(a, b, rate: float, seconds: float) -> dict:
    lat: list[int] = []
    now = time.time_ns
    sample = [0]

    market_types = (b"Q", b"T", b"F")  # the directory burst at start-up is not steady-state latency

    def on_message(ch: str, seq: int, msg: tuple) -> None:
        sample[0] += 1
        if sample[0] % 7 == 0 and msg[0] in market_types:
            lat.append(now() - msg[1])

    config = HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1])),
                           stats_interval_s=0, exit_on_session_end=True, keep_image=False)
    handler = LineHandler(config, on_message)
    plant = run_plant(a, b, rate, seconds)
    t0 = time.monotonic()
    handler.run(duration_s=seconds + 5)
    elapsed = time.monotonic() - t0
    st = handler.status()["channels"]["ch1"]
    handler.close()
    plant.wait()
    lat.sort()
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000) if lat else (lambda q: float("nan"))
    return {"datagrams": st["feeds"]["A"]["datagrams"] + st["feeds"]["B"]["datagrams"], "delivered": st["stream"]["delivered"],
            "lost": st["stream"]["messages_lost"], "gaps": st["stream"]["gaps_detected"], "p50": pct(0.5), "p99": pct(0.99),
            "p999": pct(0.999), "elapsed": elapsed}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="live run length [s] (default 3)")
    ap.add_argument("--rates", default="10000,100000,300000", help="live rates [messages/s] (default 10000,100000,300000)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    rng = random.Random()

    dgs = datagrams(300_000)
    import decoders

    print(f"handler benchmark; Python {sys.version.split()[0]}; {len(dgs)} datagrams of ~30 messages, A and B both delivering each; "
          f"wire backend {decoders.BACKEND}")
    print(f"{'(a) core only':40} {'median msg/s':>14} {'min':>12} {'max':>12}")
    results = {}
    for batched in (False, True):
        for keep in (False, True):
            r = core_rate(dgs, keep, args.repeats, batched)
            if not batched:
                results[keep] = statistics.median(r)
            label = f"  core, replica image {'on' if keep else 'off'}{', on_messages' if batched else ''}"
            print(f"{label:40} {statistics.median(r):14,.0f} {min(r):12,.0f} {max(r):12,.0f}")

    # capture cost: what --capture-file adds per datagram on the receive path (recvfrom_into + one pcap write)
    import tempfile

    from decoders.pcap import PcapWriter

    with tempfile.TemporaryDirectory() as tmp:
        w = PcapWriter(Path(tmp) / "c.pcap")
        payload = dgs[0]
        t0 = time.perf_counter()
        for _ in range(100_000):
            w.write(1_700_000_000_000_000_000, "10.0.0.1", 40000, "239.194.1.1", 31001, payload)
        per_dgram_us = (time.perf_counter() - t0) / 100_000 * 1e6
        w.close()
    core_us = 1e6 / results[False] * len(payload) / 47  # the core's time for one datagram's messages (~30)
    print(f"  capture (--capture-file): {per_dgram_us:.2f} µs per datagram, {per_dgram_us / core_us:.0%} of the core's time "
          f"for that datagram's messages")

    print(f"\n(b) live on loopback, {args.seconds:.0f} s per rate: handler vs a bare recv_into loop on the same groups")
    print(f"{'rate msg/s':>11} {'floor dgram/s':>14} {'handler dgram/s':>16} {'ratio':>6} {'delivered':>10} {'lost':>5} "
          f"{'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9}")
    live_rows = []
    for rate in [float(x) for x in args.rates.split(",")]:
        x = rng.randrange(1, 250)
        port = rng.randrange(20000, 60000, 2)
        a, b = (f"239.196.{x}.1", port), (f"239.196.{x}.2", port + 1)
        fl, _ = floor(a, b, rate, args.seconds)
        lv = live(a, b, rate, args.seconds)
        ratio = lv["datagrams"] / fl if fl else float("nan")
        live_rows.append((rate, ratio, lv))
        print(f"{rate:11,.0f} {fl / args.seconds:14,.0f} {lv['datagrams'] / args.seconds:16,.0f} {ratio:6.2f} {lv['delivered']:10,} "
              f"{lv['lost']:5} {lv['p50']:8.0f} {lv['p99']:8.0f} {lv['p999']:9.0f}")
    print()
    a_ok = results[False] >= 1.5e6
    print(f"{'MET ' if a_ok else 'MISS'} (a) core >= 1.5 M msg/s: {results[False] / 1e6:.2f} M (image off), {results[True] / 1e6:.2f} M (image on)")
    for rate, ratio, lv in live_rows:
        print(f"{'MET ' if ratio >= 0.6 and lv['lost'] == 0 else 'MISS'} (b) at {rate:,.0f} msg/s: {ratio:.0%} of the floor's datagrams, "
              f"{lv['lost']} lost")
        if rate == 100_000:
            print(f"{'MET ' if lv['p99'] < 500 else 'MISS'} p99 < 500 µs at 100 k msg/s: {lv['p99']:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
