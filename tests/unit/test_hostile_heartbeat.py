"""A heartbeat with bytes after its header is malformed: its sequence number must not open a gap."""

from __future__ import annotations

from decoders.moldudp64 import encode_end_of_session, encode_heartbeat
from tests.unit.handler_harness import MS, Published, Recorder, make_core, open_stream, step_and_answer


def test_a_heartbeat_with_trailing_bytes_is_refused_before_its_sequence_is_believed(clock) -> None:
    pub, rec = Published(9), Recorder()
    core = make_core(rec, nack_servers=1)
    open_stream(core, pub, clock.now_ns)
    for forged in (encode_heartbeat(pub.session, 1_000_000) + b"\x00\x01", encode_end_of_session(pub.session, 1_000_000) + b"\x00"):
        assert core.on_datagram("B", forged, clock.now_ns) == []
    assert core.feed_counters[1]["malformed"] == 2
    assert not core.gaps and not core.ended
    for d in pub.datagrams[1:]:
        core.on_datagram("A", d, clock.now_ns)
    assert [s for s, _ in rec.delivered] == list(range(1, 10))


def test_a_datagram_with_a_malformed_body_moves_none_of_its_feeds_figures(clock) -> None:
    """Its header claimed sequence 900 (inside the receive window, so it is decoded): believed, it would
    count 891 messages missed on B and hide every real loss on B after it."""
    from decoders.moldudp64 import encode_datagram

    pub, rec = Published(15), Recorder()
    core = make_core(rec, nack_servers=1)
    for d in pub.datagrams[:3]:
        core.on_datagram("B", d, clock.now_ns)
    forged = encode_datagram(pub.session, 900, [b"\xff\x00\x01"])  # an unknown message type
    assert core.on_datagram("B", forged, clock.now_ns) == []
    fc = core.feed_counters[1]
    assert fc["malformed"] == 1 and fc["missed"] == 0 and fc["messages"] == 9
    assert core.feed_next[1] == 10
    core.on_datagram("B", pub.datagrams[4], clock.now_ns)  # datagram 3 (sequences 10-12) lost on B: counted
    assert fc["missed"] == 3


def test_a_far_ahead_heartbeat_is_withdrawn_when_live_data_lands_inside_its_range(clock) -> None:
    """Well-formed, our session, claiming sequence 900 (another sender on the LAN; inside the receive window,
    farther ahead it would not even be believed): the plant's next datagram lies inside the range only that
    heartbeat vouched for, so the range is withdrawn, not lost."""
    from linehandler.events import GapEvent

    pub, rec = Published(30), Recorder()
    core = make_core(rec, nack_servers=1)
    open_stream(core, pub, clock.now_ns)
    core.on_datagram("B", encode_heartbeat(pub.session, 900), clock.now_ns)
    assert core.gaps.missing() == 900 - 4
    for d in pub.datagrams[1:]:
        core.on_datagram("A", d, clock.now_ns)
        clock.advance(MS)
        core.on_timer(clock.now_ns)
    assert [s for s, _ in rec.delivered] == list(range(1, 31)) and not rec.events(GapEvent)
    assert core.counters["announced_withdrawn"] == 1 and not core.gaps


def test_a_real_tail_gap_withdrawn_by_a_late_datagram_comes_back_with_the_next_heartbeat(clock) -> None:
    """The plant's datagrams 2-4 are lost on both feeds and it goes idle: its heartbeat announces them. A
    delayed copy of datagram 2 then lands inside that range and withdraws its upper part; the plant's next
    heartbeat announces it again and it is recovered: one heartbeat interval later, nothing lost."""
    pub, rec = Published(15), Recorder()
    core = make_core(rec, nack_servers=1)
    open_stream(core, pub, clock.now_ns)
    core.on_datagram("A", pub.datagrams[1], clock.now_ns)
    core.on_datagram("A", pub.heartbeat(), clock.now_ns)  # next = 16: 7..15 missing
    core.on_datagram("B", pub.datagrams[2], clock.now_ns)  # 7..9, late: 10..15 withdrawn
    assert core.counters["announced_withdrawn"] == 1 and core.gaps.missing() == 0
    core.on_datagram("A", pub.heartbeat(), clock.now_ns)  # the plant, still idle, says 16 again
    assert core.gaps.missing() == 6
    step_and_answer(core, pub, clock, 50)
    assert [s for s, _ in rec.delivered] == list(range(1, 16))
