"""A heartbeat with bytes after its header is malformed: its sequence number must not open a gap."""

from __future__ import annotations

from decoders.moldudp64 import encode_end_of_session, encode_heartbeat
from tests.unit.handler_harness import Published, Recorder, make_core


def test_a_heartbeat_with_trailing_bytes_is_refused_before_its_sequence_is_believed(clock) -> None:
    pub, rec = Published(9), Recorder()
    core = make_core(rec, nack_servers=1)
    core.on_datagram("A", pub.datagrams[0], clock.now_ns)
    for forged in (encode_heartbeat(pub.session, 1_000_000) + b"\x00\x01", encode_end_of_session(pub.session, 1_000_000) + b"\x00"):
        assert core.on_datagram("B", forged, clock.now_ns) == []
    assert core.feed_counters[1]["malformed"] == 2
    assert not core.gaps and not core.ended
    for d in pub.datagrams[1:]:
        core.on_datagram("A", d, clock.now_ns)
    assert [s for s, _ in rec.delivered] == list(range(1, 10))


def test_a_datagram_with_a_malformed_body_moves_none_of_its_feeds_figures(clock) -> None:
    """Its header claimed sequence 1,000,000: believed, it would count 999,991 messages missed on B and
    hide every real loss on B after it."""
    from decoders.moldudp64 import encode_datagram

    pub, rec = Published(15), Recorder()
    core = make_core(rec, nack_servers=1)
    for d in pub.datagrams[:3]:
        core.on_datagram("B", d, clock.now_ns)
    forged = encode_datagram(pub.session, 1_000_000, [b"\xff\x00\x01"])  # an unknown message type
    assert core.on_datagram("B", forged, clock.now_ns) == []
    fc = core.feed_counters[1]
    assert fc["malformed"] == 1 and fc["missed"] == 0 and fc["messages"] == 9
    assert core.feed_next[1] == 10
    core.on_datagram("B", pub.datagrams[4], clock.now_ns)  # datagram 3 (sequences 10-12) lost on B: counted
    assert fc["missed"] == 3
