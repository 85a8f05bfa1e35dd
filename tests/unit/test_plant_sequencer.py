"""The plant's sequencer core, on a fake clock: packing, batching delay, heartbeats, end of session."""

from __future__ import annotations

import pytest

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import decode_datagram
from retransmit.journal import Journal
from tickerplant.sequencer import Sequencer, SessionEnded

S = make_session(SCHEMA_FINGERPRINT, 7)
MS = 1_000_000


def quote(i: int) -> tuple:
    return (b"Q", i, i, 100 + i, 1, 101 + i, 2)  # 45 bytes + 2 length = 47 per block


def shape(datagrams: list[bytes]) -> list[tuple[int, int]]:
    """(first sequence, count) of each datagram."""
    return [decode_datagram(d, CODECS)[1:3] for d in datagrams]


def test_full_datagram_leaves_at_once_and_sequences_are_contiguous(clock) -> None:
    seq = Sequencer(S, CODECS, max_datagram_bytes=20 + 3 * 47, max_batch_delay_ns=10 * MS)
    out = seq.publish_many([quote(i) for i in range(7)], clock.now_ns)
    assert shape(out) == [(1, 3), (4, 3)]  # the 7th waits for more or for the batch delay
    assert all(len(d) <= 20 + 3 * 47 for d in out)
    assert seq.pending_messages == 1 and seq.next_sequence == 8
    assert shape(seq.flush(clock.now_ns)) == [(7, 1)]
    assert decode_datagram(out[1], CODECS)[3] == [quote(3), quote(4), quote(5)]


def test_batch_leaves_after_its_delay_not_before(clock) -> None:
    seq = Sequencer(S, CODECS, max_batch_delay_ns=2 * MS, heartbeat_interval_ns=1000 * MS)
    assert seq.publish_many([quote(1)], clock.now_ns) == []
    assert seq.next_timer() == clock.now_ns + 2 * MS
    clock.advance_ms(1.9)
    assert seq.on_timer(clock.now_ns) == []
    clock.advance_ms(0.1)
    assert shape(seq.on_timer(clock.now_ns)) == [(1, 1)]
    assert seq.next_timer() == clock.now_ns + 1000 * MS  # now idle: the heartbeat deadline


def test_heartbeats_when_idle_carry_the_next_sequence(clock) -> None:
    seq = Sequencer(S, CODECS, max_batch_delay_ns=0, heartbeat_interval_ns=100 * MS)
    seq.publish_many([quote(1), quote(2)], clock.now_ns)
    sent = seq.on_timer(clock.now_ns)  # batch delay 0: leaves on the first timer
    assert shape(sent) == [(1, 2)]
    beats = []
    for _ in range(35):
        clock.advance_ms(10)
        beats += seq.on_timer(clock.now_ns)
    assert shape(beats) == [(3, 0), (3, 0), (3, 0)]  # at 100, 200, 300 ms
    assert seq.heartbeats == 3
    seq.publish_many([quote(3)], clock.now_ns)
    clock.advance_ms(1)
    assert shape(seq.on_timer(clock.now_ns)) == [(3, 1)]
    clock.advance_ms(99)
    assert seq.on_timer(clock.now_ns) == []  # sending data restarts the idle interval
    clock.advance_ms(1)
    assert shape(seq.on_timer(clock.now_ns)) == [(4, 0)]


def test_end_of_session_flushes_then_only_end_packets(clock) -> None:
    journal = Journal()
    seq = Sequencer(S, CODECS, journal=journal)
    seq.publish_many([quote(1)], clock.now_ns)
    out = seq.end_session(clock.now_ns, timestamp_ns=42)
    assert shape(out) == [(1, 1), (2, 1)]
    assert decode_datagram(out[1], CODECS)[3] == [(b"S", 42, ord("E"), SCHEMA_FINGERPRINT)]
    assert decode_datagram(seq.end_of_session_packet(), CODECS)[1:3] == (3, 0xFFFF)
    assert seq.on_timer(clock.advance_ms(5000)) == [] and seq.next_timer() is None
    with pytest.raises(SessionEnded):
        seq.publish_many([quote(2)], clock.now_ns)
    assert (journal.first_sequence, journal.next_sequence) == (1, 3)
    assert CODECS.decode(journal.get(1, 1)[0]) == quote(1)


def test_journal_holds_exactly_what_was_sent(clock) -> None:
    journal = Journal()
    seq = Sequencer(S, CODECS, max_datagram_bytes=300, journal=journal)
    msgs = [quote(i) for i in range(50)] + [(b"I", 1, 9, "X", -2, ((1, 2, 3),) * 20)]
    out = seq.publish_many(msgs, clock.now_ns) + seq.flush(clock.now_ns)
    sent = [m for d in out for m in decode_datagram(d, CODECS)[3]]
    assert sent == msgs
    assert [CODECS.decode(b) for b in journal.get(1, 100)] == msgs


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Sequencer(b"short", CODECS)
    with pytest.raises(ValueError):
        Sequencer(S, CODECS, max_datagram_bytes=10)


def test_a_batch_that_fails_to_encode_leaves_no_trace(clock) -> None:
    """publish_many is all or nothing: an EncodeError mid-batch, after two datagrams filled
    up, journals nothing, returns nothing and numbers nothing; the next publish goes on
    from the same sequence as if the bad batch had never been offered."""
    from decoders import EncodeError

    journal = Journal()
    seq = Sequencer(S, CODECS, max_datagram_bytes=20 + 3 * 47, journal=journal)
    first = seq.publish_many([quote(i) for i in range(4)], clock.now_ns)  # one datagram out, one message open
    assert shape(first) == [(1, 3)] and len(journal) == 3
    out: list[bytes] = [b"earlier"]
    bad = (b"Q", 1, 2, "not a price", 1, 2, 3)
    with pytest.raises(EncodeError):
        seq.publish_many([quote(i) for i in range(10, 17)] + [bad, quote(99)], clock.now_ns, out)
    assert out == [b"earlier"] and len(journal) == 3
    assert (seq.next_sequence, seq.pending_messages, seq.datagrams, seq.messages) == (5, 1, 1, 3)
    with pytest.raises(EncodeError):
        seq.publish(bad, clock.now_ns, out)  # alone, into the open datagram
    assert (seq.next_sequence, seq.pending_messages) == (5, 1)
    again = seq.publish_many([quote(i) for i in range(20, 25)], clock.now_ns) + seq.flush(clock.now_ns)
    assert shape(again) == [(4, 3), (7, 3)]
    sent = [m for d in first + again for m in decode_datagram(d, CODECS)[3]]
    assert sent == [quote(i) for i in range(4)] + [quote(i) for i in range(20, 25)]
    assert [CODECS.decode(b) for b in journal.get(1, 100)] == sent and seq.next_sequence == 10
