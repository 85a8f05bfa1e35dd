"""Operations on loopback: status snapshots and Prometheus metrics agree, for each daemon."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def status(module: str, sock: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", module, "status", "--socket", str(sock), "--once", "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_status_and_metrics_agree_for_every_daemon(tmp_path: Path) -> None:
    a, b = unique_feeds()
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    ports = {n: free_port(socket.SOCK_STREAM) for n in ("plant", "handler", "rtx")}
    socks = {n: tmp_path / f"{n}.sock" for n in ports}
    rtx = subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", a, b), "--request-port", str(udp), "--image-port", str(tcp),
                            "--stats-interval-s", "0", "--status-socket", str(socks["rtx"]), "--metrics-port", str(ports["rtx"]), "--duration-s", "30"],
                           cwd=ROOT, stderr=subprocess.PIPE, text=True)
    handler = subprocess.Popen([sys.executable, "-m", "linehandler", "run", *feed_flags("channel-", a, b), "--stats-interval-s", "0",
                                "--status-socket", str(socks["handler"]), "--metrics-port", str(ports["handler"]), "--duration-s", "30",
                                "--channel-nack-servers", f"127.0.0.1:{udp}", "--drop-a", "0.05", "--drop-b", "0.05"],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for_port(tcp)
    wait_for_port(ports["handler"])
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "5000", "--duration-s", "3",
                              "--stats-interval-s", "0", "--status-socket", str(socks["plant"]), "--metrics-port", str(ports["plant"]),
                              "--end-of-session-linger-ms", "300"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(ports["plant"])
        time.sleep(1.5)
        p_status, p_metrics = status("tickerplant", socks["plant"]), scrape(ports["plant"])
        table = subprocess.run([sys.executable, "-m", "tickerplant", "status", "--socket", str(socks["plant"]), "--once"], cwd=ROOT,
                               capture_output=True, text=True, timeout=30, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})
        assert table.returncode == 0 and "tickerplant" in table.stdout and a[0] in table.stdout, table.stderr
        assert p_status["daemon"] == "tickerplant" and p_metrics['md_tickerplant_next_sequence'] > 1000
        assert plant.wait(timeout=20) == 0
        time.sleep(1.6)  # the session has ended: figures stand still (and feeds are not yet stale, at 3 s)
        h, hm = status("linehandler", socks["handler"]), scrape(ports["handler"])
        ch = h["channels"]["ch1"]
        assert hm['md_linehandler_datagrams_total{channel="ch1",feed="A"}'] == ch["feeds"]["A"]["datagrams"]
        assert hm['md_linehandler_stream_delivered_total{channel="ch1"}'] == ch["stream"]["delivered"] > 10_000
        assert hm['md_linehandler_stream_gaps_recovered_by_nack_total{channel="ch1"}'] == ch["stream"]["gaps_recovered_by_nack"] > 0
        assert hm['md_linehandler_quality{channel="ch1"}'] == 0 and ch["quality"] == "OK"
        assert hm['md_linehandler_recovery_seconds_count{channel="ch1"}'] == ch["stream"]["gaps_recovered_by_nack"]
        assert hm['md_linehandler_publish_to_deliver_seconds_count{channel="ch1"}'] > 100
        r, rm = status("retransmit", socks["rtx"]), scrape(ports["rtx"])
        assert rm["md_retransmit_server_requests_total"] == r["server"]["requests"] > 0
        assert rm["md_retransmit_journal_messages"] == r["journal"]["messages"] > 10_000
    finally:
        for p in (handler, rtx):
            p.terminate()
            p.wait(timeout=10)
