"""Recovery with unicast servers against an anonymous pool (request and repair groups), side by side.

    python bench/pool.py [--handlers 1,4,8] [--seconds 4] [--rate 20000] [--drop 0.01] [--repeats 2] [--json FILE]

On loopback: a plant, two retransmission servers (each mirroring the feed), and N handler processes
that all drop the same datagrams on both feeds (chosen by sequence number, `bench/handler_proc.py
--drop-both`): correlated loss, every gap needing a repair. In `unicast` mode the handlers are
configured with both servers' addresses; in `multicast` mode only with the two groups. Per gap
(the gaps each handler repaired; they are the same ones at every handler): requests sent by all
handlers together, repairs answered by all servers together, and the bytes of those repairs; the
recovery time from gap seen to filled (median of the handlers' p50, worst p99); messages lost.
Goal (issue 19): with multicast, about 1 request and 1 repair per gap whatever the number of handlers
(≤ 1.5 and ≤ 1.2 on the test LAN with 8); with unicast, one of each per handler.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import Samples, fmt, groups
from live import Server, handler_result, reap, start_handler, start_plant

from mdcommon.status_io import fetch_status


def one_run(mode: str, n: int, seconds: float, rate: float, drop: float) -> dict:
    a, b = groups("239.196")
    request, repair = groups("239.198")
    pool = (request, repair) if mode == "multicast" else None
    # every handler here is one host (127.0.0.1) to the servers, which keep their books per host: raise the per-requester
    # request limit so that N handlers on loopback are not limited as one, which N hosts on a LAN would not be
    servers = [Server(a, b, pool=pool, flags=("--limits-requester-requests-per-s", "2000", "--limits-global-requests-per-s", "10000"))
               for _ in range(2)]
    try:
        extra = ["--drop-both", str(drop)]
        if pool:
            extra += ["--request-group", f"{request[0]}:{request[1]}", "--repair-group", f"{repair[0]}:{repair[1]}"]
        else:
            for s in servers:
                extra += ["--nack", f"127.0.0.1:{s.udp}"]
        handlers = [start_handler([(a, b)], seconds + 15, *extra) for _ in range(n)]
        plant = start_plant(a, b, rate, seconds, instruments=1000)
        reap(plant, seconds + 30)
        results = [handler_result(h) for h in handlers]
        status = [fetch_status(s.status) for s in servers]
    finally:
        for s in servers:
            s.close()
    gaps = statistics.mean(r["stream_gaps_recovered_by_nack"] for r in results) or float("nan")
    if pool:
        repairs = sum(st["pool"]["answers"] for st in status)
        repair_bytes = sum(st["pool"]["bytes_sent"] for st in status)
    else:
        repairs = sum(st["server"]["served"] for st in status)
        repair_bytes = sum(st["server"]["bytes_sent"] for st in status)
    return {"gaps": gaps, "requests_per_gap": sum(r["stream_nacks_sent"] for r in results) / gaps,
            "repairs_per_gap": repairs / gaps, "repair_bytes_per_gap": repair_bytes / gaps,
            "suppressed_per_gap": sum(r["stream_nacks_suppressed"] for r in results) / gaps,
            "recovery_p50_ms": statistics.median(r["recovery_p50_ms"] for r in results),
            "recovery_p99_ms": max(r["recovery_p99_ms"] for r in results),
            "lost": sum(r["stream_messages_lost"] for r in results)}


FIGURES = [("gaps", "gaps at each handler"), ("requests_per_gap", "requests per gap"), ("repairs_per_gap", "repairs per gap"),
           ("repair_bytes_per_gap", "repair bytes per gap"), ("suppressed_per_gap", "NACKs suppressed per gap"),
           ("recovery_p50_ms", "recovery p50 ms"), ("recovery_p99_ms", "recovery p99 ms (worst handler)"), ("lost", "messages lost")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--handlers", default="1,4,8")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rate", type=float, default=20_000.0)
    ap.add_argument("--drop", type=float, default=0.003, help="fraction of datagrams every handler loses on both feeds (0.3 %% of "
                                                               "about 10 k datagrams/s: 30 gaps/s, under a handler's 50 NACKs/s)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", help="write the samples here")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.handlers.split(",")]
    s = Samples()
    s.note("pool.setup", f"loopback; plant {args.rate:,.0f} msg/s for {args.seconds:g} s; every handler drops the same {args.drop:.1%} "
                         "of datagrams on both feeds; two servers")
    for rep in range(args.repeats):
        for n in counts:
            for mode in ("unicast", "multicast"):
                t0 = time.monotonic()
                r = one_run(mode, n, args.seconds, args.rate, args.drop)
                for k, _ in FIGURES:
                    s.add(f"pool.{mode}.{n}.{k}", r[k])
                print(f"  repetition {rep + 1}, {n} handlers, {mode}: " + ", ".join(f"{k} {fmt(r[k])}" for k, _ in FIGURES)
                      + f" ({time.monotonic() - t0:.0f} s)", flush=True)
    print("\nmedian over the repetitions:")
    head = "| figure | " + " | ".join(f"{n} h {m}" for n in counts for m in ("unicast", "multicast")) + " |"
    print(head)
    print("|---" * (2 * len(counts) + 1) + "|")
    for k, label in FIGURES:
        cells = [fmt(statistics.median(s.figures[f"pool.{m}.{n}.{k}"])) for n in counts for m in ("unicast", "multicast")]
        print(f"| {label} | " + " | ".join(cells) + " |")
    s.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
