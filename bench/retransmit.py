"""Retransmission server figures, in one run.

(a) the request server core from memory: requests/s and messages/s served within
    generous limits (200-message requests from 100 requesters), and rejects/s under a
    single requester's flood;
(s) a snapshot from memory: the server's image encoding of N instruments (the plant's synthetic
    market's directory and 3 N messages of it), ns per record in 4,000-record steps, with the record images made
    in C (mdcommon/_replica.c) and by the Python definition (`Record._message`), alternated;
(r) the replica from memory: ns to apply a message of the synthetic market to an image of N instruments, Record
    objects (`Image`) against slots in C (`CompactImage`, what the daemons use where built), with no snapshot open
    and with one open (copy-on-write), alternated; and the compact image's snapshot, ns a record;
(b) live on loopback: a plant with N instruments at a given rate, a retransmission
    server mirroring it, and late joiners fetching the initial image: seconds from
    connect to image applied in the handler, alone and with 10 joiners at once, and
    whether the mirror stayed gap-free meanwhile. Joiners are processes (bench/handler_proc.py).

    python bench/retransmit.py [--instruments 200000] [--rate 100000]

Targets: a full 200,000-instrument image served and applied by a handler in under 5 s (issue 5);
10 joiners at once, each a process, in under 5 s worst case, with the mirror losing nothing (issue 18).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session  # noqa: E402
from decoders.moldudp64 import encode_request  # noqa: E402
from mdcommon.logs import setup_logging  # noqa: E402
from mdcommon.status_io import fetch_status  # noqa: E402
from retransmit.journal import Journal  # noqa: E402
from retransmit.server import RequestServer, ServerLimits  # noqa: E402
from tickerplant.source import SyntheticMarket  # noqa: E402


def core_figures() -> tuple[float, float, float]:
    session = make_session(SCHEMA_FINGERPRINT, 1)
    j = Journal()
    for s in range(1, 200_001):
        j.append(s, CODECS.encode((b"Q", s, s % 1000, s, 1, s + 1, 1)), 0)
    big = (1e9, 1e9)
    srv = RequestServer(j, ServerLimits(requester_requests=big, requester_messages=big, requester_bytes=big, global_requests=big,
                                        global_messages=big, global_bytes=big, dedupe_window_ns=0))
    srv.session = session
    reqs = [(encode_request(session, 1 + (i * 997) % 190_000, 200), ("10.0.0.1", 1000 + i % 100)) for i in range(5000)]
    t0 = time.perf_counter()
    for data, addr in reqs:
        srv.on_request(data, addr, 0)
    dt = time.perf_counter() - t0
    flood = RequestServer(j, ServerLimits())
    flood.session = session
    t0 = time.perf_counter()
    for i, (data, _) in enumerate(reqs):
        flood.on_request(data, ("10.0.0.2", 1), i * 100_000)  # 10,000 requests/s from one requester
    df = time.perf_counter() - t0
    return len(reqs) / dt, len(reqs) * 200 / dt, len(reqs) / df


def snapshot_figures(instruments: int, repeats: int = 3) -> dict[str, list[float]]:
    """ns per record of a whole snapshot (ImageSnapshot.step, 4,000 records a step), C and Python alternated."""
    from mdcommon import image as image_module
    from retransmit.image import ImageSnapshot

    market = SyntheticMarket(instruments, seed=1)  # the plant's own source: records as a live session fills them
    img = image_module.Image()
    img.apply_many(list(market.directory(0)))
    msgs = market.next_messages(3 * instruments, 1)
    img.apply_many(msgs)
    native = image_module._NATIVE
    out: dict[str, list[float]] = {"c": [], "python": []}
    for _ in range(repeats):
        for way in (("c", "python") if native is not None else ("python",)):
            image_module._NATIVE = native if way == "c" else None
            try:
                t0 = time.perf_counter()
                snap = ImageSnapshot(img, b"S" * 10, 5, 1)
                while snap.step():
                    pass
                out[way].append((time.perf_counter() - t0) / instruments * 1e9)
            finally:
                image_module._NATIVE = native
    return out


def replica_figures(instruments: int, repeats: int = 2) -> dict[str, list[float]]:
    """ns a message applying decoded datagrams to each kind of image, plain and with a snapshot open."""
    from decoders.moldudp64 import DatagramWriter, decode_datagram
    from mdcommon.compact_image import COMPACT_AVAILABLE, CompactImage
    from mdcommon.image import Image
    from retransmit.image import ImageSnapshot

    kinds = {"objects": Image, **({"compact": CompactImage} if COMPACT_AVAILABLE else {})}
    market = SyntheticMarket(instruments, seed=1)
    fill = [*market.directory(0), *market.next_messages(3 * instruments, 1)]
    writer, session = DatagramWriter(CODECS, 1400), make_session(SCHEMA_FINGERPRINT, 1)
    datagrams = []
    for _ in range(10_000):
        writer.reset()
        writer.add_many(market.next_messages(30, 2))
        datagrams.append(bytes(writer.finish(session, 1)))
    n = 30 * len(datagrams)
    images = {k: cls() for k, cls in kinds.items()}
    for img in images.values():
        img.apply_many(fill)
    out: dict[str, list[float]] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for d in datagrams:
            decode_datagram(d, CODECS)
        base = time.perf_counter() - t0  # the decode alone, taken off below
        for k, img in images.items():
            for frozen in (False, True):
                if frozen:
                    img.freeze()
                t0 = time.perf_counter()
                for d in datagrams:
                    img.apply_many(decode_datagram(d, CODECS)[3])
                out.setdefault(f"{k}{' frozen' if frozen else ''}", []).append((time.perf_counter() - t0 - base) / n * 1e9)
                img.thaw()
        if "compact" in images:
            t0 = time.perf_counter()
            snap = ImageSnapshot(images["compact"], b"S" * 10, 5, 1)
            while snap.step():
                pass
            out.setdefault("compact snapshot", []).append((time.perf_counter() - t0) / instruments * 1e9)
            out.setdefault("load objects", []).append(load_seconds(snap.chunks, Image, False))
            out.setdefault("load compact", []).append(load_seconds(snap.chunks, CompactImage, True))
    return out


def load_seconds(chunks: list[bytes], kind: type, from_bytes: bool) -> float:
    """Seconds to read an image stream into a new image, in the image client's 1 MB reads: the records decoded in
    C and applied (`Image`), or loaded from the bytes into slots (`CompactImage.load_soup`)."""
    from decoders.soup import SoupFramer

    data = b"".join(chunks)
    img, framer = kind(), SoupFramer()
    t0 = time.perf_counter()
    for start in range(0, len(data), 1 << 20):
        framer.append(data[start : start + (1 << 20)])
        if from_bytes:
            framer.load_into(img.load_soup)
        else:
            img.apply_many(framer.take_messages(CODECS.native))
    return time.perf_counter() - t0


def precompile() -> None:
    """Daemons start from compiled bytecode, as an installed package does (PYTHONDONTWRITEBYTECODE, set on some
    machines, would have each of the joiners compile every module as it starts)."""
    import compileall

    for pkg in ("decoders", "mdcommon", "linehandler", "retransmit", "tickerplant", "relay", "bench"):
        compileall.compile_dir(str(ROOT / pkg), quiet=1)


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_processes(a, b, udp: int, tcp: int, n: int) -> list[dict]:
    """`n` line handler processes (bench/handler_proc.py) joining at once from the image server, each keeping the
    replica; each stops once its image is applied and reports the seconds from its start and the instruments held
    (NaN: no image applied within its 90 s)."""
    # niced: on a LAN each joiner is another host; here eleven processes share two cores, and at equal priority the
    # joiners take the CPU the plant and the mirror need, so what the mirror loses would measure this machine
    args = ["nice", "-n", "19", sys.executable, str(ROOT / "bench" / "handler_proc.py"), "--channel", f"{a[0]}:{a[1]},{b[0]}:{b[1]}", "--seconds", "90",
            "--nack", f"127.0.0.1:{udp}", "--image", f"127.0.0.1:{tcp}", "--keep-image", "--until-image"]
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(n)]
    out = []
    for p in procs:
        lines = [x for x in p.communicate(timeout=180)[0].splitlines() if x.startswith("{")]
        out.append(json.loads(lines[-1]) if lines else {"image_s": float("nan"), "instruments": 0})
    return out


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mirror_figures(status: Path) -> tuple[int, int]:
    stream = fetch_status(str(status))["mirror"]["channels"]["ch1"]["stream"]
    return stream["gaps_detected"], stream["messages_lost"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instruments", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=100_000.0, help="feed rate while images are served [messages/s]")
    ap.add_argument("--joiners", type=int, default=10)
    args = ap.parse_args(argv)

    setup_logging("warning")
    req_s, msg_s, rej_s = core_figures()
    print(f"retransmit benchmark; Python {sys.version.split()[0]}")
    print(f"(a) request server core: {req_s:,.0f} requests/s = {msg_s:,.0f} messages/s served (200-message requests); "
          f"{rej_s:,.0f} requests/s handled under one requester's flood")

    snap = snapshot_figures(args.instruments)
    c, py = (statistics.median(v) if v else float("nan") for v in (snap["c"], snap["python"]))
    print(f"(s) snapshot of {args.instruments:,} instruments from memory: {c:,.0f} ns a record with record images made in C, "
          f"{py:,.0f} by the Python definition ({c / py:.2f}x; medians of {len(snap['python'])}, alternated)")

    rep = replica_figures(args.instruments)
    med = {k: statistics.median(v) for k, v in rep.items()}
    print(f"(r) replica of {args.instruments:,} instruments from memory, ns a message applied (medians of 2, alternated): "
          + ", ".join(f"{k} {v:,.0f}" for k, v in med.items() if "snapshot" not in k and "load" not in k)
          + (f"; compact {med['objects'] / med['compact']:.1f}x faster, {med['objects frozen'] / med['compact frozen']:.1f}x with "
             f"a snapshot open; compact snapshot {med['compact snapshot']:,.0f} ns a record; the image read from its bytes "
             f"{med['load compact']:.2f} s (objects: {med['load objects']:.2f} s)" if "compact" in med else ""))

    precompile()
    rng = random.Random()
    x, port = rng.randrange(1, 250), rng.randrange(20000, 60000, 2)
    a, b = (f"239.199.{x}.1", port), (f"239.199.{x}.2", port + 1)
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    status = Path(f"/tmp/md-bench-rtx-{port}.sock")
    feed = ["--feed-a-group", a[0], "--feed-a-port", str(a[1]), "--feed-b-group", b[0], "--feed-b-port", str(b[1])]
    server = subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed, "--request-port", str(udp), "--image-port", str(tcp),
                               "--stats-interval-s", "0", "--status-socket", str(status), "--image-reuse-ms", "2000"],
                              cwd=ROOT, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed, "--source-instruments", str(args.instruments),
                              "--source-rate", str(args.rate), "--source-burst-seconds", "0", "--stats-interval-s", "0", "--no-keep-image"],
                             cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the mirror holds every instrument
            try:
                snap = fetch_status(str(status))
                if snap["mirror"]["channels"]["ch1"]["instruments"] >= args.instruments:
                    break
            except OSError:
                pass  # noqa: S110 - the server is still starting; poll again
            time.sleep(0.2)
        time.sleep(1.0)
        print(f"(b) live: {args.instruments:,} instruments, feed at {args.rate:,.0f} msg/s on loopback")
        rows = []
        cpu = []  # where the CPU goes while they join: each joiner's own, and the server's and the plant's
        for joiners in (1, args.joiners):
            gaps0, lost0 = mirror_figures(status)
            srv0, plant0 = proc_cpu_s(server.pid), proc_cpu_s(plant.pid)
            t0 = time.perf_counter()
            results = join_processes(a, b, udp, tcp, joiners)
            wall = time.perf_counter() - t0
            srv1, plant1 = proc_cpu_s(server.pid), proc_cpu_s(plant.pid)
            time.sleep(2.5)
            gaps1, lost1 = mirror_figures(status)
            rows.append((joiners, [r["image_s"] or float("nan") for r in results], [r["instruments"] for r in results],
                         gaps1 - gaps0, lost1 - lost0))
            cpu.append((joiners, wall, statistics.median(r.get("cpu_s", float("nan")) for r in results), srv1 - srv0, plant1 - plant0))
        snap = fetch_status(str(status))
        print(f"{'joiners':>8} {'median s':>9} {'max s':>7} {'instruments in replica':>24} {'mirror gaps':>12} {'mirror lost':>12}")
        for joiners, times, sizes, gaps, lost in rows:
            print(f"{joiners:8} {statistics.median(times):9.2f} {max(times):7.2f} {min(sizes):>24,} {gaps:>12,} {lost:>12,}")
        print(f"snapshots taken {snap['images']['snapshots_taken']}, images served {snap['images']['images_served']} "
              f"(joiners are processes: bench/handler_proc.py --keep-image --until-image)")
        for joiners, wall, joiner_cpu, srv_cpu, plant_cpu in cpu:
            print(f"CPU while {joiners} joined ({wall:.1f} s wall, 2 cores): each joiner {joiner_cpu:.2f} s (median, from its start), "
                  f"server (mirror and images) {srv_cpu:.2f} s, plant {plant_cpu:.2f} s")
        alone, many = rows[0], rows[1]
        print(f"{'MET ' if statistics.median(alone[1]) < 5 else 'MISS'} image of {args.instruments:,} instruments served and applied "
              f"in < 5 s, one joiner: {statistics.median(alone[1]):.2f} s")
        print(f"{'MET ' if max(many[1]) < 5 else 'MISS'} {args.joiners} joiners at once, worst < 5 s: {max(many[1]):.2f} s")
        print(f"{'MET ' if alone[4] == 0 and many[4] == 0 else 'MISS'} the mirror loses nothing meanwhile: lost {alone[4]:,} "
              f"(one joiner), {many[4]:,} ({args.joiners} joiners)")
    finally:
        plant.terminate()
        server.terminate()
        plant.wait(timeout=20)
        server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
