"""The floor of this machine for our datagrams, in one run: C sendmmsg/recvmmsg vs a bare Python loop.

Compiles bench/floor.c with the system compiler, then moves 1,200-byte datagrams over a
loopback multicast group for a few seconds each way: what the kernel allows here (C), and
what a bare Python `sendto` / `recv_into` loop reaches. Other benchmarks' packets/s are
meaningful as ratios to these.

    python bench/floor.py [--seconds 3] [--size 1200]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mdcommon.mcast_send_io import open_sender  # noqa: E402


def compile_floor(out: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("no C compiler (cc): apt-get install -y gcc")
    exe = out / "floor"
    subprocess.run([cc, "-O2", "-o", str(exe), str(ROOT / "bench" / "floor.c")], check=True)
    return exe


def c_floor(exe: Path, group: str, port: int, size: int, seconds: float) -> tuple[float, float]:
    rx = subprocess.Popen([str(exe), "recv", group, str(port), str(seconds + 1.5)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rx.stderr.readline()  # "ready"
    sent, dt = subprocess.run([str(exe), "send", group, str(port), str(size), str(seconds)], capture_output=True, text=True, check=True).stdout.split()
    got, rdt = rx.communicate(timeout=seconds + 10)[0].split()
    return int(sent) / float(dt), int(got) / max(float(rdt), 1e-9)


PY_RECEIVER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from mdcommon.mcast_recv_io import open_receiver
s, _ = open_receiver("lo", sys.argv[2], int(sys.argv[3]), 8 << 20)
s.setblocking(True)
s.settimeout(0.2)
buf = bytearray(2048)
print("ready", flush=True)
n, first, last, t0 = 0, 0.0, 0.0, time.monotonic()
while time.monotonic() - t0 < float(sys.argv[4]):
    try:
        s.recv_into(buf)
    except TimeoutError:
        continue
    if not n:
        first = time.monotonic()
    n += 1
    last = time.monotonic()
print(n, last - first if n else 0.0, flush=True)
"""


def py_floor(group: str, port: int, size: int, seconds: float) -> tuple[float, float]:
    """The same end-to-end measurement as the C pair: a Python receiver process, a Python sendto loop."""
    rx = subprocess.Popen([sys.executable, "-c", PY_RECEIVER, str(ROOT), group, str(port), str(seconds + 1.5)],
                          stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "ready"
    tx = open_sender("lo")
    tx.setblocking(True)
    payload = bytes(size)
    sent = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(64):
            tx.sendto(payload, (group, port))
        sent += 64
    send_rate = sent / (time.perf_counter() - t0)
    tx.close()
    got, dt = rx.communicate(timeout=seconds + 10)[0].split()
    return send_rate, int(got) / max(float(dt), 1e-9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--size", type=int, default=1200)
    args = ap.parse_args(argv)
    rng = random.Random()
    group, port = f"239.199.{rng.randrange(1, 250)}.7", rng.randrange(20000, 60000)
    with tempfile.TemporaryDirectory() as tmp:
        exe = compile_floor(Path(tmp))
        c_send, c_recv = c_floor(exe, group, port, args.size, args.seconds)
    p_send, p_recv = py_floor(group, port + 1, args.size, args.seconds)
    print(f"floor benchmark: {args.size}-byte datagrams on loopback multicast, {args.seconds:.0f} s per row")
    print(f"{'way':40} {'datagrams/s':>12} {'vs C':>6}")
    for name, rate, base in (("C sendmmsg (batches of 64)", c_send, c_send), ("C recvmmsg (while C sends)", c_recv, c_send),
                             ("Python sendto loop", p_send, c_send), ("Python recv_into (while Python sends)", p_recv, c_recv)):
        print(f"{name:40} {rate:12,.0f} {rate / base:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
