"""Two `relay channel` processes on the same upstream as a hot-standby pair (relay/standby_io.py), the active one
killed with kill -9 mid-stream.

Both compute the same output messages from the upstream; the standby mirrors the active's feeds and compares
them with its own, message by message. When the active dies the standby continues its session from the next
sequence number, and a line handler on the relays' channel gets every upstream message exactly once, in
order, in one session, with no gap: what a relay pair is for (issue 20). A standby whose messages differ
never continues the session: it starts a new one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig, RecoveryConfig
from linehandler.events import GapEvent, SessionChanged
from linehandler.handler_io import LineHandler
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags

ROOT = Path(__file__).resolve().parents[2]
NAMES = {b"R": "instrument_directory", b"Q": "quote", b"T": "trade", b"F": "field_update"}


def published_keys(record: Path) -> list[tuple]:
    """(type, instrument, timestamp) of every market message in a plant's record file, in order."""
    return [(d["type"], d["instrument_id"], d["timestamp_ns"]) for d in map(json.loads, record.read_text().splitlines())
            if d["type"] != "system_event"]


def message_keys(msgs: list[tuple]) -> list[tuple]:
    """The same keys of delivered message tuples (session events left out)."""
    return [(NAMES[m[0]], m[2], m[1]) for m in msgs if m[0] != b"S"]


def relay(up, out, priority: int, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "relay", "channel", *feed_flags("upstream-", *up), *feed_flags("plant-", *out),
                             "--plant-standby-enabled", "--plant-standby-priority", str(priority),
                             "--plant-standby-takeover-timeout-ms", "300", "--plant-heartbeat-interval-ms", "100",
                             "--plant-stats-interval-s", "0", "--plant-end-of-session-linger-ms", "300", "--duration-s", "40", *extra],
                            cwd=ROOT, stderr=log.open("w"))


def run_pair(tmp_path: Path, standby_flags: tuple[str, ...] = (), rate: int = 3000, instruments: int = 100,
             kill_after_s: float = 2.5) -> tuple[list[tuple[int, tuple]], list, str, Path]:
    """A handler on the pair's channel (joined first), the two relays, the upstream plant, kill -9 of the active one.
    Returns what the handler delivered (sequence, message), its events, the standby's log and the upstream's record."""
    up, out = unique_feeds(), unique_feeds()
    got: list[tuple[int, tuple]] = []
    events: list = []
    handler = LineHandler(HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=out[0][0], port=out[0][1]),
                                                              feed_b=FeedConfig(group=out[1][0], port=out[1][1])),
                                        recovery=RecoveryConfig(stale_after_ms=500),  # a killed session is over soon
                                        stats_interval_s=0, exit_on_session_end=True),
                          on_message=lambda ch, seq, msg: got.append((seq, msg)), on_event=lambda ch, ev: events.append(ev))
    record = tmp_path / "upstream.jsonl"
    active = relay(up, out, 0, tmp_path / "active.log")
    time.sleep(0.5)  # the preferred relay starts its session first; the other hears it and mirrors
    standby = relay(up, out, 1, tmp_path / "standby.log", *standby_flags)
    try:
        time.sleep(2.0)  # both relays joined, one publishing, one mirroring
        plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", *up), "--source-rate", str(rate),
                                  "--source-instruments", str(instruments), "--source-burst-seconds", "0", "--duration-s", "5",
                                  "--stats-interval-s", "0", "--end-of-session-linger-ms", "300", "--record-file", str(record)],
                                 cwd=ROOT, stderr=subprocess.DEVNULL)
        time.sleep(kill_after_s)
        active.send_signal(signal.SIGKILL)
        handler.run(duration_s=30)
        assert plant.wait(timeout=20) == 0
        assert standby.wait(timeout=20) == 0, (tmp_path / "standby.log").read_text()[-3000:]
    finally:
        handler.close()
        for p in (active, standby):
            if p.poll() is None:
                p.kill()
    return got, events, (tmp_path / "standby.log").read_text(), record


def test_a_relay_pair_survives_kill_9_of_the_active_one_with_nothing_lost_or_doubled(tmp_path: Path) -> None:
    got, events, log, record = run_pair(tmp_path)
    assert "took_over" in log and "standby_diverged" not in log, log[-3000:]
    compared = int(log.rsplit("standby_compared=", 1)[1].split()[0])
    assert compared > 1000 and "standby_mismatched=0" in log  # it checked the active's messages against its own
    assert message_keys([m for _, m in got]) == published_keys(record)  # every upstream message once, in order, across the takeover
    assert [s for s, _ in got] == list(range(1, len(got) + 1))  # one session of the pair's, from 1, no gap
    assert not [e for e in events if isinstance(e, (GapEvent, SessionChanged))]
    took = next(x for x in log.splitlines() if "took_over" in x)
    print(f"\nrelay pair, active killed: {len(got):,} messages once, in order; {took.split('took_over', 1)[1].strip()}")


def test_a_standby_whose_messages_differ_never_continues_the_session_it_mirrored(tmp_path: Path) -> None:
    """The standby relays other instruments than the active (a configuration slip): it sees the difference, says so,
    and taking over starts a new session, so the handler sees a session change, never one session of mixed data."""
    _, events, log, _ = run_pair(tmp_path, ("--instruments", "1", "--instruments", "2"), rate=2000, instruments=20, kill_after_s=2.0)
    assert "standby_diverged" in log and "took_over" not in log, log[-3000:]
    assert any(isinstance(e, SessionChanged) for e in events)
