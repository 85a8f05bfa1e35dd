"""Issue 16's two live reproductions, against a loopback deployment with default settings (no `sources`
filter): what a mistake or a hostile host on the LAN did to a running handler, and now must not.

1. A second plant started by mistake on the channel's groups (another seed, a newer session instance)
   for a while: the handler had followed it, delivered its messages as if real, and refused the real
   plant's for good (70,051 real messages lost, quality OK, no GapEvent).
2. A host that copies one datagram off feed A and sends four altered copies to both groups: a heartbeat
   with sequence 0, the same under a newer session instance, the datagram moved 10^9 ahead, the
   datagram under the newer instance. 62,751 of 166,522 messages had been lost, one sequence went
   backwards, and the handler followed the forged session.
Now: every message the real plant published is delivered once, in order, with no GapEvent, and the
stray session is reported (SessionConflict), never followed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from decoders.moldudp64 import decode_header, encode_heartbeat
from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig
from linehandler.events import GapEvent, SessionChanged, SessionConflict, SessionEnded
from linehandler.handler_io import LineHandler
from mdcommon.mcast_send_io import open_sender
from tests.integration.mcast import collect, receiver, unique_feeds
from tests.integration.test_end_to_end import feed_flags, free_port, published, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def _plant(a: tuple[str, int], b: tuple[str, int], record: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--stats-interval-s", "0",
                             "--end-of-session-linger-ms", "300", "--record-file", str(record), *extra],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)


def _handler(a: tuple[str, int], b: tuple[str, int], **channel: object) -> tuple[LineHandler, list[int], list]:
    delivered: list[int] = []
    events: list = []
    config = HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1]),
                                                 **channel), stats_interval_s=0, exit_on_session_end=True)
    return LineHandler(config, lambda ch, seq, msg: delivered.append(seq), lambda ch, ev: events.append(ev)), delivered, events


def _run_beside(handler: LineHandler, work, duration_s: float) -> None:
    """Run the handler while `work` (a stray plant, a forger) runs in a thread beside it."""
    thread = threading.Thread(target=work)
    thread.start()
    try:
        handler.run(duration_s=duration_s)
    finally:
        thread.join()
        handler.close()


def test_a_stray_plant_on_the_same_groups_costs_the_handler_nothing_and_is_reported(tmp_path: Path) -> None:
    a, b = unique_feeds()
    handler, delivered, events = _handler(a, b)
    real = _plant(a, b, tmp_path / "real.jsonl", "--source-rate", "5000", "--duration-s", "4", "--session-instance", "1000")

    def stray_later() -> None:
        time.sleep(1.0)
        stray = _plant(a, b, tmp_path / "stray.jsonl", "--source-rate", "5000", "--duration-s", "1.5", "--source-seed", "7",
                       "--session-instance", "2000")
        stray.wait(timeout=20)

    _run_beside(handler, stray_later, 20)
    assert real.wait(timeout=15) == 0
    last = max(published(tmp_path / "real.jsonl"))
    assert len(published(tmp_path / "stray.jsonl")) > 1000  # the stray really published on our groups
    assert delivered == list(range(1, last + 1))
    assert not [e for e in events if isinstance(e, (GapEvent, SessionChanged))]
    conflicts = [e for e in events if isinstance(e, SessionConflict)]
    assert len(conflicts) == 1 and conflicts[0].other != conflicts[0].current
    ended = [e for e in events if isinstance(e, SessionEnded)]
    assert ended and ended[0].next_sequence == last + 1
    feeds = handler.status()["channels"]["ch1"]["feeds"]
    print(f"\nstray plant: {last} real messages delivered exactly; the stray's datagrams held and counted: "
          f"A {feeds['A']['other_session']}, B {feeds['B']['other_session']}")
    assert feeds["A"]["other_session"] > 0 and feeds["B"]["other_session"] > 0


def test_one_forged_datagram_altered_four_ways_costs_a_default_deployment_nothing(tmp_path: Path) -> None:
    a, b = unique_feeds()
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    server = subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", a, b), "--request-port", str(udp),
                               "--image-port", str(tcp), "--stats-interval-s", "0", "--duration-s", "30"],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for_port(tcp)
    handler, delivered, events = _handler(a, b, nack_servers=[f"127.0.0.1:{udp}"], image_servers=[f"127.0.0.1:{tcp}"])
    record = tmp_path / "published.jsonl"
    plant = _plant(a, b, record, "--source-rate", "20000", "--duration-s", "5")
    spy = receiver(*a)
    forger = open_sender("lo", source_address="127.0.0.2")
    forged: list[bytes] = []

    def forge() -> None:
        time.sleep(3.0)
        got = collect({"a": spy}, lambda g: len(g["a"]) >= 1, 5)["a"]
        d = got[-1]
        session, seq, count = decode_header(d)
        newer = session[:4] + b"ZZZZZZ"
        far = bytearray(d)
        far[10:18] = (seq + 10**9).to_bytes(8, "big")
        other = bytearray(d)
        other[0:10] = newer
        forged.extend([encode_heartbeat(session, 0), encode_heartbeat(newer, seq + count), bytes(far), bytes(other)])
        for f in forged:
            for group in (a, b):
                forger.sendto(f, group)

    try:
        _run_beside(handler, forge, 25)
    finally:
        spy.close()
        forger.close()
        server.terminate()
        server.wait(timeout=10)
    assert plant.wait(timeout=15) == 0
    assert len(forged) == 4, "the forger never saw the feed"
    last = max(published(record))
    assert delivered == list(range(1, last + 1))
    assert not [e for e in events if isinstance(e, (GapEvent, SessionChanged))]
    assert [e.other for e in events if isinstance(e, SessionConflict)] == [forged[1][:10]]
    ch = handler.status()["channels"]["ch1"]
    print(f"\nforged x4 on both feeds: {last} messages delivered exactly; malformed "
          f"{ch['feeds']['A']['malformed']}+{ch['feeds']['B']['malformed']}, held unbelieved "
          f"{ch['feeds']['A']['unconfirmed']}+{ch['feeds']['B']['unconfirmed']}, other session "
          f"{ch['feeds']['A']['other_session']}+{ch['feeds']['B']['other_session']}")
