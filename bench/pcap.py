"""Capture tools' speed, in one run, with ratios.

A capture of N datagrams (30 messages each, A and B copies) is written once, then:
  bare struct reader      the floor: walk the records, nothing else
  scapy RawPcapReader     what most Python tools use
  decoders.pcap.read_udp  our reader (link, IP, UDP parsing and counting)
  decode                  read_udp + decode_datagram of every datagram
  offline replay          read_udp + the handler core (python -m linehandler replay)
  wire replay --fast      read_udp + sendto on loopback; against tcpreplay when it is installed

    python bench/pcap.py [--datagrams 100000]

Targets (issue 8): offline replay >= 1 M messages/s; wire replay >= 50 % of tcpreplay's packets/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session  # noqa: E402
from decoders.moldudp64 import decode_datagram  # noqa: E402
from decoders.pcap import PcapWriter, read_udp  # noqa: E402
from linehandler.replay import replay  # noqa: E402
from mdcommon.replay_io import wire_replay  # noqa: E402
from tickerplant.sequencer import Sequencer  # noqa: E402
from tickerplant.source import SyntheticMarket  # noqa: E402


def make_capture(path: Path, n_datagrams: int) -> int:
    market = SyntheticMarket(10_000, seed=5)
    seq = Sequencer(make_session(SCHEMA_FINGERPRINT, 1), CODECS, max_datagram_bytes=1400)
    w = PcapWriter(path)
    messages = 0
    t = 1_700_000_000_000_000_000
    while w.packets < n_datagrams:
        for d in seq.publish_many(market.next_messages(3000, 1), 0):
            messages += int.from_bytes(d[18:20], "big")
            w.write(t, "10.1.1.1", 40000, "239.194.1.1", 31001, d)
            w.write(t + 15_000, "10.1.2.1", 40000, "239.194.2.1", 31002, d)
            t += 100_000
    w.close()
    return messages


def bare_floor(path: Path) -> int:
    data = path.read_bytes()
    rec = struct.Struct("<IIII").unpack_from
    off, n = 24, 0
    while off < len(data):
        _, _, incl, _ = rec(data, off)
        off += 16 + incl
        n += 1
    return n


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datagrams", type=int, default=100_000, help="datagrams in the capture, A and B copies included")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / "bench.pcap"
        messages = make_capture(cap, args.datagrams)
        packets = bare_floor(cap)
        msgs_all = messages * 2  # each message is in the A and in the B copy
        rows = []
        dt, _ = timed(lambda: bare_floor(cap))
        rows.append(("bare struct reader (floor)", packets / dt, None))
        from scapy.utils import RawPcapReader

        dt, _ = timed(lambda: sum(1 for _ in RawPcapReader(str(cap))))
        rows.append(("scapy RawPcapReader", packets / dt, None))
        dt, _ = timed(lambda: sum(1 for _ in read_udp(cap)))
        rows.append(("decoders.pcap.read_udp", packets / dt, None))
        dt, _ = timed(lambda: sum(len(decode_datagram(d[5], CODECS)[3]) for d in read_udp(cap)))
        rows.append(("read + decode every datagram", packets / dt, msgs_all / dt))
        dt, report = timed(lambda: replay(str(cap), keep_image=False))
        assert report.delivered == messages and not report.lost_on_both_feeds
        rows.append(("offline replay (handler core)", packets / dt, msgs_all / dt))
        dt_img, _ = timed(lambda: replay(str(cap)))
        rows.append(("offline replay + final image", packets / dt_img, msgs_all / dt_img))
        dt, wr = timed(lambda: wire_replay(cap, {}, speed=0))
        rows.append(("wire replay --fast (loopback)", wr.sent / dt, None))
        tcpreplay = shutil.which("tcpreplay")
        if tcpreplay is None and shutil.which("apt-get") and os.geteuid() == 0:  # the benchmark's own setup
            subprocess.run(["apt-get", "install", "-y", "-qq", "tcpreplay"], capture_output=True, timeout=300,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            tcpreplay = shutil.which("tcpreplay")
        tr_rate = None
        if tcpreplay:
            t0 = time.perf_counter()
            r = subprocess.run([tcpreplay, "--intf1=lo", "--topspeed", str(cap)], capture_output=True, text=True, timeout=600)
            if r.returncode == 0:
                tr_rate = packets / (time.perf_counter() - t0)
                rows.append(("tcpreplay --topspeed (lo)", tr_rate, None))
        floor = rows[0][1]
        print(f"pcap benchmark; Python {sys.version.split()[0]}; {packets:,} datagrams ({messages:,} messages, each on A and B)")
        print(f"{'row':34} {'packets/s':>12} {'messages/s':>12} {'vs floor':>9}")
        for name, pps, mps in rows:
            print(f"{name:34} {pps:12,.0f} {(f'{mps:,.0f}' if mps else '-'):>12} {pps / floor:8.2f}x")
        offline = rows[4][2]
        print(f"\n{'MET ' if offline >= 1e6 else 'MISS'} offline replay >= 1 M messages/s: {offline / 1e6:.2f} M counting the A and B copies, "
              f"{offline / 2e6:.2f} M distinct messages delivered")
        if tr_rate:
            ratio = rows[6][1] / tr_rate
            print(f"{'MET ' if ratio >= 0.5 else 'MISS'} wire replay >= 50 % of tcpreplay: {ratio:.0%}")
        else:
            print("tcpreplay not installed (apt-get install -y tcpreplay): wire replay has no comparison in this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
