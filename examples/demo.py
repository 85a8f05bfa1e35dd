"""The main job on one machine: a ticker plant, a retransmission server and two line handlers
on loopback, with a live table of their figures read from their status sockets.

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

from mdcommon.status_io import fetch_status  # noqa: E402


def start(name: str, args: list[str], logdir: Path) -> subprocess.Popen:
    log = open(logdir / f"{name}.log", "w")  # noqa: SIM115 - handed to the child for its lifetime
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def status(path: Path) -> dict | None:
    try:
        return fetch_status(str(path), timeout_s=0.5)
    except (OSError, ValueError):
        return None


def table(t: float, plant: dict | None, rtx: dict | None, handlers: dict[str, dict | None], last: dict) -> str:
    out = [f"--- t={t:5.1f}s " + "-" * 88]
    if plant:
        a = plant["feeds"]["A"]
        rate = (a["messages"] - last.get("plant", 0)) / max(t - last.get("t", 0), 1e-9)
        last["plant"] = a["messages"]
        out.append(f"plant  session={plant['session']} published={plant['next_sequence'] - 1:>9,} rate={rate:>9,.0f} msg/s "
                   f"A/B datagrams={a['datagrams']:,}/{plant['feeds']['B']['datagrams']:,} instruments={plant['instruments']}")
    if rtx:
        s, j = rtx["server"], rtx["journal"]
        out.append(f"rtx    journal={j['first_sequence']:,}..{j['next_sequence'] - 1:,} requests={s['requests']} served={s['served']} "
                   f"msgs={s['messages_sent']} rejects={sum(v for k, v in s.items() if k.startswith('rejected'))} "
                   f"images={rtx['images']['images_served']}")
    out.append(f"{'handler':8}{'quality':12}{'next seq':>10}{'A first':>10}{'B first':>10}{'A miss':>8}{'B miss':>8}"
               f"{'by B/A':>8}{'NACKs':>7}{'by NACK':>8}{'lost':>6}{'image at':>10}")
    for name, st in handlers.items():
        if not st:
            out.append(f"{name:8}(starting)")
            continue
        ch = st["channels"]["ch1"]
        f, s = ch["feeds"], ch["stream"]
        image = "-" if not s["images_applied"] else "yes"
        out.append(f"{name:8}{ch['quality']:12}{ch['expected'] or 0:>10,}{f['A']['first_arrivals']:>10,}{f['B']['first_arrivals']:>10,}"
                   f"{f['A']['missed']:>8,}{f['B']['missed']:>8,}{s['gaps_filled_by_other_feed']:>8}{s['nacks_sent']:>7}"
                   f"{s['gaps_recovered_by_nack']:>8}{s['messages_lost']:>6}{image:>10}")
    last["t"] = t
    return "\n".join(out)


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
        procs["plant"] = start("plant", ["tickerplant", "--status-socket", str(sock["plant"]), "--source-rate", str(args.rate),
                                         "--source-instruments", str(args.instruments), "--end-of-session-linger-ms", "500", *common], work)
        print(f"demo: plant, retransmission server and line handlers on loopback; logs in {work}")
        t0 = time.monotonic()
        last: dict = {}
        h2_started = False
        while (t := time.monotonic() - t0) < args.seconds:
            if not h2_started and t > 3:
                procs["h2"] = start("h2", ["linehandler", "run", "--status-socket", str(sock["h2"]), "--drop-a", str(args.loss),
                                           "--drop-b", str(args.loss), "--channel-nack-servers", "127.0.0.1:31101",
                                           "--channel-image-servers", "127.0.0.1:31102", *common], work)
                h2_started = True
            handlers = {"h1": status(sock["h1"]), "h2": status(sock["h2"]) if h2_started else None}
            print(table(t, status(sock["plant"]), status(sock["rtx"]), handlers, last), flush=True)
            for name, p in procs.items():
                if p.poll() is not None:
                    print(f"demo: {name} exited with {p.returncode}; see {work / (name + '.log')}")
                    return 1
            time.sleep(2.0)
        procs["plant"].send_signal(signal.SIGTERM)
        procs["plant"].wait(timeout=15)
        time.sleep(1.0)
        final = {n: status(sock[n]) for n in ("h1", "h2")}
        print(table(time.monotonic() - t0, None, status(sock["rtx"]), final, last))
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
