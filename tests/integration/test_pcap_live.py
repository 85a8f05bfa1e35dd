"""Captures of live runs: tcpdump's and our own, decoded and replayed offline to the live result."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig
from linehandler.handler_io import LineHandler
from linehandler.replay import replay
from tests.conftest import need_tool
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags

ROOT = Path(__file__).resolve().parents[2]


def live_run(tmp_path: Path, a, b, capture: Path | None = None) -> list[int]:
    delivered: list[int] = []
    config = HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1])),
                           stats_interval_s=0, exit_on_session_end=True, drop_a=0.03,
                           capture_file=str(capture) if capture else "")
    handler = LineHandler(config, lambda ch, seq, msg: delivered.append(seq))
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "10000", "--duration-s", "1.5",
                              "--stats-interval-s", "0", "--end-of-session-linger-ms", "300"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        handler.run(duration_s=15)
    finally:
        handler.close()
    assert plant.wait(timeout=15) == 0
    return delivered


def test_tcpdump_capture_replays_offline_to_what_the_live_handler_delivered(tmp_path: Path) -> None:
    tcpdump = need_tool("tcpdump")
    a, b = unique_feeds()
    cap = tmp_path / "tcpdump.pcap"
    dump = subprocess.Popen([tcpdump, "-i", "lo", "-n", "-U", "--time-stamp-precision=nano", "-w", str(cap), "udp", "and",
                             f"(dst port {a[1]} or dst port {b[1]})"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "listening on" not in (dump.stderr.readline() or ""):
        pass
    live = live_run(tmp_path, a, b)
    time.sleep(0.5)
    dump.terminate()
    dump.wait(timeout=10)
    offline: list[int] = []
    report = replay(str(cap), a, b, on_message=lambda seq, msg: offline.append(seq))
    # tcpdump saw every datagram on the wire; the live handler dropped 3 % of feed A in-process and
    # filled it from B, so both deliver the whole stream
    assert offline == live == list(range(1, len(live) + 1))
    assert report.capture["udp"] == report.datagrams["A"] + report.datagrams["B"] > 500
    summary = json.loads(subprocess.run([sys.executable, "-m", "decoders", "pcap", str(cap), "--summary", "--feed-a", f"{a[0]}:{a[1]}",
                                         "--feed-b", f"{b[0]}:{b[1]}"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout)
    assert summary["feeds"]["A"]["gaps"] == summary["feeds"]["B"]["gaps"] == 0
    assert summary["feeds"]["A"]["messages"] == len(live)


def test_our_capture_is_read_by_tshark_scapy_and_replay(tmp_path: Path) -> None:
    tshark = need_tool("tshark")
    a, b = unique_feeds()
    cap = tmp_path / "ours.pcap"
    live = live_run(tmp_path, a, b, capture=cap)
    offline: list[int] = []
    replay(str(cap), a, b, on_message=lambda seq, msg: offline.append(seq))
    assert offline == live
    r = subprocess.run([tshark, "-r", str(cap), "-d", f"udp.port=={a[1]},moldudp64", "-d", f"udp.port=={b[1]},moldudp64",
                        "-T", "fields", "-e", "moldudp64.sequence", "-e", "_ws.malformed"], capture_output=True, text=True, timeout=60, check=True)
    rows = [ln.split("\t") for ln in r.stdout.splitlines()]
    assert len(rows) > 500 and all(mal == "" for _, mal in rows) and all(seq.isdigit() for seq, _ in rows)
    from scapy.all import rdpcap

    assert len(rdpcap(str(cap))) == len(rows)


def test_wire_replay_reaches_a_live_handler_with_the_same_result(tmp_path: Path) -> None:
    import threading

    from mdcommon.replay_io import ReplayTarget, wire_replay

    a, b = unique_feeds()
    cap = tmp_path / "ours.pcap"
    original = live_run(tmp_path, a, b, capture=cap)
    a2, b2 = unique_feeds()  # replay onto other groups, to a handler listening there
    replayed: list[int] = []
    config = HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=a2[0], port=a2[1]), feed_b=FeedConfig(group=b2[0], port=b2[1])),
                           stats_interval_s=0, exit_on_session_end=True)
    handler = LineHandler(config, lambda ch, seq, msg: replayed.append(seq))
    reports = []
    sender = threading.Thread(target=lambda: reports.append(wire_replay(cap, {a: ReplayTarget("lo", *a2), b: ReplayTarget("lo", *b2)},
                                                                        speed=2.0, map_all_to=None)))
    sender.start()
    try:
        handler.run(duration_s=20)
    finally:
        handler.close()
        sender.join()
    r = reports[0]
    assert replayed == original
    assert r.sent > 500 and r.send_errors == 0 and r.skipped_unmapped == 0
    print(f"\nwire replay at 2x: {r.sent} datagrams, lateness p50 {r.percentile_us(0.5):.0f} µs, p99 {r.percentile_us(0.99):.0f} µs")
