"""Live figures on loopback: latency against throughput, recovery, initial images, and scaling.

Every run here is real processes: `python -m tickerplant`, `python -m retransmit run` and one
or more handlers (bench/handler_proc.py, the daemon's `LineHandler` loop with a counting
callback), on fresh groups. Sections (each repeated `--repeats` times; the report shows the median
and the min and max):

  curve       publish-to-callback p50/p99/p99.9 at 10 k, 100 k, 300 k msg/s and with the plant flat
              out; delivered rate, loss, CPU seconds per million messages of plant and handler
  recovery    1 % and 5 % of datagrams dropped in the handler on both feeds (--drop-a/--drop-b), a
              retransmission server repairing: time from gap seen to gap filled (p50/p99/max), loss
  image       initial image for 1 k, 20 k, 200 k instruments: seconds from handler start to applied,
              and the handler's resident memory with the image held (memory per 100 k instruments)
  handlers    1, 2, 4 handler processes on one plant at 100 k msg/s
  channels    1, 2, 4 plants (channels) at 50 k msg/s each, one handler subscribed to all
  instruments the handler core alone with its image on, from memory: CPU µs per message and memory
              against the number of instruments (1 k -> 200 k)

    python bench/live.py [--seconds 3] [--repeats 3] [--sections curve,recovery,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, Samples, groups

PY = sys.executable
SECTIONS = ("curve", "recovery", "image", "handlers", "channels", "instruments")
RATES = (("10k", 10_000), ("100k", 100_000), ("300k", 300_000), ("max", 5_000_000))


def feed_flags(a, b) -> list[str]:
    return ["--feed-a-group", a[0], "--feed-a-port", str(a[1]), "--feed-b-group", b[0], "--feed-b-port", str(b[1])]


WARMUP_S = 1.0  # latency before this (from the first market message) is the start-up transient, as for the peers


def start_plant(a, b, rate: float, seconds: float, instruments: int = 10_000, request_port: int = 0,
                linger_ms: int = 300, spin_us: int = 0) -> subprocess.Popen:
    """The plant daemon; with `request_port`, it also answers re-requests from its journal (for mirrors' own gaps);
    with `spin_us`, it busy-waits that long before each due batch (`--spin-us`) instead of sleeping through it."""
    serve = ["--request-address", "127.0.0.1", "--request-port", str(request_port)] if request_port else []
    serve += ["--spin-us", str(spin_us)] if spin_us else []
    return subprocess.Popen([PY, "-m", "tickerplant", *feed_flags(a, b), *serve, "--source-rate", str(rate), "--source-burst-seconds", "0",
                             "--source-instruments", str(instruments), "--duration-s", str(seconds), "--stats-interval-s", "0",
                             "--max-batch-delay-us", "100", "--end-of-session-linger-ms", str(linger_ms), "--no-keep-image",
                             "--log-level", "error"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def reap(p: subprocess.Popen, timeout: float = 60) -> float:
    """Wait for a child and return its CPU seconds (user + system) from wait4."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, _, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = 0
            return ru.ru_utime + ru.ru_stime
        time.sleep(0.02)
    p.kill()
    _, _, ru = os.wait4(p.pid, 0)
    p.returncode = -9
    return ru.ru_utime + ru.ru_stime


def start_handler(channels: list, seconds: float, *extra: str) -> subprocess.Popen:
    args = [PY, str(ROOT / "bench" / "handler_proc.py"), "--seconds", str(seconds), *extra]
    for a, b in channels:
        args += ["--channel", f"{a[0]}:{a[1]},{b[0]}:{b[1]}"]
    p = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"handler did not start: {line} {p.stderr.read()[-500:]}")
    return p


def handler_result(p: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = p.communicate(timeout=timeout)
    lines = [x for x in out.splitlines() if x.startswith("{")]
    if not lines:
        raise RuntimeError(f"handler gave no figures: {err[-800:]}")
    return json.loads(lines[-1])


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m retransmit run` mirroring a feed pair; NACKs on a UDP port, images on a TCP port."""

    def __init__(self, a, b, repair: str = "", pool: tuple | None = None, flags: tuple[str, ...] = ()) -> None:
        """`pool`: ((request group, port), (repair group, port)) to serve as one of an anonymous pool."""
        self.udp, self.tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
        extra = ["--repair-servers", repair] if repair else []
        if pool:
            (rg, rp), (pg, pp) = pool
            extra += ["--request-group-group", rg, "--request-group-port", str(rp), "--repair-group-group", pg, "--repair-group-port", str(pp)]
        extra += list(flags)
        self.status = f"/tmp/md-bench-live-{os.getpid()}-{self.udp}.sock"
        self.p = subprocess.Popen([PY, "-m", "retransmit", "run", *feed_flags(a, b), "--request-port", str(self.udp),
                                   "--image-port", str(self.tcp), "--stats-interval-s", "0", "--status-socket", self.status,
                                   "--image-reuse-ms", "0", "--log-level", "error", *extra], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not Path(self.status).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)

    def instruments(self) -> int:
        from mdcommon.status_io import fetch_status

        try:
            return fetch_status(self.status)["mirror"]["channels"]["ch1"]["instruments"]
        except (OSError, KeyError, ValueError):
            return -1

    def close(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


# -- sections ---------------------------------------------------------------------------------------

def curve(out: Samples, seconds: float, rates=RATES) -> None:
    for label, rate in rates:
        a, b = groups("239.195")
        # one more second for the warm-up: the percentiles are the steady state after it, as for the peers
        # (bench/peer.py); the start-up transient is reported on its own
        h = start_handler([(a, b)], seconds + WARMUP_S + 6)
        plant = start_plant(a, b, rate, seconds + WARMUP_S)
        plant_cpu = reap(plant, seconds + 30)
        r = handler_result(h)
        got = r["delivered"] - 10_000  # less the instrument directory published at start
        seconds_run = seconds + WARMUP_S
        k = f"curve.{label}"
        out.add(f"{k}.msgs_s", got / seconds_run)
        out.add(f"{k}.p50_us", r["p50_us"])
        out.add(f"{k}.p99_us", r["p99_us"])
        out.add(f"{k}.p999_us", r["p999_us"])
        out.add(f"{k}.startup_max_us", r["startup_max_us"])
        out.add(f"{k}.settle_ms", r["settle_ms"])
        out.add(f"{k}.all_p99_us", r["all_p99_us"])
        out.note(f"{k}.timeline", json.dumps(r["timeline"]))
        out.add(f"{k}.lost", r["stream_messages_lost"])
        out.add(f"{k}.gaps", r["stream_gaps_detected"])
        out.add(f"{k}.handler_cpu_s_per_M", r["cpu_s"] / max(got, 1) * 1e6)
        out.add(f"{k}.plant_cpu_s_per_M", plant_cpu / max(got, 1) * 1e6)
        out.add(f"{k}.handler_dgrams_s", r["datagrams"] / seconds_run)
        print(f"  curve {label}: {got / seconds_run:,.0f} msg/s delivered, steady state after {WARMUP_S:g} s: p50 {r['p50_us']:.0f} µs "
              f"p99 {r['p99_us']:.0f} µs p99.9 {r['p999_us']:.0f} µs; start-up worst {r['startup_max_us']:,.0f} µs, settled "
              f"{r['settle_ms']:.0f} ms; lost {r['stream_messages_lost']}, ended {r['ended']}", flush=True)


def recovery(out: Samples, seconds: float, losses=(0.01, 0.05), rate: float = 100_000) -> None:
    """Two kinds of loss at each level: `indep` drops datagrams on A and on B independently (the
    handler's --drop-a/--drop-b: the other feed fills most gaps), `both` drops the same datagrams on
    both feeds (chosen by sequence number: every one is a gap only a NACK can fill)."""
    for kind, p in [(k, p) for p in losses for k in ("indep", "both")]:
        a, b = groups("239.195")
        srv = Server(a, b)
        drop = ["--drop-a", str(p), "--drop-b", str(p)] if kind == "indep" else ["--drop-both", str(p)]
        try:
            h = start_handler([(a, b)], seconds + 12, "--nack", f"127.0.0.1:{srv.udp}", *drop)
            plant = start_plant(a, b, rate, seconds)
            reap(plant, seconds + 30)
            r = handler_result(h)
        finally:
            srv.close()
        k = f"recovery.{kind}.{p:.0%}"
        for name in ("recovery_p50_ms", "recovery_p99_ms", "recovery_max_ms", "recovered_n", "stream_messages_lost",
                     "stream_gaps_detected", "stream_gaps_filled_by_other_feed", "stream_gaps_recovered_by_nack", "dropped_in_process"):
            out.add(f"{k}.{name}", r[name])
        out.add(f"{k}.delivered", r["delivered"])
        print(f"  recovery, {kind} {p:.0%} drop on A and B: {r['stream_gaps_detected']} gaps, {r['stream_gaps_filled_by_other_feed']} "
              f"filled by the other feed, {r['stream_gaps_recovered_by_nack']} by NACK in p50 {r['recovery_p50_ms']:.1f} ms "
              f"p99 {r['recovery_p99_ms']:.1f} ms max {r['recovery_max_ms']:.1f} ms; lost {r['stream_messages_lost']}; "
              f"{r['stream_nacks_sent']} NACKs for {r['stream_messages_requested']:,} messages, {r['stream_rejects']} rejects, "
              f"{r['stream_nack_timeouts']} timeouts, {r['stream_nacks_throttled']} throttled", flush=True)


def image(out: Samples, sizes=(1_000, 20_000, 200_000), rate: float = 50_000) -> None:
    rss = {}
    for n in sizes:
        a, b = groups("239.195")
        srv = Server(a, b)
        plant = start_plant(a, b, rate, 600, instruments=n)
        try:
            deadline = time.monotonic() + 120
            while srv.instruments() < n and time.monotonic() < deadline:
                time.sleep(0.2)
            h = start_handler([(a, b)], 60, "--image", f"127.0.0.1:{srv.tcp}", "--keep-image", "--until-image")
            r = handler_result(h)
        finally:
            plant.terminate()
            reap(plant, 30)
            srv.close()
        out.add(f"image.{n}.seconds", r["image_s"])
        out.add(f"image.{n}.handler_rss_MiB", r["rss_bytes"] / 2**20)
        out.add(f"image.{n}.instruments", r["instruments"])
        rss[n] = r["rss_bytes"]
        print(f"  image of {n:,} instruments: applied after {r['image_s'] or float('nan'):.2f} s, handler RSS "
              f"{r['rss_bytes'] / 2**20:.0f} MiB, {r['instruments']:,} instruments held", flush=True)
    lo, hi = min(rss), max(rss)
    if hi > lo:
        out.add("image.rss_MiB_per_100k_instruments", (rss[hi] - rss[lo]) / (hi - lo) * 1e5 / 2**20)


def handlers(out: Samples, seconds: float, counts=(1, 2, 4), rate: float = 100_000) -> None:
    for k in counts:
        a, b = groups("239.195")
        hs = [start_handler([(a, b)], seconds + 6) for _ in range(k)]
        plant = start_plant(a, b, rate, seconds)
        plant_cpu = reap(plant, seconds + 30)
        rs = [handler_result(h) for h in hs]
        got = [r["delivered"] - 10_000 for r in rs]  # less the directory
        key = f"handlers.{k}"
        out.add(f"{key}.lost_total", sum(r["stream_messages_lost"] for r in rs))
        out.add(f"{key}.handler_cpu_s_per_M", sum(r["cpu_s"] for r in rs) / max(sum(got), 1) * 1e6)
        out.add(f"{key}.p99_us_worst", max(r["p99_us"] for r in rs))
        out.add(f"{key}.p50_us_median", sorted(r["p50_us"] for r in rs)[len(rs) // 2])
        out.add(f"{key}.plant_cpu_s_per_M", plant_cpu / max(max(got), 1) * 1e6)
        out.add(f"{key}.msgs_s_each", min(got) / seconds)
        print(f"  {k} handler(s) at {rate:,.0f} msg/s: lost {sum(r['stream_messages_lost'] for r in rs)}, worst p99 "
              f"{max(r['p99_us'] for r in rs):.0f} µs, handler CPU {sum(r['cpu_s'] for r in rs) / max(sum(got), 1) * 1e6:.2f} s per M msgs",
              flush=True)


def channels(out: Samples, seconds: float, counts=(1, 2, 4), rate: float = 50_000) -> None:
    for k in counts:
        pairs = []
        while len(pairs) < k:
            p = groups("239.195")
            if all(p[0][0] != q[0][0] for q in pairs):
                pairs.append(p)
        h = start_handler(pairs, seconds + 6)
        plants = [start_plant(a, b, rate, seconds) for a, b in pairs]
        cpu = sum(reap(p, seconds + 30) for p in plants)
        r = handler_result(h)
        r["delivered"] -= 10_000 * k  # less the directories
        key = f"channels.{k}"
        out.add(f"{key}.msgs_s", r["delivered"] / seconds)
        out.add(f"{key}.lost", r["stream_messages_lost"])
        out.add(f"{key}.handler_cpu_s_per_M", r["cpu_s"] / max(r["delivered"], 1) * 1e6)
        out.add(f"{key}.handler_cpu_share", r["cpu_s"] / seconds)
        out.add(f"{key}.p99_us", r["p99_us"])
        out.add(f"{key}.p50_us", r["p50_us"])
        out.add(f"{key}.plants_cpu_s_per_M", cpu / max(r["delivered"], 1) * 1e6)
        print(f"  {k} channel(s) at {rate:,.0f} msg/s each: handler delivered {r['delivered'] / seconds:,.0f} msg/s, lost "
              f"{r['stream_messages_lost']}, p99 {r['p99_us']:.0f} µs, CPU {r['cpu_s'] / seconds:.0%} of a core", flush=True)


CORE_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1]); sys.path.append(sys.argv[1] + "/bench")  # bench/ last: bench/retransmit.py is not the package
from common import self_rss_bytes
from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from linehandler.session import HandlerCore
from tickerplant.sequencer import Sequencer
from tickerplant.source import SyntheticMarket
n = int(sys.argv[2]); m = int(sys.argv[3])
market = SyntheticMarket(n, seed=2)
seq = Sequencer(make_session(SCHEMA_FINGERPRINT, 1), CODECS, max_datagram_bytes=1400)
dgs = seq.publish_many(list(market.directory(1)) + market.next_messages(m, 1), 0) + seq.flush(0)
dgs = [bytes(d) for d in dgs]
total = sum(int.from_bytes(d[18:20], "big") for d in dgs if int.from_bytes(d[18:20], "big") != 0xFFFF)
rss0 = self_rss_bytes()
core = HandlerCore(lambda s, x: None, lambda e: None, keep_image=True)
t0 = time.process_time()
for d in dgs:
    core.on_datagram("A", d, 0)
    core.on_datagram("B", d, 0)
cpu = time.process_time() - t0
print(json.dumps({"us_per_msg": cpu / total * 1e6, "rss_delta": self_rss_bytes() - rss0, "instruments": len(core.image)}))
"""


def instruments(out: Samples, sizes=(1_000, 10_000, 50_000, 200_000)) -> None:
    for n in sizes:
        m = max(300_000, 3 * n)
        r = subprocess.run([PY, "-c", CORE_CHILD, str(ROOT), str(n), str(m)], capture_output=True, text=True, timeout=600)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        out.add(f"instruments.{n}.core_us_per_msg", d["us_per_msg"])
        out.add(f"instruments.{n}.image_MiB", d["rss_delta"] / 2**20)
        print(f"  core with image, {n:,} instruments: {d['us_per_msg']:.3f} µs/msg, image +{d['rss_delta'] / 2**20:.0f} MiB", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="publishing time per live run [s]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--image-sizes", default="1000,20000,200000")
    ap.add_argument("--json", help="write the samples here")
    args = ap.parse_args(argv)
    out = Samples()
    sections = [s for s in args.sections.split(",") if s]
    sizes = tuple(int(x) for x in args.image_sizes.split(","))
    for rep in range(args.repeats):
        print(f"repetition {rep + 1}", flush=True)
        for s in sections:
            try:
                if s == "curve":
                    curve(out, args.seconds)
                elif s == "recovery":
                    recovery(out, args.seconds)
                elif s == "image":
                    image(out, sizes)
                elif s == "handlers":
                    handlers(out, args.seconds)
                elif s == "channels":
                    channels(out, args.seconds)
                elif s == "instruments":
                    instruments(out)
            except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
                out.note(f"live.error.{s}.{rep}", repr(exc))
                print(f"  {s} failed: {exc!r}", flush=True)
    out.print_medians(50)
    out.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
