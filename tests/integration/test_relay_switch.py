"""`python -m relay channel --switch` on loopback: two plants publishing the same messages (same input, same
origin) on two channels, a relay taking the first, the first killed with kill -9. The relay must switch to the
second when the first goes stale, and a line handler on the relay's output must get every message once, in
order, with no gap (what both vendors carried)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig
from linehandler.handler_io import LineHandler
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags
from tests.integration.test_relay_standby_channel import message_keys, published_keys

ROOT = Path(__file__).resolve().parents[2]


def plant(a, b, origin_ns: int, record: Path | None = None) -> subprocess.Popen:
    rec = ["--record-file", str(record)] if record else []
    return subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "3000", "--source-instruments", "100",
                             "--source-burst-seconds", "0", "--source-origin-ns", str(origin_ns), "--duration-s", "4",
                             "--stats-interval-s", "0", "--end-of-session-linger-ms", "300", *rec], cwd=ROOT, stderr=subprocess.PIPE, text=True)


def test_the_relay_switches_vendor_when_the_one_taken_dies_with_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    (va_a, va_b), (vb_a, vb_b), (out_a, out_b) = unique_feeds(), unique_feeds(), unique_feeds()
    relay = subprocess.Popen([sys.executable, "-m", "relay", "channel", "--switch", *feed_flags("upstream-", va_a, va_b),
                              *feed_flags("vendor-b-", vb_a, vb_b), *feed_flags("plant-", out_a, out_b), "--recovery-stale-after-ms", "1500",
                              "--plant-stats-interval-s", "0", "--plant-end-of-session-linger-ms", "300", "--duration-s", "40"],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    got: list[tuple] = []
    handler = LineHandler(HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=out_a[0], port=out_a[1]),
                                                              feed_b=FeedConfig(group=out_b[0], port=out_b[1])),
                                        stats_interval_s=0, exit_on_session_end=True),
                          on_messages=lambda ch, first, msgs: got.extend(m for m in msgs if m[0] != b"S"))
    record = tmp_path / "vendor_b.jsonl"
    try:
        time.sleep(1.0)
        origin = time.time_ns() + 500_000_000  # both vendors: the same input from the same origin, so the same messages
        vendor_a, vendor_b = plant(va_a, va_b, origin), plant(vb_a, vb_b, origin, record)
        time.sleep(2.0)
        vendor_a.send_signal(signal.SIGKILL)
        handler.run(duration_s=30)
        assert vendor_b.wait(timeout=20) == 0
        assert relay.wait(timeout=20) == 0
        log = relay.stderr.read()
    finally:
        handler.close()
        for p in (relay, vendor_a):
            if p.poll() is None:
                p.kill()
    want = published_keys(record)
    switched = [x for x in log.splitlines() if " switched " in x]
    assert len(switched) == 1 and "to=vendor_b" in switched[0] and "switch_gap" not in log, log[-3000:]
    assert int(switched[0].rsplit("resumed_after=", 1)[1]) > 100  # it took the upstream first, and continued from the window
    assert message_keys(got) == want  # every message once, in order, across the switch
    print(f"\nvendor switch after kill -9: {len(got):,} messages, none twice, none missing; "
          f"{switched[0].split('switched', 1)[1].strip()}")
