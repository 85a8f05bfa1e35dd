"""Hot-standby takeover time: kill -9 of the active plant, N times per rate and takeover timeout.

Each kill runs a fresh pair on loopback: plant p1 (priority 0) publishes, p2 (priority 1) mirrors
it; once p2's shadow has caught up, p1 is killed with SIGKILL. A bare receiver on both groups
timestamps every datagram and tells the two plants apart by source port. The takeover time is
the silence on the feeds: first datagram of p2 minus last datagram of p1 (what a line handler
waits). Continuity is checked too: p2's first sequence number must be where p1 stopped, and the
union of both plants' sequences contiguous (no gap, and no message sent twice by both).

    python bench/standby.py [--kills 20] [--rates 10000,100000] [--timeouts-ms 30,100] [--heartbeat-ms 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mdcommon.mcast_recv_io import open_receiver  # noqa: E402
from mdcommon.status_io import fetch_status  # noqa: E402


def plant(tmp: Path, name: str, a, b, rate: float, priority: int, timeout_ms: float, heartbeat_ms: float, instance: int):
    sock = tmp / f"{name}.sock"
    p = subprocess.Popen([sys.executable, "-m", "tickerplant", "--feed-a-group", a[0], "--feed-a-port", str(a[1]),
                          "--feed-b-group", b[0], "--feed-b-port", str(b[1]), "--source-rate", str(rate), "--source-burst-seconds", "0",
                          "--source-instruments", "1000", "--session-instance", str(instance), "--standby-enabled",
                          "--standby-priority", str(priority), "--standby-takeover-timeout-ms", str(timeout_ms),
                          "--heartbeat-interval-ms", str(heartbeat_ms), "--stats-interval-s", "0", "--end-of-session-linger-ms", "100",
                          "--no-keep-image", "--status-socket", str(sock)],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, str(sock)


def state(sock: str) -> dict:
    try:
        return fetch_status(sock, 1.0)
    except (OSError, ValueError):
        return {}


class Tap:
    """Both groups, every datagram: (arrival ns, source port, first sequence, count)."""

    def __init__(self, a, b) -> None:
        self.socks = [open_receiver("lo", *a, 16 << 20)[0], open_receiver("lo", *b, 16 << 20)[0]]
        self.sel = selectors.DefaultSelector()
        for s in self.socks:
            self.sel.register(s, selectors.EVENT_READ)
        self.log: list[tuple[int, int, int, int]] = []
        self.buf = bytearray(65536)

    def pump(self, seconds: float, until=None) -> None:
        end = time.monotonic() + seconds
        next_check = 0.0
        while time.monotonic() < end:
            for key, _ in self.sel.select(0.01):
                s: socket.socket = key.fileobj
                while True:
                    try:
                        n, src = s.recvfrom_into(self.buf)
                    except BlockingIOError:
                        break
                    count = int.from_bytes(self.buf[18:20], "big")
                    self.log.append((time.monotonic_ns(), src[1], int.from_bytes(self.buf[10:18], "big"), count))
            if until is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + 0.05
                if until():
                    return

    def close(self) -> None:
        self.sel.close()
        for s in self.socks:
            s.close()


def one_kill(tmp: Path, rate: float, timeout_ms: float, heartbeat_ms: float, instance: int) -> dict:
    rng = random.Random()
    x, port = rng.randrange(1, 250), rng.randrange(20000, 60000, 2)
    a, b = (f"239.198.{x}.1", port), (f"239.198.{x}.2", port + 1)
    tap = Tap(a, b)
    p1, s1 = plant(tmp, "p1", a, b, rate, 0, timeout_ms, heartbeat_ms, instance)
    p2 = None
    try:
        tap.pump(10, lambda: state(s1).get("standby", {}).get("state") == "ACTIVE")
        tap.pump(0.2)
        p1_ports = {src for _, src, _, c in tap.log}
        p2, s2 = plant(tmp, "p2", a, b, rate, 1, timeout_ms, heartbeat_ms, instance)

        def synced() -> bool:
            st = state(s2)
            sb = st.get("standby", {})
            return sb.get("state") == "STANDBY" and st["next_sequence"] + 2000 >= sb.get("peer_next", 0) > 1

        tap.pump(20, synced)
        tap.pump(0.3)
        os.kill(p1.pid, signal.SIGKILL)
        p1.wait()
        tap.pump(3, lambda: state(s2).get("standby", {}).get("state") == "ACTIVE")
        tap.pump(0.3)
        took = state(s2).get("standby", {})
    finally:
        for p in (p1, p2):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=10)
        tap.close()
    data = [e for e in tap.log if e[3] not in (0, 0xFFFF)]
    last_p1 = max(t for t, src, _, _ in data if src in p1_ports)
    p2_data = [e for e in data if e[1] not in p1_ports]
    first_p2 = min(t for t, _, _, _ in p2_data) if p2_data else None
    # continuity: every sequence from 1 to the end was sent, and none by both plants
    p1_end = max(s + c for _, src, s, c in data if src in p1_ports)
    p2_first = min(s for _, _, s, _ in p2_data) if p2_data else None
    covered: set[int] = set()
    for _, _, s, c in data:
        covered.update(range(s, s + c))
    hi = max(covered)
    contiguous = covered == set(range(1, hi + 1))
    return {"takeover_ms": (first_p2 - last_p1) / 1e6 if first_p2 else float("nan"), "p1_end": p1_end, "p2_first": p2_first,
            "contiguous": contiguous, "no_overlap": p2_first is not None and p2_first >= p1_end, "state": took.get("state")}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--rates", default="10000,100000")
    ap.add_argument("--timeouts-ms", default="30,100")
    ap.add_argument("--heartbeat-ms", type=float, default=10.0)
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args(argv)
    rows = []
    raw = []
    print(f"hot-standby takeover after kill -9 on loopback; Python {sys.version.split()[0]}; {args.kills} kills per row; "
          f"heartbeat {args.heartbeat_ms:g} ms")
    print(f"{'rate msg/s':>11} {'timeout ms':>11} {'p50 ms':>8} {'p99 ms':>8} {'min ms':>8} {'max ms':>8} {'- timeout p50':>14} "
          f"{'no gap':>7} {'no dup':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        instance = 5000
        for rate in [float(r) for r in args.rates.split(",")]:
            for timeout in [float(t) for t in args.timeouts_ms.split(",")]:
                res = []
                for _ in range(args.kills):
                    instance += 1
                    res.append(one_kill(Path(tmp), rate, timeout, args.heartbeat_ms, instance))
                raw.append({"rate": rate, "timeout_ms": timeout, "kills": res})
                t = [r["takeover_ms"] for r in res]
                gaps_ok = sum(r["contiguous"] for r in res)
                dups_ok = sum(r["no_overlap"] for r in res)
                rows.append((rate, timeout, t))
                print(f"{rate:11,.0f} {timeout:11.0f} {statistics.median(t):8.1f} {pct(t, 0.99):8.1f} {min(t):8.1f} {max(t):8.1f} "
                      f"{statistics.median(t) - timeout:14.1f} {gaps_ok:>4}/{len(res):<2} {dups_ok:>4}/{len(res):<2}")
    if args.json:
        Path(args.json).write_text(json.dumps(raw))
    print("\ntakeover = silence on the feeds between p1's last datagram and p2's first; with 20 kills the p99 is the largest.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
