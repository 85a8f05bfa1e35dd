"""The handler keeps serving what it has while its servers are gone, and recovers when one returns."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig, RecoveryConfig
from linehandler.events import GapEvent
from linehandler.handler_io import LineHandler
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags, free_port

ROOT = Path(__file__).resolve().parents[2]


def test_servers_down_then_back(tmp_path: Path) -> None:
    a, b = unique_feeds()
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    seen: list[object] = []  # delivered sequence numbers and gap events, in the order the application got them
    config = HandlerConfig(
        channel=ChannelConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1]),
                              nack_servers=[f"127.0.0.1:{udp}"], image_servers=[f"127.0.0.1:{tcp}"]),
        recovery=RecoveryConfig(give_up_s=0.5, request_timeout_ms=50),
        drop_a=0.1, drop_b=0.1, stats_interval_s=0, exit_on_session_end=True,
    )
    handler = LineHandler(config, lambda ch, seq, msg: seen.append(seq), lambda ch, ev: seen.append(ev) if isinstance(ev, GapEvent) else None)
    handler.channels[0].core.policy.image_retry_ns = 300_000_000
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "5000", "--source-burst-seconds", "0",
                              "--duration-s", "6", "--stats-interval-s", "0", "--end-of-session-linger-ms", "300"],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    server: list[subprocess.Popen] = []

    def start_server_later() -> None:
        time.sleep(2.5)
        server.append(subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", a, b), "--request-port", str(udp),
                                        "--image-port", str(tcp), "--stats-interval-s", "0", "--duration-s", "20"],
                                       cwd=ROOT, stderr=subprocess.PIPE, text=True))

    t = threading.Thread(target=start_server_later)
    t.start()
    try:
        handler.run(duration_s=20)
        stream = handler.status()["channels"]["ch1"]["stream"]
    finally:
        handler.close()
        t.join()
        for p in server:
            p.terminate()
            p.wait(timeout=10)
    assert plant.wait(timeout=20) == 0
    # every sequence exactly once: delivered, or inside exactly one reported gap, in order
    covered: list[int] = []
    for x in seen:
        covered += list(range(x.first, x.last + 1)) if isinstance(x, GapEvent) else [x]
    assert covered == list(range(1, len(covered) + 1))
    gaps = [x for x in seen if isinstance(x, GapEvent)]
    assert gaps, "with 10 % loss on each feed and no server for 2.5 s some datagrams are lost on both"
    assert stream["gaps_recovered_by_nack"] > 0, "once the server is back, gaps are recovered"
    print(f"\n{len(gaps)} ranges reported lost while the server was down ({sum(g.last - g.first + 1 for g in gaps)} messages), "
          f"{stream['gaps_recovered_by_nack']} recovered after it came back; images applied {stream['images_applied']}")
