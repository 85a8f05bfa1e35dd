"""Run every benchmark in one go and write a Markdown report of their tables, with ratios to the floor.

    bench/run [--quick]        # results in bench/results/<timestamp>/report.md

Each script prints its own table (figures are medians where a script repeats, and every comparison
is a ratio taken in its own run); this collects them, in one session on one machine, and adds a
summary of packets/s against the C floor measured in the same session. Missing here (issue 11):
plots, the ZeroMQ PGM/NORM peer, and the scaling series.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BENCHES = [
    ("floor", ["bench/floor.py", "--seconds", "3"], ["bench/floor.py", "--seconds", "1"]),
    ("codec", ["bench/codec.py"], ["bench/codec.py", "--seconds", "0.2", "--repeats", "3"]),
    ("plant", ["bench/plant.py", "--seconds", "5"], ["bench/plant.py", "--seconds", "1"]),
    ("handler", ["bench/handler.py", "--seconds", "3"], ["bench/handler.py", "--seconds", "1", "--repeats", "2", "--rates", "10000,100000"]),
    ("pcap", ["bench/pcap.py"], ["bench/pcap.py", "--datagrams", "20000"]),
    ("retransmit", ["bench/retransmit.py", "--rate", "20000"], ["bench/retransmit.py", "--rate", "20000", "--instruments", "20000",
                                                                 "--joiners", "2"]),
]


def number(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1).replace(",", "")) if m else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs (minutes instead of about ten)")
    ap.add_argument("--out", help="results folder (default bench/results/<timestamp>)")
    args = ap.parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / stamp
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    for name, full, quick in BENCHES:
        cmd = [sys.executable, *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        outputs[name] = r.stdout + (f"\n(exit {r.returncode})\n{r.stderr[-2000:]}" if r.returncode else "")
        (out / f"{name}.txt").write_text(outputs[name])
        print(outputs[name], flush=True)
    c_floor = number(r"^C sendmmsg.*?\s([\d,]+)\s+1\.00", outputs["floor"])
    py_floor = number(r"^Python sendto loop\s+([\d,]+)", outputs["floor"])
    plant_dgrams = number(r"^sequence \+ send, pre-generated\s+[\d,]+\s+[\d.]+\s+([\d,]+)", outputs["plant"])
    rows = []
    if c_floor and plant_dgrams:
        # the plant sends every datagram twice (A and B): its sends/s are twice its datagrams/s per feed
        rows.append(("plant hot path, sends/s (A+B) vs C sendmmsg", 2 * plant_dgrams, c_floor))
        if py_floor:
            rows.append(("plant hot path, sends/s (A+B) vs bare Python sendto", 2 * plant_dgrams, py_floor))
    lines = [f"# Benchmark report {stamp}", "",
             f"Machine: {platform.node()} · {platform.machine()} · {platform.platform()} · Python {platform.python_version()} · "
             f"{'quick' if args.quick else 'full'} runs", "",
             "Reproduce: `bench/run` (or `bench/run --quick`). Every ratio below was measured in this session.", "",
             "## Summary", "", "| comparison | figure | floor | ratio |", "|---|---|---|---|"]
    lines += [f"| {name} | {fig:,.0f} | {base:,.0f} | {fig / base:.2f} |" for name, fig, base in rows]
    for name, _, _ in BENCHES:
        lines += ["", f"## {name}", "", "```", outputs[name].rstrip(), "```"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
