"""`python -m relay itch` on a live ITCH 5.0 feed, on loopback: the exchange's MoldUDP64 datagrams put on an
A and a B group by the wire replay (`python -m tickerplant replay`), a relay whose line handler reads them
as a foreign channel, our channel out.

1. With one datagram missing from each feed (the other has it), the relay must publish exactly what the
   relay publishes from the same capture offline (`--input-pcap`): the same normalized messages, the
   same timestamps, nothing lost or doubled in the live A/B arbitration. The exchange's end of session
   ends ours.
2. With a datagram missing from both feeds and no re-request server, the relay must say so loudly and
   mark every instrument `maybe_stale` in order with the rest, then go on normalizing what follows.
"""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from decoders.moldudp64 import encode_datagram, encode_end_of_session
from decoders.pcap import PcapWriter
from decoders.schema.fields import FIELDS_BY_NAME
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags
from tests.integration.test_relay_itch import CAPTURE_T0, records, run_relay
from tests.itch_session import session

ROOT = Path(__file__).resolve().parents[2]
EXCHANGE_SESSION = b"000012345A"
MAYBE_STALE = FIELDS_BY_NAME["maybe_stale"].field_id
DATE = datetime.datetime.fromtimestamp(CAPTURE_T0 / 1e9, ZoneInfo("America/New_York")).date().isoformat()


def write_feed(path: Path, itch: list[tuple[str, bytes]], a, b, missing_a: set[int], missing_b: set[int], per: int = 8,
               spacing_ns: int = 200_000) -> None:
    """The exchange's A and B feeds as a capture, datagram k absent from A if in missing_a (B likewise), then the end of session."""
    w = PcapWriter(str(path), 0)
    seq = 1
    k = 0
    for k, i in enumerate(range(0, len(itch), per)):
        blocks = [raw for _, raw in itch[i:i + per]]
        d = encode_datagram(EXCHANGE_SESSION, seq, blocks)
        t = CAPTURE_T0 + k * spacing_ns
        if k not in missing_a:
            w.write(t, "10.9.9.1", 40000, a[0], a[1], d)
        if k not in missing_b:
            w.write(t + 50_000, "10.9.9.2", 40000, b[0], b[1], d)
        seq += len(blocks)
    end = encode_end_of_session(EXCHANGE_SESSION, seq)
    for _ in range(3):
        k += 1
        w.write(CAPTURE_T0 + k * spacing_ns, "10.9.9.1", 40000, a[0], a[1], end)
        w.write(CAPTURE_T0 + k * spacing_ns + 50_000, "10.9.9.2", 40000, b[0], b[1], end)
    w.close()


def live_relay(tmp: Path, capture: Path, up, out, name: str) -> tuple[Path, str]:
    """Start the live relay, replay the capture onto loopback, and wait for the relay to end with the exchange's session."""
    record = tmp / f"{name}.jsonl"
    relay = subprocess.Popen([sys.executable, "-m", "relay", "itch", *feed_flags("upstream-", *up), "--input-date", DATE,
                              *feed_flags("plant-", *out), "--plant-stats-interval-s", "0", "--plant-end-of-session-linger-ms", "200",
                              "--plant-record-file", str(record), "--plant-duration-s", "40", "--recovery-stale-after-ms", "20000"],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # joined before the exchange's first datagram
        replay = subprocess.run([sys.executable, "-m", "tickerplant", "replay", str(capture), "--speed", "1"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0, replay.stderr[-2000:]
        assert relay.wait(timeout=30) == 0, relay.stderr.read()[-3000:]
        return record, relay.stderr.read()
    finally:
        if relay.poll() is None:
            relay.kill()


def exchange_feeds():
    """The exchange's A and B groups on one port, as ITCH feeds often are (and as the offline reader takes them)."""
    a, b = unique_feeds()
    return a, (b[0], a[1])


def test_a_live_itch_feed_is_normalized_exactly_as_its_capture_is(tmp_path: Path) -> None:
    itch = session(29, 700)
    up, out = exchange_feeds(), unique_feeds()
    capture = tmp_path / "itch.pcap"
    write_feed(capture, itch, *up, missing_a={5, 30}, missing_b={9, 31})
    live, log = live_relay(tmp_path, capture, up, out, "live")
    assert "upstream_gap" not in log, log[-2000:]
    assert "upstream_session_ended" in log
    # the same capture, read offline (its A/B arbitration, its own code path), gives the same channel
    offline = run_relay(tmp_path, capture, *unique_feeds(), "offline", port=up[0][1], date=DATE)
    want = records(offline)
    assert len(want) > 100
    assert records(live) == want


def test_an_itch_datagram_lost_on_both_feeds_marks_every_instrument_maybe_stale_and_the_rest_goes_on(tmp_path: Path) -> None:
    itch = session(30, 400)
    up, out = exchange_feeds(), unique_feeds()
    capture = tmp_path / "itch.pcap"
    write_feed(capture, itch, *up, missing_a={20}, missing_b={20})
    live, log = live_relay(tmp_path, capture, up, out, "live")
    assert "first=161 last=168" in log, log[-2000:]  # datagram 20 held ITCH messages 161-168: said, precisely
    got = records(live)
    marks = [i for i, r in enumerate(got) if r["type"] == "field_update" and r["field_id"] == MAYBE_STALE]
    assert len(marks) == 3, got[-10:]  # the three stocks of the directory, once
    assert all(got[i]["value"] == 1 for i in marks)
    assert len(got) - marks[-1] > 50  # and the session went on being normalized after them


def test_a_pair_of_live_itch_relays_survives_kill_9_of_the_active_one(tmp_path: Path) -> None:
    """Two live relays on the same ITCH feed as a hot-standby pair (relay/standby_io.py): the active one is killed
    with kill -9 mid-session; a handler on the pair's channel must get exactly what the capture normalizes into,
    once, in order, in one session."""
    itch = session(33, 3000)
    up, out = exchange_feeds(), unique_feeds()
    capture = tmp_path / "itch.pcap"
    write_feed(capture, itch, *up, missing_a={40}, missing_b={90}, spacing_ns=10_000_000)  # 4 s of feed
    handler_record = tmp_path / "handler.jsonl"
    handler = subprocess.Popen([sys.executable, "-m", "linehandler", "run", *feed_flags("channel-", *out), "--stats-interval-s", "0",
                                "--exit-on-session-end", "--duration-s", "40", "--record-file", str(handler_record)],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)

    def relay(priority: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "relay", "itch", *feed_flags("upstream-", *up), "--input-date", DATE,
                                 *feed_flags("plant-", *out), "--plant-standby-enabled", "--plant-standby-priority", str(priority),
                                 "--plant-standby-takeover-timeout-ms", "300", "--plant-heartbeat-interval-ms", "100",
                                 "--plant-stats-interval-s", "0", "--plant-end-of-session-linger-ms", "300", "--plant-duration-s", "40",
                                 "--recovery-stale-after-ms", "20000"],
                                cwd=ROOT, stderr=(tmp_path / f"relay{priority}.log").open("w"))

    active = relay(0)
    time.sleep(0.5)
    standby = relay(1)
    try:
        time.sleep(2.0)  # one publishing its session, the other mirroring it
        replay = subprocess.Popen([sys.executable, "-m", "tickerplant", "replay", str(capture), "--speed", "1"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        active.send_signal(signal.SIGKILL)
        assert replay.wait(timeout=60) == 0
        assert standby.wait(timeout=30) == 0, (tmp_path / "relay1.log").read_text()[-3000:]
        assert handler.wait(timeout=30) == 0, handler.stderr.read()[-2000:]
    finally:
        for p in (active, standby, handler):
            if p.poll() is None:
                p.kill()
    log = (tmp_path / "relay1.log").read_text()
    assert "took_over" in log and "standby_diverged" not in log, log[-3000:]
    offline = run_relay(tmp_path, capture, *unique_feeds(), "offline", port=up[0][1], date=DATE)
    want = records(offline)
    assert len(want) > 500
    assert records(handler_record) == want  # the whole normalized session, once, in order, across the takeover
    assert "SessionChanged" not in handler.stderr.read()
