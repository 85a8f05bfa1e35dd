"""`python -m relay itch` on loopback: an ITCH 5.0 capture in, our channel out, a line handler downstream.

The capture holds a synthetic ITCH session (tests/itch_session.py) as MoldUDP64 datagrams on an A and a
B group, with one datagram missing from each feed (the other has it). The relay's plant must publish
exactly what the normalizer makes of the whole session (so nothing was lost or taken twice in the A/B
arbitration), a line handler subscribed to the relay's channel must deliver the same, and a second run
on the same capture must publish the same messages (a hot-standby pair's premise).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from decoders import make_session
from decoders.moldudp64 import encode_datagram
from decoders.pcap import PcapWriter
from examples.itch.schema import MESSAGES
from relay.itch_feed import midnight_ns
from relay.normalizer import ItchNormalizer
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags, free_port
from tests.itch_session import MIDNIGHT, session

ROOT = Path(__file__).resolve().parents[2]
ITCH_A, ITCH_B, ITCH_PORT = "233.54.12.111", "233.54.12.112", 26400
CAPTURE_T0 = MIDNIGHT + 34_200_000_000_000  # the capture's first frame, on the session date


def write_capture(path: Path, itch: list[tuple[str, bytes]], per: int = 8) -> None:
    sess = make_session(0x1234, 7)  # the exchange's session name: anything
    w = PcapWriter(str(path), 0)
    seq = 1
    for k, i in enumerate(range(0, len(itch), per)):
        blocks = [raw for _, raw in itch[i : i + per]]
        d = encode_datagram(sess, seq, blocks)
        t = CAPTURE_T0 + k * 1000
        if k != 5:
            w.write(t, "10.9.9.1", 40000, ITCH_A, ITCH_PORT, d)
        if k != 9:
            w.write(t + 300, "10.9.9.2", 40000, ITCH_B, ITCH_PORT, d)
        seq += len(blocks)
    w.close()


def records(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        if "sequence" in d and d.get("type") != "system_event":
            out.append({k: v for k, v in d.items() if k not in ("sequence", "channel")})
    return out


def expected(itch: list[tuple[str, bytes]]) -> list[tuple]:
    """The normalizer's output for the session, with the midnight the relay takes: US Eastern, on the capture's date."""
    norm = ItchNormalizer(midnight_ns("", CAPTURE_T0))
    return [m for name, raw in itch for m in norm.on_message(name, MESSAGES[name].parse(raw))]


def run_relay(tmp: Path, capture: Path, a, b, name: str, port: int = ITCH_PORT, date: str = "") -> Path:
    record = tmp / f"{name}.jsonl"
    r = subprocess.run([sys.executable, "-m", "relay", "itch", "--input-pcap", str(capture), "--input-port", str(port), "--input-date", date,
                        "--input-speed", "0", *feed_flags("plant-", a, b), "--plant-stats-interval-s", "0",
                        "--plant-end-of-session-linger-ms", "300", "--plant-record-file", str(record), "--plant-duration-s", "30",
                        "--plant-request-port", str(free_port(socket.SOCK_DGRAM))],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "capture_gap" not in r.stderr, r.stderr[-2000:]  # the A/B copies filled each other's hole
    return record


def test_an_itch_capture_becomes_our_channel_and_a_handler_gets_all_of_it(tmp_path: Path) -> None:
    itch = session(11, 800)
    capture = tmp_path / "itch.pcap"
    write_capture(capture, itch)
    a, b = unique_feeds()
    handler_record = tmp_path / "handler.jsonl"
    handler = subprocess.Popen([sys.executable, "-m", "linehandler", "run", *feed_flags("channel-", a, b), "--stats-interval-s", "0",
                                "--exit-on-session-end", "--duration-s", "40", "--record-file", str(handler_record)],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # joined before the relay starts: it gets the session from sequence 1
        first = run_relay(tmp_path, capture, a, b, "relay1")
        assert handler.wait(timeout=40) == 0, handler.stderr.read()[-2000:]
    finally:
        if handler.poll() is None:
            handler.kill()
    want = expected(itch)
    published = records(first)
    assert [(r["type"], r["instrument_id"]) for r in published] == [
        ({b"R": "instrument_directory", b"Q": "quote", b"T": "trade"}[m[0]], m[2]) for m in want]
    assert len(published) == len(want) > 100
    assert records(handler_record) == published  # downstream, every message once, in order
    second = run_relay(tmp_path, capture, a, b, "relay2")
    assert records(second) == published  # the same capture, the same output
