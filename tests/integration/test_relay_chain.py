"""The README's chain on loopback: an ITCH 5.0 capture -> `relay itch` (the normalized channel) -> `relay channel
--delay-ms` (the delayed channel) -> a line handler. The handler must get exactly what the normalizer makes of
the capture, in order, each once, no earlier than the delay after the normalized channel carried it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig
from linehandler.handler_io import LineHandler
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags
from tests.integration.test_relay_itch import ITCH_PORT, expected, write_capture
from tests.itch_session import session

ROOT = Path(__file__).resolve().parents[2]
DELAY_MS = 300


def test_itch_in_normalized_channel_delayed_channel_handler(tmp_path: Path) -> None:
    itch = session(23, 600)
    capture = tmp_path / "itch.pcap"
    write_capture(capture, itch)
    norm_a, norm_b = unique_feeds()
    late_a, late_b = unique_feeds()
    delayed = subprocess.Popen([sys.executable, "-m", "relay", "channel", *feed_flags("upstream-", norm_a, norm_b),
                                *feed_flags("plant-", late_a, late_b), "--delay-ms", str(DELAY_MS), "--plant-stats-interval-s", "0",
                                "--plant-end-of-session-linger-ms", "300", "--duration-s", "40"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    got: list[tuple] = []
    arrived: list[int] = []

    def on_messages(channel: str, first: int, msgs) -> None:
        market = [m for m in msgs if m[0] != b"S"]  # the delayed channel's own session event comes at once
        if market:
            got.extend(market)
            arrived.append(time.monotonic_ns())

    handler = LineHandler(HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=late_a[0], port=late_a[1]),
                                                              feed_b=FeedConfig(group=late_b[0], port=late_b[1])),
                                        stats_interval_s=0, exit_on_session_end=True), on_messages=on_messages)
    try:
        time.sleep(1.0)  # the delay relay and this handler join first
        started = time.monotonic_ns()
        normalized = subprocess.Popen([sys.executable, "-m", "relay", "itch", "--input-pcap", str(capture), "--input-port", str(ITCH_PORT),
                                       "--input-speed", "0", *feed_flags("plant-", norm_a, norm_b), "--plant-stats-interval-s", "0",
                                       "--plant-end-of-session-linger-ms", "300", "--plant-duration-s", "30"],
                                      cwd=ROOT, stderr=subprocess.PIPE, text=True)
        handler.run(duration_s=30)
        assert normalized.wait(timeout=20) == 0, normalized.stderr.read()[-2000:]
        assert delayed.wait(timeout=20) == 0, delayed.stderr.read()[-2000:]
    finally:
        handler.close()
        for p in (delayed,):
            if p.poll() is None:
                p.kill()
    assert got == expected(itch)  # every normalized message, once, in order, two relays down
    assert (arrived[0] - started) / 1e6 >= DELAY_MS  # nothing came before the delay
