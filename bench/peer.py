"""Against what a user would otherwise pick: ZeroMQ's reliable multicast, and tcpreplay.

Runs in a fresh network namespace holding only `lo` (`unshare -n`, root), so nothing leaves the
machine and the injected loss touches no other process's traffic. Then, in each repetition:

  throughput   ZeroMQ epgm (PGM over UDP, Debian's libzmq5 + OpenPGM, bench/zmq_peer.py under
               /usr/bin/python3), N messages of our average message size as fast as its publisher
               goes; our plant flat out into our handler (A and B), same seconds
  latency      both at 10 k and 100 k messages/s: p50/p99/p99.9 from publish to callback, each publisher
               spinning its last 50 µs before a due send (zmq_peer.py's loop; the plant's --spin-us 50);
               ours also with the plant sleeping until each batch, as it runs by default
  loss 1 %     nftables drops 1 % of the multicast datagrams at lo's prerouting hook (`numgen
               random mod 100 < 1`), for each of our A and B groups and for the PGM group; 100 k msg/s;
               our handler has a retransmission server; delivered, lost, p99
  NORM         ZeroMQ's norm:// at full speed (full runs only): throughput and loss
  replay       a capture of our A/B datagrams replayed onto lo by `tcpreplay --topspeed` and by our
               `python -m tickerplant replay --fast`: packets/s and the fraction a receiver got (tcpreplay
               needs route_localnet=1 and accept_local=1 on lo, set inside the namespace only)

There is no tc netem on this kernel; nftables is the loss injector.

    python bench/peer.py [--seconds 2] [--repeats 2] [--norm] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Samples, compile_floor
from live import Server, free_port, handler_result, reap, start_handler, start_plant

ZPY = "/usr/bin/python3"
ZMQ_PEER = str(ROOT / "bench" / "zmq_peer.py")
EPGM = "epgm://127.0.0.1;239.192.7.1:5555"
NORM = "norm://{id},lo;239.192.7.2:5557"
OUR_A, OUR_B = ("239.194.7.1", 31071), ("239.194.7.2", 31072)
TABLE = "md_bench_loss"


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, **kw)


def zmq_available() -> str | None:
    """None when Debian's python3-zmq with PGM is there, else why not."""
    if not Path(ZPY).exists():
        return f"{ZPY} not found"
    r = sh(ZPY, "-c", "import zmq; print(zmq.zmq_version(), zmq.has('pgm'), zmq.has('norm'))", check=False)
    if r.returncode:
        return "python3-zmq is not installed (apt-get install -y python3-zmq): " + r.stderr.strip().splitlines()[-1]
    return None if "True" in r.stdout.split()[1] else f"libzmq without PGM: {r.stdout.strip()}"


def zmq_run(endpoint: str, n: int, size: int, rate: float, timeout: float = 120) -> dict:
    env = {**os.environ, "PGM_MIN_LOG_LEVEL": "ERROR"}  # OpenPGM writes warnings to stdout otherwise
    sub = subprocess.Popen([ZPY, ZMQ_PEER, "sub", endpoint, str(n), str(size), str(rate)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.3)
    pub = subprocess.Popen([ZPY, ZMQ_PEER, "pub", endpoint, str(n), str(size), str(rate)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    res: dict = {}
    try:
        deadline = time.monotonic() + 20
        while True:
            line = sub.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError("subscriber exited before READY: " + sub.stderr.read()[-600:])
            if line.strip() == "READY":
                break
        pub.stdin.write("GO\n")
        pub.stdin.flush()
        out, err = sub.communicate(timeout=timeout)
        res = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
        pub.stdin.write("DONE\n")
        pub.stdin.flush()
        pout, _ = pub.communicate(timeout=30)
        res.update(json.loads([x for x in pout.splitlines() if x.startswith("{")][-1]))
    except (RuntimeError, subprocess.TimeoutExpired, IndexError, ValueError, BrokenPipeError) as exc:
        res["error"] = repr(exc)[:300]
        for p in (sub, pub):
            if p.poll() is None:
                p.kill()
            try:
                res.setdefault("stderr", "")
                res["stderr"] += (p.communicate(timeout=5)[1] or "")[-400:]
            except (subprocess.TimeoutExpired, ValueError):
                pass
    return res


def loss_rule(percent: int, daddrs: list[str]) -> None:
    sh("nft", "add", "table", "inet", TABLE)
    sh("nft", "add", "chain", "inet", TABLE, "pre", "{ type filter hook prerouting priority -300; }")
    for d in daddrs:
        sh("nft", "add", "rule", "inet", TABLE, "pre", "iifname", "lo", "ip", "daddr", d, "numgen", "random", "mod", "100", "<",
           str(percent), "counter", "drop")


def loss_clear() -> str:
    r = sh("nft", "list", "table", "inet", TABLE, check=False)
    sh("nft", "delete", "table", "inet", TABLE, check=False)
    return " ".join(x.strip() for x in r.stdout.splitlines() if "counter" in x)


WARMUP_S = 1.0  # what bench/zmq_peer.py gives ZeroMQ at a fixed rate before it measures; ours gets the same
PUBLISHER_SPIN_US = 50  # bench/zmq_peer.py's publisher spins its last 50 µs before each send; the plant's --spin-us, alike


def ours(rate: float, seconds: float, nack: bool = False, warmup: bool = False, spin_us: int = 0) -> dict:
    """Plant → handler; with `nack`, a retransmission server that repairs its own gaps from the plant's journal
    (under injected loss the mirror loses datagrams too). With `warmup` the plant runs WARMUP_S longer and the
    latency percentiles are taken after it, as ZeroMQ's are; the start-up transient is reported on its own."""
    if warmup:
        seconds += WARMUP_S
    plant_port = free_port(socket.SOCK_DGRAM) if nack else 0
    srv = Server(OUR_A, OUR_B, repair=f"127.0.0.1:{plant_port}") if nack else None
    try:
        h = start_handler([(OUR_A, OUR_B)], seconds + 12, *(["--nack", f"127.0.0.1:{srv.udp}"] if srv else []))
        # the plant lingers 4 s after its last message so that the mirror can still repair late gaps from its journal
        plant = start_plant(OUR_A, OUR_B, rate, seconds, request_port=plant_port, linger_ms=4000 if nack else 300, spin_us=spin_us)
        reap(plant, seconds + 30)
        r = handler_result(h)
    finally:
        if srv:
            srv.close()
    r["msgs_s"] = (r["delivered"] - 10_000) / seconds
    return r


def startup_line(r: dict) -> str:
    return (f"start-up: worst {r['startup_max_us']:,.0f} µs, p99 above twice the steady one until {r['settle_ms']:.0f} ms; "
            f"p99 over the whole run {r['all_p99_us']:,.0f} µs")


def mean_message_bytes() -> int:
    from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
    from tickerplant.sequencer import Sequencer
    from tickerplant.source import SyntheticMarket

    seq = Sequencer(make_session(SCHEMA_FINGERPRINT, 1), CODECS, max_datagram_bytes=1400)
    dgs = seq.publish_many(SyntheticMarket(10_000, seed=4).next_messages(30_000, 1), 0) + seq.flush(0)
    body = sum(len(d) - 20 for d in dgs)
    n = sum(int.from_bytes(d[18:20], "big") for d in dgs)
    return max(16, round(body / n) - 2)  # less the 2-byte length prefix


def replay(out: Samples, datagrams: int) -> None:
    from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
    from decoders.pcap import PcapWriter
    from tickerplant.sequencer import Sequencer
    from tickerplant.source import SyntheticMarket

    exe = compile_floor()
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / "ab.pcap"
        seq = Sequencer(make_session(SCHEMA_FINGERPRINT, 1), CODECS, max_datagram_bytes=1400)
        market = SyntheticMarket(10_000, seed=6)
        w = PcapWriter(cap)
        t = 1_700_000_000_000_000_000
        while w.packets < datagrams:
            for d in seq.publish_many(market.next_messages(3000, 1), 0):
                w.write(t, "127.0.0.1", 40000, OUR_A[0], OUR_A[1], d)
                w.write(t + 15_000, "127.0.0.1", 40000, OUR_B[0], OUR_B[1], d)
                t += 100_000
        w.close()
        n = w.packets
        rows = {"ours": [sys.executable, "-m", "tickerplant", "replay", "--fast", str(cap)],  # datagrams through UDP sockets
                "ours_frames": [sys.executable, "-m", "tickerplant", "replay", "--fast", "--frames", str(cap)]}  # frames, as tcpreplay
        if shutil.which("tcpreplay"):
            rows["tcpreplay"] = ["tcpreplay", "--intf1=lo", "--topspeed", str(cap)]
        else:
            out.note("replay.tcpreplay", "tcpreplay is not installed (apt-get install -y tcpreplay)")
        for name, cmd in rows.items():
            rx = subprocess.Popen([str(exe), "recv", f"{OUR_A[0]},{OUR_B[0]}", f"{OUR_A[1]},{OUR_B[1]}", "30"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            rx.stderr.readline()
            t0 = time.perf_counter()
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
            dt = time.perf_counter() - t0
            got_txt = rx.communicate(timeout=40)[0].split()  # it stops after 1 s of silence
            got = int(got_txt[0]) if got_txt else 0
            if r.returncode:
                out.note(f"replay.{name}.error", r.stderr[-300:])
                continue
            own = None  # the tool's own figure: sending time only, without process start
            m = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", r.stdout)
            if m:
                own = float(m.group(1))
            elif r.stdout.strip().startswith("{"):
                own = json.loads(r.stdout.strip().splitlines()[-1]).get("datagrams_per_s")
            out.add(f"replay.{name}.pps", own)
            out.add(f"replay.{name}.pps_with_start", n / dt)
            out.add(f"replay.{name}.delivered_fraction", got / n)
            print(f"  replay {name}: {own or 0:,.0f} packets/s sending ({n / dt:,.0f} with process start), receiver got {got:,} of {n:,}",
                  flush=True)
        if "tcpreplay" in rows and out.figures.get("replay.tcpreplay.pps") and out.figures.get("replay.ours.pps"):
            out.add("ratio.replay_ours_vs_tcpreplay", out.figures["replay.ours.pps"][-1] / out.figures["replay.tcpreplay.pps"][-1])
        if "tcpreplay" in rows and out.figures.get("replay.tcpreplay.pps") and out.figures.get("replay.ours_frames.pps"):
            out.add("ratio.replay_frames_vs_tcpreplay", out.figures["replay.ours_frames.pps"][-1] / out.figures["replay.tcpreplay.pps"][-1])


def one_repetition(out: Samples, seconds: float, size: int, netns: bool, norm: bool, replay_datagrams: int) -> None:
    why = zmq_available()
    n_tput = int(max(200_000, 400_000 * seconds))
    # throughput
    r = ours(5_000_000, seconds)
    out.add("peer.ours.tput_msgs_s", r["msgs_s"])
    out.add("peer.ours.tput_lost", r["stream_messages_lost"])
    print(f"  ours flat out: {r['msgs_s']:,.0f} msg/s delivered, lost {r['stream_messages_lost']}", flush=True)
    if why is None:
        z = zmq_run(EPGM, n_tput, size, 0)
        if "error" in z:
            out.note("peer.epgm.tput.error", z["error"] + " " + z.get("stderr", ""))
        out.add("peer.epgm.tput_msgs_s", z.get("recv_rate"))
        out.add("peer.epgm.tput_lost", z.get("lost"))
        out.add("ratio.ours_vs_epgm_tput", r["msgs_s"] / z["recv_rate"] if z.get("recv_rate") else None)
        print(f"  epgm flat out: {z.get('recv_rate') or 0:,.0f} msg/s received, lost {z.get('lost')} {z.get('error', '')}", flush=True)
    else:
        out.note("peer.zmq", why)
    # latency at fixed rates
    for label, rate in (("10k", 10_000), ("100k", 100_000)):
        # alike: bench/zmq_peer.py's publisher sleeps until 50 µs before each send and spins the rest, so the plant
        # does the same (--spin-us 50); the plant as it runs by default (sleeping until each batch) is reported too
        r = ours(rate, seconds, warmup=True, spin_us=PUBLISHER_SPIN_US)
        asleep = ours(rate, seconds, warmup=True)
        for q in ("p50_us", "p99_us", "p999_us"):
            out.add(f"peer.ours_sleep.{label}.{q}", asleep[q])
        out.add(f"peer.ours_sleep.{label}.lost", asleep["stream_messages_lost"])
        for q in ("p50_us", "p99_us", "p999_us", "startup_max_us", "settle_ms", "all_p99_us"):
            out.add(f"peer.ours.{label}.{q}", r[q])
        out.add(f"peer.ours.{label}.lost", r["stream_messages_lost"])
        out.note(f"peer.ours.{label}.timeline", json.dumps(r["timeline"]))
        line = (f"  {label}/s, steady state after {WARMUP_S:g} s (both): ours p50 {r['p50_us']:.0f} p99 {r['p99_us']:.0f} "
                f"p99.9 {r['p999_us']:.0f} µs ({startup_line(r)}; plant sleeping, not spinning: p50 {asleep['p50_us']:.0f} "
                f"p99 {asleep['p99_us']:.0f} p99.9 {asleep['p999_us']:.0f} µs)")
        if why is None:
            z = zmq_run(EPGM, int(rate * seconds), size, rate)
            if "error" in z:
                out.note(f"peer.epgm.{label}.error", z["error"])
            for q in ("p50_us", "p99_us", "p999_us"):
                out.add(f"peer.epgm.{label}.{q}", z.get(q))
            out.add(f"peer.epgm.{label}.lost", z.get("lost"))
            if z.get("p99_us"):
                out.add(f"ratio.ours_vs_epgm_p99_{label}", r["p99_us"] / z["p99_us"])
            line += f"; epgm p50 {z.get('p50_us') or 0:.0f} p99 {z.get('p99_us') or 0:.0f} p99.9 {z.get('p999_us') or 0:.0f} µs"
        print(line, flush=True)
    # 1 % injected loss
    if netns:
        loss_rule(1, [OUR_A[0], OUR_B[0]])
        try:
            r = ours(100_000, seconds, nack=True)
        finally:
            counters = loss_clear()
        out.add("peer.ours.loss1.lost", r["stream_messages_lost"])
        out.add("peer.ours.loss1.p99_us", r["p99_us"])
        out.add("peer.ours.loss1.gaps", r["stream_gaps_detected"])
        out.add("peer.ours.loss1.filled_by_other_feed", r["stream_gaps_filled_by_other_feed"])
        out.add("peer.ours.loss1.recovered_by_nack", r["stream_gaps_recovered_by_nack"])
        out.note("peer.ours.loss1.nft", counters)
        print(f"  ours, 1 % dropped by nftables on A and on B: lost {r['stream_messages_lost']}, gaps {r['stream_gaps_detected']} "
              f"({r['stream_gaps_filled_by_other_feed']} filled by the other feed, {r['stream_gaps_recovered_by_nack']} by NACK), "
              f"p99 {r['p99_us']:.0f} µs [{counters}]", flush=True)
        if why is None:
            loss_rule(1, ["239.192.7.1"])
            try:
                z = zmq_run(EPGM, int(100_000 * seconds), size, 100_000)
            finally:
                counters = loss_clear()
            if "error" in z:
                out.note("peer.epgm.loss1.error", z["error"])
            out.add("peer.epgm.loss1.lost", z.get("lost"))
            out.add("peer.epgm.loss1.p99_us", z.get("p99_us"))
            out.add("peer.epgm.loss1.recv_rate", z.get("recv_rate"))
            out.note("peer.epgm.loss1.nft", counters)
            print(f"  epgm, 1 % dropped by nftables: lost {z.get('lost')}, p99 {z.get('p99_us') or 0:.0f} µs, "
                  f"{z.get('recv_rate') or 0:,.0f} msg/s [{counters}] {z.get('error', '')}", flush=True)
    else:
        out.note("peer.loss", "not run: injected loss needs root for a private network namespace (unshare -n) and nftables")
    if norm and why is None:
        z = zmq_run(NORM, 100_000, size, 0, timeout=60)
        out.add("peer.norm.tput_msgs_s", z.get("recv_rate"))
        out.add("peer.norm.tput_lost", z.get("lost"))
        if "error" in z:
            out.note("peer.norm.error", (z["error"] + " " + z.get("stderr", ""))[-500:])
        print(f"  norm flat out (100,000 messages): {z.get('recv_rate') or 0:,.0f} msg/s, lost {z.get('lost')} {z.get('error', '')}",
              flush=True)
    if netns and replay_datagrams:
        replay(out, replay_datagrams)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--norm", action="store_true", help="also run ZeroMQ NORM (slow to start, crash-prone in libzmq 4.3.4)")
    ap.add_argument("--replay-datagrams", type=int, default=100_000, help="capture size for tcpreplay vs wire replay (0: skip)")
    ap.add_argument("--json", help="write the samples here")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.inside and os.geteuid() == 0 and shutil.which("unshare") and shutil.which("nft"):
        r = subprocess.run(["unshare", "-n", "--", sys.executable, __file__, "--inside", *(argv if argv is not None else sys.argv[1:])])
        return r.returncode
    netns = False
    if args.inside:
        sh("ip", "link", "set", "lo", "up")
        sh("sysctl", "-qw", "net.ipv4.conf.lo.route_localnet=1", "net.ipv4.conf.lo.accept_local=1")
        netns = True
    out = Samples()
    size = mean_message_bytes()
    out.note("peer.setup", f"message size {size} B (our mean message, length prefix excluded); "
                           + ("private network namespace with lo only" if netns else "root namespace, no loss injection"))
    for rep in range(args.repeats):
        print(f"repetition {rep + 1}", flush=True)
        one_repetition(out, args.seconds, size, netns, args.norm and rep == 0, args.replay_datagrams)
    out.print_medians(45)
    out.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
