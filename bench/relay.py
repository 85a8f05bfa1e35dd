"""Relays (issue 20): throughput and the latency each layer adds, alone and in a chain of 3.

    python bench/relay.py [--seconds 2] [--rates 10000,50000,100000,200000] [--repeats 2] [--itch-messages 100000] [--json FILE]

On loopback, in one repetition, for each rate, these set-ups run one after the other:
  direct   plant -> handler (the reference: what the LAN and one handler cost)
  relay    plant -> `relay channel` (no filter, no delay) -> handler
  filter   plant -> `relay channel --instruments` (half the instruments) -> handler
  delay    plant -> `relay channel --delay-ms 100` -> handler
  chain3   plant -> relay -> relay -> relay -> handler
The handler (bench/handler_proc.py) measures each market message's latency from its publish
timestamp at the plant (relays carry the timestamp unchanged), in the steady state after a 1 s
warm-up, as bench/live.py does. Added latency = the set-up's p50 (p99) less direct's p50 (p99)
in the same repetition; for `delay`, less the 100 ms as well, so it is the delay's error. Every
process here shares the 2 cores, so a chain of 3 relays runs 5 busy processes on them.

Throughput: the highest rate tried at which nothing was lost (no GapEvent at any relay or at the
handler; gaps repaired from the upstream plant's re-request port are fine, each relay serving the
next one down the same way). At a rate a relay cannot carry, its socket buffers overflow and what
it could not recover shows as messages lost upstream (it marks its instruments maybe_stale then,
and those marks count as delivered messages). The relay's own cost is its CPU seconds per
million messages relayed; at low rates that is mostly the cost of waking per datagram.

ITCH: the `relay itch` mode reads the whole capture first (construct parses each ITCH message),
then normalizes it into batches; both are timed offline, per ITCH message, on a synthetic session.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Samples, fmt, groups
from live import PY, WARMUP_S, feed_flags, free_port, handler_result, reap, start_handler, start_plant

KINDS = ("direct", "relay", "filter", "delay", "chain3")
DELAY_MS = 100
INSTRUMENTS = 1000


def start_relay(up, out, up_port: int, out_port: int, log: Path, seconds: float, *extra: str) -> subprocess.Popen:
    """A relay that asks the upstream's re-request port for what it lost and serves its own on `out_port`."""
    prefixed = [f"--{side}-{x[2:]}" if x.startswith("--") else x for side, feeds in (("upstream", up), ("plant", out))
                for x in feed_flags(*feeds)]
    return subprocess.Popen([PY, "-m", "relay", "channel", *prefixed, "--plant-stats-interval-s", "0", "--plant-end-of-session-linger-ms",
                             "300", "--plant-max-batch-delay-us", "100", "--plant-log-json", "--plant-log-level", "warning",
                             "--recovery-max-buffer-messages", "5000000",
                             "--upstream-nack-servers", f"127.0.0.1:{up_port}", "--plant-request-address", "127.0.0.1",
                             "--plant-request-port", str(out_port), "--duration-s", str(seconds), *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("w"))


def upstream_lost(log: Path) -> int:
    """Messages the relay lost upstream (its upstream_gap events) from its JSON log."""
    lost = 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "upstream_gap":
            lost += int(ev["last"]) - int(ev["first"]) + 1
    return lost


def one_run(kind: str, rate: float, seconds: float, tmp: Path) -> dict:
    hops = {"direct": 0, "chain3": 3}.get(kind, 1)
    feeds = [groups("239.199") for _ in range(hops + 1)]
    extra: list[str] = []
    if kind == "filter":
        for iid in range(1, INSTRUMENTS // 2 + 1):
            extra += ["--instruments", str(iid)]
    if kind == "delay":
        extra += ["--delay-ms", str(DELAY_MS)]
    run_s = seconds + WARMUP_S
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(hops + 1)]  # each plant's re-request port, for the next one down
    handler = start_handler([feeds[-1]], run_s + 10 + 3 * hops, "--nack", f"127.0.0.1:{ports[-1]}")
    logs = [tmp / f"{kind}-{i}.log" for i in range(hops)]
    relays = [start_relay(feeds[i], feeds[i + 1], ports[i], ports[i + 1], logs[i], run_s + 20, *extra) for i in reversed(range(hops))]
    time.sleep(2.5 if hops else 0.3)  # the relays import and join before the plant starts
    plant = start_plant(feeds[0][0], feeds[0][1], rate, run_s, instruments=INSTRUMENTS, request_port=ports[0])
    reap(plant, run_s + 30)
    relay_cpu = sum(reap(r, 60) for r in relays)
    r = handler_result(handler)
    market = r["delivered"] - (INSTRUMENTS // 2 if kind == "filter" else INSTRUMENTS)  # less the instrument directory
    return {"msgs_s": market / run_s, "p50_us": r["p50_us"], "p99_us": r["p99_us"], "p999_us": r["p999_us"],
            "lost_downstream": r["stream_messages_lost"], "lost_upstream": sum(upstream_lost(x) for x in logs),
            "relay_cpu_s_per_M": relay_cpu / max(market, 1) * 1e6 / max(hops, 1) if hops else float("nan"),
            "relay_exit": max((abs(p.returncode or 0) for p in relays), default=0)}


FIGURES = [("msgs_s", "market msg/s delivered downstream"), ("p50_us", "latency p50 µs (steady)"), ("p99_us", "latency p99 µs"),
           ("added_p50_us", "added p50 µs (vs direct; delay: less the delay)"), ("added_p99_us", "added p99 µs"),
           ("lost_upstream", "messages lost upstream by the relays"), ("lost_downstream", "messages lost downstream"),
           ("relay_cpu_s_per_M", "CPU s per M messages, per relay")]


def itch_figures(n: int) -> dict:
    """Offline, per ITCH message: the capture read (MoldUDP64 split + construct parse) and the normalization."""
    sys.path.insert(0, str(ROOT))
    from relay.itch_feed import ItchFeed, read_capture
    from tests.integration.test_relay_itch import ITCH_PORT, write_capture
    from tests.itch_session import MIDNIGHT, session

    itch = session(7, n)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "itch.pcap"
        write_capture(path, itch, per=16)
        t0 = time.perf_counter()
        cap = read_capture(str(path), ITCH_PORT)
        t1 = time.perf_counter()
        feed = ItchFeed(cap, MIDNIGHT, 0, 0.0)
        t2 = time.perf_counter()
    got = sum(len(r) for _, r in cap.messages)
    out_msgs = sum(len(b) for b in feed.batches)
    return {"itch_read_msgs_s": got / (t1 - t0), "itch_normalize_msgs_s": got / (t2 - t1), "itch_out_per_in": out_msgs / max(got, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="steady-state seconds per run (after a 1 s warm-up)")
    ap.add_argument("--rates", default="10000,50000,100000,200000", help="plant rates in msg/s, ascending")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--itch-messages", type=int, default=100_000)
    ap.add_argument("--json", help="write the samples here")
    args = ap.parse_args(argv)
    rates = [(x, float(x)) for x in args.rates.split(",")]
    kinds = args.kinds.split(",")
    s = Samples()
    s.note("relay.setup", f"loopback; plant with {INSTRUMENTS} instruments for {args.seconds + WARMUP_S:g} s (latency after a "
                          f"{WARMUP_S:g} s warm-up); relays are `python -m relay channel` processes; filter keeps half the "
                          f"instruments; delay is {DELAY_MS} ms")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for rep in range(args.repeats):
            for label, rate in rates:
                base: dict | None = None
                for kind in kinds:
                    t0 = time.monotonic()
                    r = one_run(kind, rate, args.seconds, tmp)
                    if kind == "direct":
                        base = r
                    if base is not None:
                        less = DELAY_MS * 1e3 if kind == "delay" else 0.0
                        r["added_p50_us"] = r["p50_us"] - base["p50_us"] - less
                        r["added_p99_us"] = r["p99_us"] - base["p99_us"] - less
                    for k, _ in FIGURES:
                        if k in r:
                            s.add(f"relay.{label}.{kind}.{k}", r[k])
                    if r["relay_exit"]:
                        s.note(f"relay.{label}.{kind}.exit", f"a relay exited {r['relay_exit']} in repetition {rep + 1}")
                    print(f"  repetition {rep + 1}, {label} msg/s, {kind}: " + ", ".join(f"{k} {fmt(r[k])}" for k, _ in FIGURES if k in r)
                          + f" ({time.monotonic() - t0:.0f} s)", flush=True)
        if args.itch_messages:
            for _ in range(args.repeats):
                for k, v in itch_figures(args.itch_messages).items():
                    s.add(f"relay.{k}", v)
    for label, _ in rates:
        print(f"\nmedian over the repetitions, plant at {label} msg/s:")
        print("| figure | " + " | ".join(kinds) + " |")
        print("|---" * (len(kinds) + 1) + "|")
        for k, name in FIGURES:
            cells = [fmt(statistics.median(v)) if (v := s.figures.get(f"relay.{label}.{kind}.{k}")) else "–" for kind in kinds]
            print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nhighest rate tried with nothing lost in any repetition (msg/s):")
    print("| " + " | ".join(kinds) + " |")
    print("|---" * len(kinds) + "|")
    best = []
    for kind in kinds:
        ok = [rate for label, rate in rates if (v := s.figures.get(f"relay.{label}.{kind}.lost_upstream"))
              and max(v) == 0 and max(s.figures[f"relay.{label}.{kind}.lost_downstream"]) == 0]
        s.add(f"relay.zero_loss_rate.{kind}", max(ok, default=0))
        best.append(fmt(max(ok, default=0)))
    print("| " + " | ".join(best) + " |")
    if args.itch_messages:
        print(f"\nITCH, offline, {args.itch_messages:,} messages: " + ", ".join(
            f"{k} {fmt(statistics.median(s.figures[f'relay.{k}']))}" for k in ("itch_read_msgs_s", "itch_normalize_msgs_s", "itch_out_per_in")))
    s.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
