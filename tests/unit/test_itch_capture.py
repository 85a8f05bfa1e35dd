"""Reading an ITCH capture (relay/itch_feed.py): A/B arbitration, and every hole reported, head and tail included."""

from __future__ import annotations

from pathlib import Path

from decoders import make_session
from decoders.moldudp64 import encode_datagram, encode_heartbeat
from decoders.pcap import PcapWriter
from relay.itch_feed import ItchFeed, read_capture
from tests.itch_session import MIDNIGHT, session

PORT = 26400


def test_holes_at_the_head_in_the_middle_and_at_the_tail_are_reported_and_other_sessions_skipped(tmp_path: Path) -> None:
    itch = [raw for _, raw in session(3, 40)]
    s, other = make_session(0x1234, 7), make_session(0x1234, 8)
    path = tmp_path / "c.pcap"
    w = PcapWriter(str(path), 0)
    w.write(1, "10.0.0.1", 1, "233.54.12.111", PORT, encode_datagram(s, 5, itch[4:10]))  # 1-4 never captured
    w.write(2, "10.0.0.2", 1, "233.54.12.112", PORT, encode_datagram(s, 5, itch[4:12]))  # B's copy, a little longer
    w.write(3, "10.0.0.1", 1, "233.54.12.111", PORT, encode_datagram(s, 15, itch[14:20]))  # 13-14 lost on both
    w.write(4, "10.0.0.9", 1, "233.54.12.111", PORT, encode_datagram(other, 13, itch[12:14]))  # another session: not ours
    w.write(5, "10.0.0.1", 1, "233.54.12.111", PORT, encode_heartbeat(s, 25))  # 21-24 announced, never captured
    w.close()
    cap = read_capture(str(path), PORT)
    assert cap.gaps == [(1, 4), (13, 14), (21, 24)]
    assert cap.other_session == 1 and cap.duplicates == 6
    assert [first for first, _ in cap.messages] == [5, 15]
    feed = ItchFeed(cap, MIDNIGHT, 0, speed=0)
    assert feed.due_batches(0) == 2 and feed.batch_of_sequence(1) == 0
