"""The main job on one machine: a ticker plant, a retransmission server and two line handlers
on loopback, on one live screen of their figures read from their status sockets.

    python examples/demo.py [--seconds 20] [--rate 20000] [--loss 0.05]

h1 starts with the plant and sees both feeds clean; h2 joins late (from an initial
image) and drops `--loss` of each feed in-process, so its gaps are filled by the other
feed or recovered by NACK. Everything stops by SIGTERM at the end (Ctrl-C stops early).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console, Group  # noqa: E402
from rich.live import Live  # noqa: E402
from rich.text import Text  # noqa: E402

from mdcommon.status_io import fetch_status  # noqa: E402
from mdcommon.status_view_io import status_table  # noqa: E402


def start(name: str, args: list[str], logdir: Path) -> subprocess.Popen:
    log = open(logdir / f"{name}.log", "w")  # noqa: SIM115 - handed to the child for its lifetime
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def status(path: Path) -> dict | None:
    try:
        return fetch_status(str(path), timeout_s=0.5)
    except (OSError, ValueError):
        return None


LABELS = {"plant": "plant", "rtx": "retransmission server", "h1": "h1: from the start, both feeds clean",
          "h2": "h2: joins late from an image, drops {loss:.0%} of each feed"}


def screen(t: float, seconds: float, work: Path, snaps: dict[str, dict | None], previous: dict[str, dict | None], dt: float,
           loss: float) -> Group:
    """One screen: the plant, the server and each handler, as `python -m linehandler status` shows them."""
    parts: list = [Text.assemble(("ticker plant demo on loopback", "bold"), f"   t = {t:4.1f} s of {seconds:g}   logs in {work}")]
    for name, snap in snaps.items():
        label = LABELS[name].format(loss=loss)
        if snap is None:
            parts.append(Text(f"{label}: starting", style="dim"))
        else:
            parts.append(status_table(snap, previous.get(name), dt, title=label))
    return Group(*parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to run [s] (default 20)")
    ap.add_argument("--rate", type=float, default=20000.0, help="plant base rate [messages/s] (default 20000)")
    ap.add_argument("--instruments", type=int, default=1000, help="instruments (default 1000)")
    ap.add_argument("--loss", type=float, default=0.05, help="h2's in-process loss on each feed (default 0.05)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="md-demo-"))
    sock = {n: work / f"{n}.sock" for n in ("plant", "rtx", "h1", "h2")}
    common = ["--stats-interval-s", "0"]
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["rtx"] = start("rtx", ["retransmit", "run", "--status-socket", str(sock["rtx"]), *common], work)
        procs["h1"] = start("h1", ["linehandler", "run", "--status-socket", str(sock["h1"]), "--channel-nack-servers", "127.0.0.1:31101",
                                   *common], work)
        time.sleep(1.0)
        procs["plant"] = start("plant", ["tickerplant", "run", "--status-socket", str(sock["plant"]), "--source-rate", str(args.rate),
                                         "--source-instruments", str(args.instruments), "--end-of-session-linger-ms", "500", *common], work)
        console = Console() if sys.stdout.isatty() else Console(width=150)  # a log or a pipe: wide enough for every column
        live = Live(console=console, refresh_per_second=4, transient=False) if console.is_terminal else None
        if live is None:
            print(f"demo: plant, retransmission server and line handlers on loopback; logs in {work}", flush=True)
        else:
            live.start()
        t0 = time.monotonic()
        previous: dict[str, dict | None] = {}
        t_previous = 0.0
        h2_started = False
        try:
            while (t := time.monotonic() - t0) < args.seconds:
                if not h2_started and t > 3:
                    procs["h2"] = start("h2", ["linehandler", "run", "--status-socket", str(sock["h2"]), "--drop-a", str(args.loss),
                                               "--drop-b", str(args.loss), "--channel-nack-servers", "127.0.0.1:31101",
                                               "--channel-image-servers", "127.0.0.1:31102", *common], work)
                    h2_started = True
                snaps = {n: status(sock[n]) if n in procs else None for n in ("plant", "rtx", "h1", "h2")}
                if live is not None:
                    live.update(screen(t, args.seconds, work, snaps, previous, t - t_previous, args.loss))
                elif int(t) % 5 == 0:  # not a terminal: a line now and then
                    h = {n: s["channels"]["ch1"]["stream"]["delivered"] for n, s in snaps.items() if s and n.startswith("h")}
                    print(f"demo: t={t:4.1f}s delivered " + ", ".join(f"{n} {v:,}" for n, v in h.items()), flush=True)
                previous, t_previous = snaps, t
                for name, p in procs.items():
                    if p.poll() is not None:
                        raise SystemExit(f"demo: {name} exited with {p.returncode}; see {work / (name + '.log')}")
                time.sleep(1.0)
        finally:
            if live is not None:
                live.stop()
        last_plant = status(sock["plant"])  # its figures as it stops (it exits at the end of the session)
        procs["plant"].send_signal(signal.SIGTERM)
        procs["plant"].wait(timeout=15)
        time.sleep(1.0)
        final = {n: status(sock[n]) for n in ("rtx", "h1", "h2")}
        final = {"plant": last_plant, **final}
        console.print(screen(time.monotonic() - t0, args.seconds, work, final, previous, time.monotonic() - t0 - t_previous, args.loss))
        final = {n: final[n] for n in ("h1", "h2")}
        ok = True
        for name, st in final.items():
            if st:
                ch = st["channels"]["ch1"]
                print(f"{name}: delivered {ch['stream']['delivered']:,} messages, lost {ch['stream']['messages_lost']}, "
                      f"next sequence {ch['expected']:,}, quality {ch['quality']}")
                ok = ok and ch["quality"] == "OK"
        return 0 if ok else 1
    except KeyboardInterrupt:
        return 130
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in sock.values():
            if s.exists():
                os.unlink(s)


if __name__ == "__main__":
    sys.exit(main())
