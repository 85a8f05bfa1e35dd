"""Run the benchmarks side by side and write one report with tables, verdicts and plots.

    bench/run [--quick]        # results in bench/results/<timestamp>/: report.md, *.png, samples.json, logs

Steps (each a script of its own, runnable alone; see its docstring):
  side       plant and live handler against the C sendmmsg/recvmmsg floor and a bare Python loop (bench/side.py)
  live       latency against throughput, recovery, initial images, scaling (bench/live.py)
  peer       ZeroMQ epgm/NORM and tcpreplay, with nftables loss, in a private namespace (bench/peer.py)
  pool       recovery with unicast servers against an anonymous pool (bench/pool.py)
  relay      relays: throughput, latency added per layer and by a chain of 3, ITCH normalization (bench/relay.py)
  hotpath    cProfile top-N of the plant's and the handler's hot paths (bench/hotpath.py)
  components the per-component scripts (floor, codec, plant, handler, pcap, retransmit, join); full runs only

Every figure in the report's tables is the median over the repetitions with the min and max; a
ratio is the median of ratios each taken within one repetition. `--quick` runs fewer and shorter
repetitions (about 3 minutes); the full run takes about 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Samples, fmt, merge_samples, summarize  # noqa: E402
from report import cell, grid, paced_target, plots, table, verdict  # noqa: E402

PY = sys.executable
STEPS = {
    # name: (full args, quick args)
    "side": (["bench/side.py", "--seconds", "2", "--repeats", "3"], ["bench/side.py", "--seconds", "1", "--repeats", "2"]),
    "live": (["bench/live.py", "--seconds", "3", "--repeats", "3"],
             ["bench/live.py", "--seconds", "1", "--repeats", "2", "--image-sizes", "1000,20000"]),
    "peer": (["bench/peer.py", "--seconds", "2", "--repeats", "3", "--norm"],
             ["bench/peer.py", "--seconds", "1", "--repeats", "2", "--replay-datagrams", "30000"]),
    "hotpath": (["bench/hotpath.py", "--seconds", "2"], ["bench/hotpath.py", "--seconds", "1", "--top", "12"]),
    "pool": (["bench/pool.py", "--seconds", "4", "--repeats", "3"], ["bench/pool.py", "--seconds", "3", "--repeats", "1"]),
    "relay": (["bench/relay.py", "--seconds", "2", "--repeats", "3"],
              ["bench/relay.py", "--seconds", "1", "--repeats", "1", "--rates", "10000,100000,200000", "--itch-messages", "20000"]),
}
COMPONENTS = [
    ("floor", ["bench/floor.py", "--seconds", "3"]),
    ("codec", ["bench/codec.py"]),
    ("plant", ["bench/plant.py", "--seconds", "3"]),
    ("handler", ["bench/handler.py", "--seconds", "3"]),
    ("pcap", ["bench/pcap.py"]),
    ("retransmit", ["bench/retransmit.py", "--rate", "100000"]),  # issue 18: images and ten joiners under 100 k msg/s
    ("join", ["bench/join.py"]),
]


# issue 18's targets (the ratios are taken inside one repetition)
PLANT_FULL_TARGET = 0.5
PLANT_HOT_TARGET = 0.7
HANDLER_TARGET = 0.9
EPGM_TPUT_TARGET = 1.5
REPLAY_TARGET = 0.9


def machine() -> list[str]:
    model = "?"
    with contextlib.suppress(OSError, StopIteration):
        model = next(x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
    zpy = "not installed"
    r = subprocess.run(["/usr/bin/python3", "-c", "import sys, zmq; print(sys.version.split()[0], zmq.zmq_version(), zmq.pyzmq_version())"],
                       capture_output=True, text=True)
    if r.returncode == 0:
        v = r.stdout.split()
        zpy = f"Debian /usr/bin/python3 {v[0]}, libzmq {v[1]}, pyzmq {v[2]}"
    rmem = Path("/proc/sys/net/core/rmem_max").read_text().strip() if Path("/proc/sys/net/core/rmem_max").exists() else "?"
    r = subprocess.run([sys.executable, "-c", "import decoders; print(decoders.BACKEND, '|', decoders.BACKEND_REASON)"],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    backend = r.stdout.strip() or "?"
    return [f"| backend (decoders.BACKEND, MD_BACKEND={os.environ.get('MD_BACKEND', '')!r}) | {backend.replace('|', '—')} |",
            f"| nproc | {os.cpu_count()} |", f"| CPU | {model} |", f"| kernel | {platform.release()} |",
            f"| Python (benchmarks) | {platform.python_implementation()} {platform.python_version()} ({sys.executable}) |",
            f"| ZeroMQ peer | {zpy} |", f"| net.core.rmem_max | {rmem} |", f"| host | {platform.node()} |"]


def run_step(name: str, args: list[str], out: Path, json_out: bool = True) -> tuple[str, float]:
    cmd = [PY, *args] + (["--json", str(out / f"{name}.json")] if json_out else [])
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        text = r.stdout + (f"\n(exit {r.returncode})\n{r.stderr[-3000:]}" if r.returncode else "")
    except subprocess.TimeoutExpired as exc:
        text = f"(timed out after {exc.timeout} s)\n{exc.stdout or ''}"
    dt = time.monotonic() - t0
    (out / f"{name}.txt").write_text(text)
    print(text[-2500:], flush=True)
    return text, dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer, shorter repetitions (about 3 minutes)")
    ap.add_argument("--out", help="results folder (default bench/results/<timestamp>)")
    ap.add_argument("--steps", default="side,live,peer,pool,relay,hotpath,components", help="comma-separated subset of the steps")
    ap.add_argument("--components", action="store_true", help="run the per-component scripts in --quick mode too")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: write report.md again from the step outputs already in --out (after a change of the report)")
    args = ap.parse_args(argv)
    if args.report_only and not args.out:
        ap.error("--report-only needs --out, the folder of the run")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / stamp
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps.split(",")
    texts: dict[str, str] = {}
    times: dict[str, float] = {}
    t_start = time.monotonic()
    for name, (full, quick) in STEPS.items():
        if name in steps:
            if args.report_only:
                if (out / f"{name}.txt").exists():
                    texts[name] = (out / f"{name}.txt").read_text()
                continue
            texts[name], times[name] = run_step(name, quick if args.quick else full, out, json_out=name != "hotpath")
    if "components" in steps and (not args.quick or args.components):
        for name, cmd in COMPONENTS:
            if args.report_only:
                if (out / f"{name}.txt").exists():
                    texts["component." + name] = (out / f"{name}.txt").read_text()
                continue
            texts["component." + name], times["component." + name] = run_step(name, cmd, out, json_out=False)
    parts = [Samples.load(p) for name in STEPS if (p := out / f"{name}.json").exists()]
    s = merge_samples(parts)
    s.write(out / "samples.json")
    pngs = plots(s, out)
    total = time.monotonic() - t_start
    if args.report_only:  # the run's own duration, from the report it wrote then
        old = (out / "report.md").read_text() if (out / "report.md").exists() else ""
        m = re.search(r"run, ([\d.]+) minutes", old)
        total = float(m.group(1)) * 60 if m else 0.0
        stamp = re.search(r"# Benchmark report (\S+)", old).group(1) if "# Benchmark report" in old else stamp
        times = dict(re.findall(r"^- (\S+): (\d+) s$", old, re.M)) and {k: float(v) for k, v in re.findall(r"^- (\S+): (\d+) s$", old, re.M)}

    L: list[str] = [f"# Benchmark report {stamp}", "",
                    f"{'Quick' if args.quick else 'Full'} run, {total / 60:.1f} minutes. Reproduce: `bench/run` "
                    f"{'--quick ' if args.quick else ''}(results in `bench/results/<timestamp>/`). Every cell is the median over "
                    "the repetitions [min–max] (n = repetitions); every ratio is the median of ratios each taken inside one "
                    "repetition, both sides measured in it. Datagrams/s count both feeds (a datagram sent on A and on B "
                    "counts twice); messages/s count distinct messages.", "", "## Machine", "", "| | |", "|---|---|", *machine(), ""]

    # -- verdicts (the targets of issue 18)
    plant_ok, plant_txt = verdict(s, "ratio.plant_full_vs_c_send", PLANT_FULL_TARGET)
    hot_ok, hot_txt = verdict(s, "ratio.plant_hot_vs_c_send", PLANT_HOT_TARGET)
    h_ok, h_txt = verdict(s, "ratio.handler_vs_c_recv", HANDLER_TARGET)  # the rate is the highest one tried with zero loss
    h_ok, h_txt = paced_target(s, h_ok, h_txt, HANDLER_TARGET)
    peer_rows = []
    tput = s.figures.get("ratio.ours_vs_epgm_tput")
    if tput:
        med = summarize(tput)[0]
        p99 = [summarize(s.figures.get(f"ratio.ours_vs_epgm_p99_{x}", []))[0] for x in ("10k", "100k")]
        p999 = summarize(s.figures.get("peer.ours.100k.p999_us", []))[0] if s.figures.get("peer.ours.100k.p999_us") else float("nan")
        lost = s.figures.get("peer.ours.loss1.lost", [])
        peer_rows.append((med >= EPGM_TPUT_TARGET, f"throughput ≥ {EPGM_TPUT_TARGET}× ZeroMQ epgm's (39-byte messages, flat out)",
                          f"ratio {med:.2f}"))
        peer_rows.append((all(p == p and p <= 1 for p in p99), "p99 ≤ epgm's at 10 k and 100 k msg/s (steady state, both after the same warm-up, both publishers spinning their last 50 µs before a send)",
                          f"ratio {fmt(p99[0])} at 10 k/s, {fmt(p99[1])} at 100 k/s"))
        peer_rows.append((p999 == p999 and p999 < 2000, "p99.9 < 2 ms at 100 k msg/s", f"{fmt(p999)} µs"))
        peer_rows.append((bool(lost) and max(lost) == 0, "nothing lost under 1 % injected loss at 100 k msg/s",
                          f"lost {fmt(max(lost)) if lost else 'not measured'}"))
    replay, frames = s.figures.get("ratio.replay_ours_vs_tcpreplay"), s.figures.get("ratio.replay_frames_vs_tcpreplay")
    if replay or frames:
        best = max(summarize(frames)[0] if frames else 0.0, summarize(replay)[0] if replay else 0.0)
        peer_rows.append((best >= REPLAY_TARGET, f"wire replay ≥ {REPLAY_TARGET} of tcpreplay --topspeed (packets/s)",
                          f"frames as captured (`--frames`, a packet socket, as tcpreplay): ratio {fmt(summarize(frames)[0]) if frames else 'not measured'}; "
                          f"datagrams through UDP sockets: ratio {fmt(summarize(replay)[0]) if replay else 'not measured'}"))
    curve300 = s.figures.get("curve.300k.p99_us")
    if curve300:
        med = summarize(curve300)[0]
        peer_rows.append((med < 500, "p99 < 500 µs at 300 k msg/s after the warm-up (bench/live.py curve)", f"{fmt(med)} µs"))
    L += ["## Targets", "", "| target | verdict | figures |", "|---|---|---|"]
    word = {True: "**met**", False: "**missed**", None: "not measured"}
    L.append(f"| plant ≥ {PLANT_FULL_TARGET:.0%} of the C floor's datagrams/s (full path: source + sequence + send, A and B) | "
             f"{word[plant_ok]} | {plant_txt} |")
    L.append(f"| the same ≥ {PLANT_HOT_TARGET:.0%}, hot path only (messages made beforehand) | {word[hot_ok]} | {hot_txt} |")
    L.append(f"| handler live ≥ {HANDLER_TARGET:.0%} of the C floor's datagrams/s with zero loss (highest zero-loss rate found, "
             f"by steps of 10 % from the target) | {word[h_ok]} | {h_txt} |")
    for ok, label, txt in peer_rows:
        L.append(f"| {label} | {word[ok]} | {txt} |")
    L.append("")

    L += ["## Side by side with the floor (bench/side.py)", "", s.notes.get("side.template", ""), ""]
    L += table(s, [
        ("C sendmmsg, datagrams/s (A+B)", "floor.c_send_dgrams_s"), ("C recvmmsg, datagrams/s (A+B)", "floor.c_recv_dgrams_s"),
        ("bare Python sendto loop, datagrams/s", "floor.py_send_dgrams_s"), ("bare Python recv_into loop, datagrams/s (C sending)", "floor.py_recv_dgrams_s"),
        ("plant hot path, sends/s (A+B)", "plant.hot.sends_s"), ("plant hot path, messages/s", "plant.hot.msgs_s"),
        ("plant full path, sends/s (A+B)", "plant.full.sends_s"), ("plant full path, messages/s", "plant.full.msgs_s"),
        ("plant full path, CPU s per million messages", "plant.full.cpu_s_per_M"),
        ("handler, highest zero-loss datagrams/s (A+B)", "handler.max_zero_loss.dgrams_s"),
        ("handler, highest zero-loss messages/s", "handler.max_zero_loss.msgs_s"),
        ("handler, CPU s per million messages there", "handler.max_zero_loss.cpu_s_per_M"),
        ("handler at the target rate (60 %), messages lost", "handler.at_target.lost"),
        ("**ratio** plant full / C sendmmsg", "ratio.plant_full_vs_c_send"), ("**ratio** plant full / Python sendto", "ratio.plant_full_vs_py_send"),
        ("**ratio** plant hot / C sendmmsg", "ratio.plant_hot_vs_c_send"), ("**ratio** plant hot / Python sendto", "ratio.plant_hot_vs_py_send"),
        ("**ratio** plant messages/s / C floor's messages/s (same datagrams)", "ratio.plant_full_msgs_vs_c"),
        ("**ratio** handler / C recvmmsg", "ratio.handler_vs_c_recv"), ("**ratio** handler / Python recv_into", "ratio.handler_vs_py_recv"),
        ("**ratio** handler messages/s / C floor's messages/s", "ratio.handler_msgs_vs_c"),
        ("**ratio** Python sendto / C sendmmsg", "ratio.py_send_vs_c_send"), ("**ratio** Python recv_into / C recvmmsg", "ratio.py_recv_vs_c_recv")])
    tries = [v for k, v in sorted(s.notes.items()) if k.startswith("side.handler_tries.")]
    if tries:
        L += ["", "Handler rates tried per repetition (fraction of the C receive floor):", ""] + [f"- {t}" for t in tries]
    L.append("")

    L += ["## Latency against throughput (bench/live.py curve)", "",
          "Plant (`python -m tickerplant`, 10,000 instruments, batch delay 100 µs) → handler process; latency is publish "
          "timestamp → callback, every 7th market message. `max` is the plant flat out.", ""]
    L += grid(s, "rate", [("10 k/s", "10k"), ("100 k/s", "100k"), ("300 k/s", "300k"), ("max", "max")],
              [("delivered msg/s", "msgs_s"), ("p50 µs", "p50_us"), ("p99 µs", "p99_us"), ("p99.9 µs", "p999_us"), ("lost", "lost"),
               ("handler CPU s/M msgs", "handler_cpu_s_per_M"), ("plant CPU s/M msgs", "plant_cpu_s_per_M")], "curve.{row}.{col}")
    L += ["", "## Recovery after loss on both feeds (bench/live.py recovery)", "",
          "100 k msg/s. `indep`: the handler drops that fraction of datagrams on A and on B independently "
          "(`--drop-a/--drop-b`), so most gaps are filled by the other feed; `both`: the same datagrams are dropped on "
          "both feeds (chosen by sequence number), so every one needs a NACK to the retransmission server. Recovery "
          "time = gap seen → filled by retransmission.", ""]
    L += grid(s, "loss", [("1 % indep", "indep.1%"), ("1 % both", "both.1%"), ("5 % indep", "indep.5%"), ("5 % both", "both.5%")],
              [("gaps", "stream_gaps_detected"), ("filled by other feed", "stream_gaps_filled_by_other_feed"),
               ("by NACK", "stream_gaps_recovered_by_nack"), ("p50 ms", "recovery_p50_ms"), ("p99 ms", "recovery_p99_ms"),
               ("max ms", "recovery_max_ms"), ("lost", "stream_messages_lost")], "recovery.{row}.{col}")
    L += ["", "## Initial image, memory, scaling", ""]
    L += grid(s, "instruments", [(f"{n:,}", str(n)) for n in (1000, 20000, 200000)],
              [("image applied after s", "seconds"), ("handler RSS MiB", "handler_rss_MiB")], "image.{row}.{col}")
    L += [""] + table(s, [("handler resident memory per 100 k instruments, MiB", "image.rss_MiB_per_100k_instruments")])
    L += ["", "Handler core alone with its image, from memory (A and B both delivering):", ""]
    L += grid(s, "instruments", [(f"{n:,}", str(n)) for n in (1000, 10000, 50000, 200000)],
              [("CPU µs per message", "core_us_per_msg"), ("image MiB", "image_MiB")], "instruments.{row}.{col}")
    L += ["", "Handlers on one host (one plant at 100 k msg/s):", ""]
    L += grid(s, "handlers", [(str(n), str(n)) for n in (1, 2, 4)],
              [("msg/s each", "msgs_s_each"), ("lost", "lost_total"), ("handler CPU s/M", "handler_cpu_s_per_M"),
               ("median p50 µs", "p50_us_median"), ("worst p99 µs", "p99_us_worst")], "handlers.{row}.{col}")
    L += ["", "Channels into one handler (each channel a plant at 50 k msg/s):", ""]
    L += grid(s, "channels", [(str(n), str(n)) for n in (1, 2, 4)],
              [("delivered msg/s", "msgs_s"), ("lost", "lost"), ("handler CPU s/M", "handler_cpu_s_per_M"),
               ("handler CPU share of a core", "handler_cpu_share"), ("p50 µs", "p50_us"), ("p99 µs", "p99_us")], "channels.{row}.{col}")

    L += ["", "## Against ZeroMQ reliable multicast and tcpreplay (bench/peer.py)", "", s.notes.get("peer.setup", ""), ""]
    L += grid(s, "figure", [("throughput flat out, msg/s", "tput_msgs_s"), ("lost (flat out)", "tput_lost"),
                            ("10 k/s p50 µs", "10k.p50_us"), ("10 k/s p99 µs", "10k.p99_us"), ("10 k/s p99.9 µs", "10k.p999_us"),
                            ("100 k/s p50 µs", "100k.p50_us"), ("100 k/s p99 µs", "100k.p99_us"), ("100 k/s p99.9 µs", "100k.p999_us"),
                            ("1 % loss, 100 k/s: lost", "loss1.lost"), ("1 % loss, 100 k/s: p99 µs", "loss1.p99_us")],
              [("ours (plant → handler, A+B)", "ours"), ("ours, plant sleeping (no --spin-us)", "ours_sleep"), ("ZeroMQ epgm", "epgm"),
               ("ZeroMQ NORM", "norm")], "peer.{col}.{row}")
    L += [""] + table(s, [("**ratio** ours / epgm throughput", "ratio.ours_vs_epgm_tput"), ("**ratio** ours / epgm p99 at 10 k/s", "ratio.ours_vs_epgm_p99_10k"),
                          ("**ratio** ours / epgm p99 at 100 k/s", "ratio.ours_vs_epgm_p99_100k"),
                          ("ours under 1 % loss: gaps filled by the other feed", "peer.ours.loss1.filled_by_other_feed"),
                          ("ours under 1 % loss: gaps recovered by NACK", "peer.ours.loss1.recovered_by_nack"),
                          ("epgm under 1 % loss: msg/s received", "peer.epgm.loss1.recv_rate"),
                          ("wire replay (ours, --fast), packets/s", "replay.ours.pps"), ("tcpreplay --topspeed, packets/s", "replay.tcpreplay.pps"),
                          ("wire replay (ours): fraction delivered", "replay.ours.delivered_fraction"),
                          ("frame replay (ours, --fast --frames), packets/s", "replay.ours_frames.pps"),
                          ("frame replay (ours): fraction delivered", "replay.ours_frames.delivered_fraction"),
                          ("tcpreplay: fraction delivered", "replay.tcpreplay.delivered_fraction"),
                          ("**ratio** our wire replay / tcpreplay", "ratio.replay_ours_vs_tcpreplay"),
                          ("**ratio** our frame replay / tcpreplay", "ratio.replay_frames_vs_tcpreplay")])
    L += ["", "Loss injection: this kernel has no `tc netem`; an nftables rule in lo's prerouting hook (`numgen random mod 100 < 1 drop`, "
          "matched on the destination group) drops 1 % of multicast datagrams for our A and B groups and for the PGM group, inside a "
          "private network namespace (`unshare -n`). PGM's repair data (RDATA) goes to the same group and is dropped at the same rate.", ""]

    L += ["", "## Recovery: unicast servers against an anonymous pool (bench/pool.py)", "", s.notes.get("pool.setup", ""), "",
          "Per gap (the same gaps at every handler): requests all handlers sent, repairs all servers sent and their bytes. "
          "Unicast: each handler asks one of two configured servers. Multicast: handlers NACK to the request group and hear "
          "each other; the two servers answer on the repair group, one per request.", ""]
    pool_cols = [(f"{n} h {m}", f"{m}.{n}") for n in (1, 4, 8) for m in ("unicast", "multicast")]
    L += grid(s, "figure", [("gaps at each handler", "gaps"), ("requests per gap", "requests_per_gap"), ("repairs per gap", "repairs_per_gap"),
                            ("repair bytes per gap", "repair_bytes_per_gap"), ("NACKs suppressed per gap", "suppressed_per_gap"),
                            ("recovery p50 ms", "recovery_p50_ms"), ("recovery p99 ms (worst handler)", "recovery_p99_ms"),
                            ("messages lost", "lost")], pool_cols, "pool.{col}.{row}")
    L.append("")

    relay_kinds = [("direct", "direct"), ("1 relay", "relay"), ("filter", "filter"), ("delay 100 ms", "delay"), ("chain of 3", "chain3")]
    relay_rates = sorted({int(float(k.split(".")[1])) for k in s.figures if k.startswith("relay.") and k.split(".")[1][:1].isdigit()})
    if relay_rates:
        L += ["", "## Relays (bench/relay.py)", "", s.notes.get("relay.setup", ""), "",
              "Latency is from the plant's publish timestamp to the handler's callback, steady state; added = the set-up's "
              "percentile less direct's in the same repetition (for the delay, less the 100 ms too: the delay's error). "
              "CPU is per message delivered downstream and per relay.", ""]
        for rate in relay_rates:
            L += [f"Plant at {rate:,} msg/s:", ""]
            L += grid(s, "figure", [("market msg/s delivered", "msgs_s"), ("latency p50 µs", "p50_us"), ("latency p99 µs", "p99_us"),
                                    ("added p50 µs", "added_p50_us"), ("added p99 µs", "added_p99_us"),
                                    ("lost upstream (relays' GapEvents)", "lost_upstream"), ("lost downstream", "lost_downstream"),
                                    ("relay CPU s per M messages", "relay_cpu_s_per_M")], relay_kinds, f"relay.{rate}.{{col}}.{{row}}")
            L.append("")
        L += grid(s, "highest rate tried with nothing lost, msg/s", [("", "x")], relay_kinds, "relay.zero_loss_rate.{col}")
        L += ["", "`relay itch`, offline, per ITCH message: capture read (MoldUDP64 split and construct parse) "
              f"{cell(s, 'relay.itch_read_msgs_s')} msg/s; normalization into our messages {cell(s, 'relay.itch_normalize_msgs_s')} "
              f"msg/s; {cell(s, 'relay.itch_out_per_in')} of our messages per ITCH message.", ""]

    if pngs:
        L += ["## Plots", ""] + [f"![{p}]({p})" for p in pngs] + [""]
    missed = [x for x in (plant_ok, hot_ok, h_ok) if x is False] + [r[0] for r in peer_rows if r[0] is False]
    if missed and "hotpath" in texts:
        L += ["## Where the time goes (targets missed): cProfile of the hot paths", "",
              "cProfile charges a cost to every Python call, so the shares matter, not the seconds.", "", "```",
              texts["hotpath"].rstrip(), "```", ""]
    notes = {k: v for k, v in s.notes.items()
             if not k.startswith(("side.handler_tries", "side.template", "peer.setup", "pool.setup", "relay.setup")) and not k.endswith(".timeline")}
    if notes:
        L += ["## Notes from the runs", ""] + [f"- `{k}`: {v}" for k, v in sorted(notes.items())] + [""]
    L += ["## Step times", ""] + [f"- {k}: {v:.0f} s" for k, v in times.items()] + [""]
    comps = [k for k in texts if k.startswith("component.")]
    if comps:
        L += ["## Appendix: per-component benchmarks (each script's own table, one run)", ""]
        for k in comps:
            L += [f"### {k.split('.', 1)[1]}", "", "```", texts[k].rstrip(), "```", ""]
    (out / "report.md").write_text("\n".join(L) + "\n")
    print(f"report: {out / 'report.md'} ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
