"""One line handler process for the live benchmarks: prints "ready" once joined, then one JSON line of figures.

    python bench/handler_proc.py --channel GA:PA,GB:PB [--channel ...] --seconds S
        [--nack HOST:PORT] [--image HOST:PORT] [--drop-a P] [--drop-b P] [--keep-image] [--until-image]
        [--request-group G:P --repair-group G:P]

Figures: datagrams (A+B), messages delivered, lost, gap counters, publish-to-callback latency
(every 7th market message, from its publish timestamp), CPU seconds of this process while running,
resident memory at the end, recovery times of NACK-repaired gaps, and the time from start to the
initial image applied.

Latency is reported as the peers' is: p50/p99/p99.9 in the steady state, after `--warmup-s` (1 s,
the warm-up bench/zmq_peer.py gives ZeroMQ) from the first market message; the start-up transient
on its own (`startup_max_us`, the worst latency in the warm-up; `settle_ms`, when the last 50 ms
window whose p99 is over twice the steady p99 ends); the whole run's p99 (`all_p99_us`); and a
`timeline` of 50 ms windows (start ms, p99 µs, max µs) for the latency-over-time plot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from common import percentiles, self_cpu_s, self_rss_bytes

from linehandler.config import ChannelConfig, FeedConfig, GroupConfig, HandlerConfig, RecoveryConfig
from linehandler.events import GapEvent, ImageApplied, Recovered
from linehandler.handler_io import LineHandler
from mdcommon.daemon_io import quiet_collector
from mdcommon.logs import setup_logging


def latency_figures(lat: list[int], at: list[int], warmup_ns: int) -> dict:
    """Steady-state percentiles after the warm-up, the start-up transient on its own, and a timeline."""
    if not lat:
        nan = float("nan")
        return dict(lat_n=0, p50_us=nan, p99_us=nan, p999_us=nan, all_p99_us=nan, startup_max_us=nan, settle_ms=nan, timeline=[])
    t0 = at[0]
    steady = [x for x, t in zip(lat, at) if t - t0 >= warmup_ns] or lat  # a run shorter than the warm-up: all of it
    p50, p99, p999 = percentiles(steady)
    windows: dict[int, list[int]] = {}
    for x, t in zip(lat, at):
        windows.setdefault((t - t0) // 50_000_000, []).append(x)
    timeline = [(k * 50, percentiles(v, (0.99,))[0] / 1e3, max(v) / 1e3) for k, v in sorted(windows.items())]
    startup = [x for x, t in zip(lat, at) if t - t0 < warmup_ns]
    settle = max((ms + 50 for ms, w99, _ in timeline if ms < warmup_ns / 1e6 and w99 * 1e3 > 2 * p99), default=0)
    return dict(lat_n=len(steady), p50_us=p50 / 1e3, p99_us=p99 / 1e3, p999_us=p999 / 1e3,
                all_p99_us=percentiles(lat, (0.99,))[0] / 1e3, startup_max_us=max(startup, default=0) / 1e3, settle_ms=settle,
                timeline=timeline)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channel", action="append", required=True, help="GA:PA,GB:PB")
    ap.add_argument("--seconds", type=float, required=True, help="stop after this long (or when every session ended)")
    ap.add_argument("--nack", default="")
    ap.add_argument("--image", default="")
    ap.add_argument("--drop-a", type=float, default=0.0)
    ap.add_argument("--drop-b", type=float, default=0.0)
    ap.add_argument("--drop-both", type=float, default=0.0,
                    help="drop this fraction of datagrams on BOTH feeds (the same datagrams, chosen by sequence number), "
                         "so every one is a real gap that only retransmission can fill")
    ap.add_argument("--request-group", default="", help="G:P: anonymous recovery (NACKs to this group, repairs on --repair-group)")
    ap.add_argument("--repair-group", default="")
    ap.add_argument("--keep-image", action="store_true")
    ap.add_argument("--warmup-s", type=float, default=1.0, help="latency before this, from the first market message, is start-up")
    ap.add_argument("--until-image", action="store_true", help="stop once the initial image is applied")
    args = ap.parse_args(argv)
    setup_logging("error")
    channels = []
    for i, spec in enumerate(args.channel):
        a, b = spec.split(",")
        (ga, pa), (gb, pb) = a.split(":"), b.split(":")
        channels.append({"name": f"ch{i + 1}", "feed_a": {"group": ga, "port": int(pa)}, "feed_b": {"group": gb, "port": int(pb)},
                         "nack_servers": [args.nack] if args.nack else [], "image_servers": [args.image] if args.image else []})
    if args.request_group:
        (rg, rp), (pg, pp) = args.request_group.split(":"), args.repair_group.split(":")
        for ch in channels:
            ch["request_group"], ch["repair_group"] = {"group": rg, "port": int(rp)}, {"group": pg, "port": int(pp)}
    recovery = RecoveryConfig(late_join_image=bool(args.image or args.request_group), max_buffer_messages=5_000_000)
    config = HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=channels[0]["feed_a"]["group"], port=channels[0]["feed_a"]["port"]),
                                                 feed_b=FeedConfig(group=channels[0]["feed_b"]["group"], port=channels[0]["feed_b"]["port"]),
                                                 nack_servers=channels[0]["nack_servers"], image_servers=channels[0]["image_servers"],
                                                 request_group=GroupConfig(**channels[0].get("request_group", {})),
                                                 repair_group=GroupConfig(**channels[0].get("repair_group", {}))),
                           channels=channels if len(channels) > 1 else [], recovery=recovery, keep_image=args.keep_image,
                           drop_a=args.drop_a, drop_b=args.drop_b, stats_interval_s=0, exit_on_session_end=not args.until_image)
    lat: list[int] = []
    lat_at: list[int] = []  # when each latency sample arrived
    recovered: list[int] = []
    image_s: list[float] = []
    n = [0]
    now = time.time_ns
    market = (b"Q", b"T", b"F")
    t0 = time.perf_counter()
    gaps_lost: list[list] = []

    def on_message(ch: str, seq: int, msg: tuple) -> None:
        n[0] += 1
        if n[0] % 7 == 0 and msg[0] in market:
            t = now()
            lat.append(t - msg[1])
            lat_at.append(t)

    def on_event(ch: str, ev: object) -> None:
        if isinstance(ev, GapEvent) and len(gaps_lost) < 20:
            gaps_lost.append([ev.first, ev.last, ev.reason])
        if isinstance(ev, Recovered):
            recovered.append(ev.elapsed_ns)
        elif isinstance(ev, ImageApplied):
            image_s.append(time.perf_counter() - t0)
            if args.until_image:
                handler.stop()

    handler = LineHandler(config, on_message, on_event)
    dropped_both = [0]
    if args.drop_both:
        threshold = int(args.drop_both * 10_000)
        for ch in handler.channels:  # wrap the core's entry point: the shell looks it up per datagram
            def dropping(feed, data, now_ns, _inner=ch.core.on_datagram):
                if len(data) >= 20 and int.from_bytes(data[18:20], "big") not in (0, 0xFFFF):
                    seq = int.from_bytes(data[10:18], "big")
                    if (seq * 2654435761) % 10_007 < threshold:
                        dropped_both[0] += 1
                        return None
                return _inner(feed, data, now_ns)

            ch.core.on_datagram = dropping
            # the native lane takes a batch's in-order datagrams without calling on_datagram: off, so every datagram
            # passes the wrapper (the in-order path then runs in Python; recovery, which this measures, always does)
            ch.core.lane = None
    print("ready", flush=True)
    t0 = time.perf_counter()
    c0 = self_cpu_s()
    quiet_collector()  # as the daemon does (mdcommon/daemon_io.py, run_until_signalled)
    handler.run(duration_s=args.seconds)
    cpu = self_cpu_s() - c0
    wall = time.perf_counter() - t0
    st = handler.status()["channels"]
    out: dict = {"delivered": n[0], "wall_s": wall, "cpu_s": cpu, "rss_bytes": self_rss_bytes(),
                 "instruments": sum(len(ch.core.image) for ch in handler.channels), "image_s": image_s[0] if image_s else None}
    for key in ("delivered", "gaps_detected", "gaps_filled_by_other_feed", "gaps_recovered_by_nack", "gaps_unrecoverable",
                "messages_lost", "nacks_sent", "messages_requested", "rejects", "nack_timeouts", "nacks_throttled", "nacks_suppressed"):
        out["stream_" + key] = sum(c["stream"][key] for c in st.values())
    out["datagrams"] = sum(c["feeds"][f]["datagrams"] for c in st.values() for f in ("A", "B"))
    out["ended"] = all(ch.core.ended for ch in handler.channels)
    out.update(latency_figures(lat, lat_at, int(args.warmup_s * 1e9)))
    r50, r99, rmax = percentiles(recovered, (0.5, 0.99, 1.0))
    out.update(recovered_n=len(recovered), recovery_p50_ms=r50 / 1e6, recovery_p99_ms=r99 / 1e6, recovery_max_ms=rmax / 1e6)
    out["dropped_in_process"] = sum(handler.dropped.values()) + dropped_both[0]
    out["gaps_lost"] = gaps_lost  # the first GapEvents: first, last, reason
    handler.close()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
