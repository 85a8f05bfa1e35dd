"""Two `relay itch` processes on the same capture as a hot-standby pair, the active one killed with kill -9.

Both normalize the same capture into the same session (the same instance): the standby mirrors the
active's datagrams and checks them against what its own normalizer generates. When the active dies the
standby takes over from the next sequence number, and a line handler downstream gets the whole normalized
session exactly once, in order, with no gap: what a relay's deterministic output is for (issue 20).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig
from linehandler.handler_io import LineHandler
from mdcommon.status_io import fetch_status
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags, free_port
from tests.integration.test_relay_itch import ITCH_PORT, expected, write_capture
from tests.itch_session import session

ROOT = Path(__file__).resolve().parents[2]


def relay(capture: Path, a, b, status: Path, priority: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "relay", "itch", "--input-pcap", str(capture), "--input-port", str(ITCH_PORT),
                             "--input-speed", "0.006", *feed_flags("plant-", a, b), "--plant-stats-interval-s", "0",
                             "--plant-session-instance", "4242", "--plant-heartbeat-interval-ms", "20", "--plant-standby-enabled",
                             "--plant-standby-priority", str(priority), "--plant-standby-takeover-timeout-ms", "60",
                             "--plant-end-of-session-linger-ms", "300", "--plant-status-socket", str(status), "--plant-duration-s", "40",
                             "--plant-request-port", str(free_port(socket.SOCK_DGRAM))],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)


def state(status: Path) -> dict:
    try:
        return fetch_status(str(status)).get("standby") or {}
    except (OSError, ValueError):
        return {}


def wait_state(status: Path, want: str, timeout_s: float = 15) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = state(status)
        if st.get("state") == want:
            return st
        time.sleep(0.05)
    raise TimeoutError(f"{status.name}: not {want}: {state(status)}")


def test_a_relay_pair_survives_kill_9_of_the_active_one(tmp_path: Path) -> None:
    itch = session(31, 1500)  # about 40 ms of ITCH time, published over about 6 s at speed 0.006
    capture = tmp_path / "itch.pcap"
    write_capture(capture, itch)
    a, b = unique_feeds()
    got: list[tuple] = []
    events: list = []

    def on_messages(channel: str, first: int, msgs) -> None:
        got.extend(m for m in msgs if m[0] != b"S")

    handler = LineHandler(HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1])),
                                        stats_interval_s=0, exit_on_session_end=True),
                          on_event=lambda ch, ev: events.append(ev), on_messages=on_messages)
    s1, s2 = tmp_path / "r1.sock", tmp_path / "r2.sock"
    procs = []
    try:
        procs.append(relay(capture, a, b, s1, 0))
        wait_state(s1, "ACTIVE")
        procs.append(relay(capture, a, b, s2, 1))
        wait_state(s2, "STANDBY")
        time.sleep(1.5)  # the standby mirrors and checks a while
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        handler.run(duration_s=60)
        assert procs[1].wait(timeout=30) == 0
        log = procs[1].stderr.read()
        assert "took_over" in log, log[-3000:]
    finally:
        handler.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
    want = expected(itch)
    assert got == want, f"{len(got)} of {len(want)} messages; events {[type(e).__name__ for e in events][:10]}"
    assert not [e for e in events if type(e).__name__ in ("GapEvent", "SequenceConflict", "SessionChanged")]
    took = next(line for line in log.splitlines() if "took_over" in line)
    print(f"\nrelay pair: kill -9 of the active relay; {took.split('took_over', 1)[1].strip()}; {len(got):,} normalized messages "
          "delivered once each, no gap")
