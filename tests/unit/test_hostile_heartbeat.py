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
