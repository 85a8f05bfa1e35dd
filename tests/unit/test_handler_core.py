"""The line handler core on a fake clock: arbitration, gaps, recovery, late join, sessions, staleness."""

from __future__ import annotations

import pytest

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import encode_datagram, encode_end_of_session
from linehandler.events import (
    FeedRecovered,
    FeedStale,
    GapEvent,
    ImageApplied,
    QualityChanged,
    Recovered,
    RequestImage,
    SchemaMismatch,
    SendNack,
    SequenceConflict,
    SessionChanged,
    SessionEnded,
    SessionStarted,
)
from linehandler.session import RecoveryPolicy
from tests.unit.handler_harness import MS, SESSION, Published, Recorder, make_core, open_stream, run_timers


def reject(seq: int, count: int, reason: str, retry_after_ns: int = 0, session: bytes = SESSION) -> bytes:
    msg = CODECS.by_name["retransmission_reject"].from_dict(dict(
        timestamp_ns=0, reason=reason, requested_sequence_number=seq, requested_message_count=count,
        retry_after_ns=retry_after_ns, first_available_sequence_number=1, next_sequence_number=10**6))
    return encode_datagram(session, 0, [CODECS.encode(msg)])


def test_in_order_on_both_feeds_delivers_once_and_counts_duplicates(clock) -> None:
    pub, rec = Published(30), Recorder()
    core = make_core(rec)
    for d in pub.datagrams:
        assert core.on_datagram("A", d, clock.now_ns) == []
        assert core.on_datagram("B", d, clock.advance(1000)) == []
    assert rec.delivered == list(enumerate(pub.messages, 1))
    assert rec.events() == [SessionStarted(SESSION, 1)]
    a, b = core.feed_counters[0].as_dict(), core.feed_counters[1].as_dict()
    assert (a["first_arrivals"], a["duplicates"], b["first_arrivals"], b["duplicates"]) == (30, 0, 0, 30)
    assert sum(core.lead_lag) == len(pub.datagrams)  # every datagram seen on both feeds timed
    assert core.lead_lag[4] == len(pub.datagrams)  # A ahead by 0..10 µs


def test_a_only_and_b_only(clock) -> None:
    for feed in "AB":
        pub, rec = Published(12), Recorder()
        core = make_core(rec)
        for d in pub.datagrams:
            core.on_datagram(feed, d, clock.now_ns)
        assert rec.delivered == list(enumerate(pub.messages, 1))


def test_alternating_loss_is_filled_by_the_other_feed_without_nacks(clock) -> None:
    pub, rec = Published(60), Recorder()
    core = make_core(rec, nack_servers=1)
    actions = []
    for i, d in enumerate(pub.datagrams):
        actions += core.on_datagram("AB"[i % 2], d, clock.advance(100_000))
        actions += run_timers(core, clock, clock.now_ns + 200_000, 100_000)
    assert rec.delivered == list(enumerate(pub.messages, 1))
    assert actions == [] and core.counters["nacks_sent"] == 0
    assert core.feed_counters[0]["missed"] > 0 and core.feed_counters[1]["missed"] > 0


def test_reordered_and_duplicated_datagrams_are_delivered_in_order_once(clock) -> None:
    pub, rec = Published(45), Recorder()
    core = make_core(rec)
    order = [0, 3, 1, 2, 2, 5, 4, 0, 6, 9, 8, 7, 11, 10, 12, 14, 13, 14]
    for i in order:
        core.on_datagram("A", pub.datagrams[i], clock.advance(10_000))
    for d in pub.datagrams:
        core.on_datagram("B", d, clock.advance(10_000))
    assert rec.delivered == list(enumerate(pub.messages, 1))
    assert not rec.events(GapEvent)


def test_the_second_copy_of_a_datagram_held_ahead_of_a_gap_is_counted_without_decoding(clock, monkeypatch) -> None:
    """A handler that fell behind holds datagrams ahead of a gap; the other feed's byte copy of each is a duplicate
    known from its bytes (every message already held), not decoded and merged message by message again. One that
    differs from the first copy, or holds a message not yet held, is still decoded."""
    from linehandler import stream

    pub, rec = Published(40), Recorder()
    core = make_core(rec)
    decoded: list[int] = []
    real = stream.decode_messages
    monkeypatch.setattr(stream, "decode_messages", lambda data, count, table: decoded.append(count) or real(data, count, table))
    d = pub.datagrams
    open_stream(core, pub, clock.now_ns)  # d[0]
    for x in d[2:]:
        core.on_datagram("A", x, clock.advance(1000))  # d[1] lost on both feeds for now
    held_from_a = len(decoded)
    for x in d[2:]:
        core.on_datagram("B", x, clock.advance(1000))
    assert len(decoded) == held_from_a  # B's copies: not decoded again
    b = core.feed_counters[1].as_dict()
    assert b["duplicates"] == sum(int.from_bytes(x[18:20], "big") for x in d[2:]) and b["first_arrivals"] == 0
    core.on_datagram("B", d[1], clock.advance(1000))
    assert rec.delivered == list(enumerate(pub.messages, 1))  # once each, in order
    assert not rec.events(GapEvent)


def test_a_second_copy_still_reports_its_conflict_with_a_message_held_from_elsewhere(clock) -> None:
    """A datagram held ahead of a gap whose first copy met a differing message held before it (a forged or
    misdirected one) is not counted from its bytes: the other feed's copy is compared and its conflict reported
    too, as every copy's is."""
    pub, rec = Published(30), Recorder()
    core = make_core(rec)
    d = pub.datagrams
    open_stream(core, pub, clock.now_ns)  # d[0]: 1..3
    block = bytearray(CODECS.encode(pub.messages[7]))
    block[-1] ^= 1
    core.on_datagram("A", encode_datagram(SESSION, 8, [bytes(block)]), clock.advance(1000))  # held first, and wrong
    core.on_datagram("A", d[2], clock.advance(1000))  # 7..9 on A: a conflict at 8
    core.on_datagram("B", d[2], clock.advance(1000))  # the same bytes on B: its conflict too
    core.on_datagram("A", d[1], clock.advance(1000))
    conflicts = rec.events(SequenceConflict)
    assert [(c.feed, c.first, c.last) for c in conflicts] == [("A", 8, 8), ("B", 8, 8)]
    assert core.feed_counters[1]["conflicts"] == 1 and core.counters["conflicts"] == 2
    assert [s for s, _ in rec.delivered] == list(range(1, 31))[: len(rec.delivered)] and len(rec.delivered) >= 9


def test_gap_filled_by_the_other_feed_before_the_gap_wait_sends_no_nack(clock) -> None:
    pub, rec = Published(9), Recorder()
    core = make_core(rec, nack_servers=2)
    d0, d1, d2 = pub.datagrams
    open_stream(core, pub, clock.now_ns)  # d0
    core.on_datagram("A", d2, clock.now_ns)  # d1 lost on A
    assert core.next_timer() <= clock.now_ns + 10 * MS
    assert run_timers(core, clock, clock.now_ns + MS // 2, 100_000) == []  # still inside the minimum gap-wait
    core.on_datagram("B", d1, clock.now_ns)
    assert run_timers(core, clock, clock.now_ns + 50 * MS) == []
    assert rec.delivered == list(enumerate(pub.messages, 1))
    assert core.counters["gaps_filled_by_other_feed"] == 1 and core.counters["nacks_sent"] == 0


def test_gap_lost_on_both_feeds_is_nacked_after_the_gap_wait_and_filled(clock) -> None:
    pub, rec = Published(12), Recorder()
    core = make_core(rec, nack_servers=1)
    start = clock.now_ns
    for i, d in enumerate(pub.datagrams):
        if i != 1:
            core.on_datagram("A", d, clock.now_ns)
            core.on_datagram("B", d, clock.now_ns)
    actions = run_timers(core, clock, start + 20 * MS, 100_000)
    assert actions == [SendNack(0, SESSION, 4, 3)]
    assert MS <= core.gaps.head().timeout_ns - core.policy.request_timeout_ns - start <= 10 * MS  # the randomised wait
    for dg in pub.answer(actions[0]):
        core.on_unicast(dg, 0, clock.advance(200_000))
    assert rec.delivered == list(enumerate(pub.messages, 1))
    assert [type(e) for e in rec.events()] == [SessionStarted, QualityChanged, Recovered, QualityChanged]
    assert rec.events(QualityChanged)[-1].quality == "OK"


def test_tail_gap_found_from_the_heartbeat(clock) -> None:
    pub, rec = Published(6), Recorder()
    core = make_core(rec, nack_servers=1)
    open_stream(core, pub, clock.now_ns)  # the last datagram is lost on both feeds
    core.on_datagram("B", pub.heartbeat(), clock.now_ns)
    actions = run_timers(core, clock, clock.now_ns + 20 * MS)
    assert actions == [SendNack(0, SESSION, 4, 3)]


def test_nack_timeout_then_the_next_server(clock) -> None:
    pub, rec = Published(6), Recorder()
    policy = RecoveryPolicy(retries_per_server=1, request_timeout_ns=50 * MS, stale_after_ns=10**12)
    core = make_core(rec, nack_servers=3, policy=policy)
    core.on_datagram("A", pub.datagrams[1], clock.now_ns)
    core.on_datagram("A", pub.heartbeat(), clock.now_ns)
    core.expected = 1  # joined at 1: sequence 1..3 are missing
    first = run_timers(core, clock, clock.now_ns + 20 * MS)
    assert len(first) == 1
    later = run_timers(core, clock, clock.now_ns + 400 * MS)
    assert later and later[0].server == (first[0].server + 1) % 3
    assert core.counters["nack_timeouts"] >= 1 and core.counters["server_failovers"] >= 1


@pytest.mark.parametrize(("reason", "retry_after_ms"), [("rate_limited", 80), ("too_far_ahead", 10)])
def test_a_reject_with_retry_after_is_asked_again_when_the_server_says(clock, reason: str, retry_after_ms: int) -> None:
    """Rate limited, or the server's mirror is behind the handler (too far ahead): the gap waits what the
    server says, not less (no hammering) and not a whole request timeout more."""
    pub, rec = Published(6), Recorder()
    core = make_core(rec, nack_servers=1)
    open_stream(core, pub, clock.now_ns)
    core.on_datagram("A", pub.heartbeat(), clock.now_ns)
    (nack,) = run_timers(core, clock, clock.now_ns + 20 * MS)
    core.on_unicast(reject(nack.sequence, nack.count, reason, retry_after_ms * MS), 0, clock.now_ns)
    t_reject = clock.now_ns
    again = []
    while not again:
        again = run_timers(core, clock, clock.now_ns + MS)
    assert again == [nack] and retry_after_ms * MS <= clock.now_ns - t_reject <= (retry_after_ms + 2) * MS
    assert core.counters["rejects"] == 1
    for d in pub.answer(nack):
        core.on_unicast(d, 0, clock.now_ns)
    assert [s for s, _ in rec.delivered] == list(range(1, 7))


def test_too_old_everywhere_is_an_unrecoverable_gap_and_the_stream_carries_on(clock) -> None:
    pub, rec = Published(9), Recorder()
    core = make_core(rec, nack_servers=2)
    open_stream(core, pub, clock.now_ns)
    core.on_datagram("A", pub.datagrams[2], clock.now_ns)
    for _ in range(2):
        actions = run_timers(core, clock, clock.now_ns + 20 * MS)
        for a in actions:
            core.on_unicast(reject(a.sequence, a.count, "too_old"), a.server, clock.now_ns)
    assert rec.delivered == [(s, m) for s, m in enumerate(pub.messages, 1) if s not in (4, 5, 6)]
    gap = rec.events(GapEvent)
    assert len(gap) == 1 and (gap[0].first, gap[0].last) == (4, 6) and gap[0].reason.startswith("too_old")
    order = [x if isinstance(x, GapEvent) else x[0] for x in rec.log if isinstance(x, (tuple, GapEvent))]
    assert order == [1, 2, 3, gap[0], 7, 8, 9]  # told before the next message, never silently
    assert core.counters["messages_lost"] == 3
    assert core.instrument_quality(1) == "MAYBE_STALE"


def test_no_server_means_a_gap_event_after_the_gap_wait(clock) -> None:
    pub, rec = Published(9), Recorder()
    core = make_core(rec)
    open_stream(core, pub, clock.now_ns)
    core.on_datagram("A", pub.datagrams[2], clock.now_ns)
    run_timers(core, clock, clock.now_ns + 20 * MS)
    assert [(e.first, e.last) for e in rec.events(GapEvent)] == [(4, 6)]
    assert [s for s, _ in rec.delivered] == [1, 2, 3, 7, 8, 9]


def test_give_up_after_the_bound_then_resync_from_an_image(clock) -> None:
    pub, rec = Published(9), Recorder()
    policy = RecoveryPolicy(give_up_ns=300 * MS, stale_after_ns=10**12)
    core = make_core(rec, nack_servers=1, image_servers=1, policy=policy)
    open_stream(core, pub, clock.now_ns)
    core.on_datagram("A", pub.datagrams[2], clock.now_ns)
    actions = run_timers(core, clock, clock.now_ns + 400 * MS)  # NACKs go unanswered
    assert any(isinstance(a, SendNack) for a in actions)
    assert RequestImage(0, SESSION) in actions
    assert [(e.first, e.last) for e in rec.events(GapEvent)] == [(4, 6)]
    from mdcommon.image import Image

    truth = Image()
    for m in pub.messages:
        truth.apply(m)
    for m in truth.record_messages(0):
        core.on_image_message(m)
    core.on_image_end(9, clock.now_ns)
    assert core.image == truth and rec.events(ImageApplied)[-1].sequence == 9
    assert core.instrument_quality(1) == "OK" and core.quality == "OK"


def test_late_join_at_every_boundary(clock) -> None:
    """Live data buffered from sequence 7 on; the image is consistent with N."""
    from mdcommon.image import Image

    pub = Published(15)
    for n in (3, 5, 6, 7, 9, 15, 20):  # below the buffer with a hole, just below, at its edge, inside, at the end, past it
        rec = Recorder()
        core = make_core(rec, nack_servers=1, image_servers=1)
        assert core.on_datagram("A", pub.datagrams[2], clock.now_ns) == []  # 7..9: held until the stream continues it
        assert core.on_datagram("B", pub.datagrams[3], clock.now_ns) == [RequestImage(0, SESSION)]  # 10..12 does
        for d in pub.datagrams[4:]:
            core.on_datagram("B", d, clock.now_ns)
        assert rec.delivered == []  # nothing until the image
        img = Image()
        for m in pub.messages[:n]:
            img.apply(m)
        for m in img.record_messages(0):
            core.on_image_message(m)
        core.on_image_end(n, clock.now_ns)
        if n < 6:  # the image is older than the first live message: n+1..6 come by NACK
            (nack,) = run_timers(core, clock, clock.now_ns + 20 * MS)
            assert (nack.sequence, nack.count) == (n + 1, 6 - n)
            for dg in pub.answer(nack):
                core.on_unicast(dg, 0, clock.now_ns)
        assert [s for s, _ in rec.delivered] == list(range(n + 1, 16)), n
        assert rec.events(ImageApplied)[0].sequence == n
        assert not rec.events(GapEvent)
        truth = Image()
        for m in pub.messages[: max(n, 15)]:
            truth.apply(m)
        assert core.image == truth


def test_late_join_without_image_recovers_from_sequence_one(clock) -> None:
    pub, rec = Published(9), Recorder()
    core = make_core(rec, nack_servers=1)
    core.on_datagram("A", pub.datagrams[2], clock.now_ns)
    core.on_datagram("A", pub.heartbeat(), clock.now_ns)  # announces where 7..9 ends: the claim holds
    (nack,) = run_timers(core, clock, clock.now_ns + 20 * MS)
    assert (nack.sequence, nack.count) == (1, 6)
    for dg in pub.answer(nack):
        core.on_unicast(dg, 0, clock.now_ns)
    assert rec.delivered == list(enumerate(pub.messages, 1))


def test_session_change_is_an_event_and_a_fresh_start(clock) -> None:
    old, new = Published(6), Published(6, session=make_session(SCHEMA_FINGERPRINT, 101))
    rec = Recorder()
    core = make_core(rec)
    for d in old.datagrams:
        core.on_datagram("A", d, clock.now_ns)
    core.on_datagram("A", encode_end_of_session(SESSION, 7), clock.now_ns)
    core.on_datagram("A", new.datagrams[0], clock.now_ns)
    core.on_datagram("B", new.datagrams[1], clock.now_ns)  # continues the first: the new session is believed
    core.on_datagram("B", old.datagrams[1], clock.now_ns)  # a straggler of the old session
    kinds = [type(x).__name__ if not isinstance(x, tuple) else x[0] for x in rec.log]
    assert kinds == ["SessionStarted", 1, 2, 3, 4, 5, 6, "SessionEnded", "SessionChanged", "SessionStarted", 1, 2, 3, 4, 5, 6]
    assert rec.events(SessionChanged)[0] == SessionChanged(SESSION, new.session)
    assert rec.events(SessionEnded)[0] == SessionEnded(SESSION, 7)
    assert core.feed_counters[1]["old_session"] == 1


def test_malformed_and_wrong_schema_datagrams_are_counted_and_never_decoded(clock) -> None:
    pub, rec = Published(6), Recorder()
    core = make_core(rec)
    other = bytearray(pub.datagrams[0])
    other[0:4] = b"ZZZZ"  # another schema version's tag
    core.on_datagram("A", bytes(other), clock.now_ns)
    core.on_datagram("A", bytes(other), clock.now_ns)
    core.on_datagram("A", pub.datagrams[0][:-5], clock.now_ns)  # truncated
    core.on_datagram("A", b"\x00" * 7, clock.now_ns)
    assert rec.delivered == []
    assert rec.events() == [SchemaMismatch("A", bytes(other[:10]), SESSION[:4])]  # loud, once
    c = core.feed_counters[0]
    assert (c["schema_mismatch"], c["malformed"]) == (2, 2)
    for d in pub.datagrams:
        core.on_datagram("B", d, clock.now_ns)
    assert rec.delivered == list(enumerate(pub.messages, 1))


def test_stale_feeds_and_stream(clock) -> None:
    pub, rec = Published(6), Recorder()
    core = make_core(rec, policy=RecoveryPolicy(stale_after_ns=100 * MS))
    open_stream(core, pub, clock.now_ns)
    core.on_datagram("B", pub.datagrams[0], clock.now_ns)
    run_timers(core, clock, clock.now_ns + 50 * MS)
    core.on_datagram("A", pub.datagrams[1], clock.now_ns)
    run_timers(core, clock, clock.now_ns + 60 * MS)
    assert rec.events(FeedStale) == [FeedStale("B", 100 * MS)]
    assert core.quality == "OK"
    run_timers(core, clock, clock.now_ns + 60 * MS)
    assert [e.feed for e in rec.events(FeedStale)] == ["B", "A"] and core.quality == "STALE"
    core.on_datagram("B", pub.datagrams[1], clock.now_ns)
    assert rec.events(FeedRecovered) == [FeedRecovered("B")] and core.quality == "OK"


def test_an_instrument_a_relay_marked_maybe_stale_is_maybe_stale_until_the_mark_is_cleared(clock) -> None:
    """A relay upstream lost messages (relay/channel_io.py): the field update `maybe_stale` = 1 makes the
    instrument MAYBE_STALE at the handler, the others stay OK, and the relay's 0 clears it."""
    from decoders.schema.fields import FIELDS_BY_NAME, VALUE_BOOLEAN

    flag = FIELDS_BY_NAME["maybe_stale"].field_id
    rec = Recorder()
    core = make_core(rec)
    quotes = [(b"Q", 1, 1, 100, 1, 101, 1), (b"Q", 1, 2, 100, 1, 101, 1)]
    marks = [(b"F", 2, 1, flag, VALUE_BOOLEAN, 1)]
    clears = [(b"F", 3, 1, flag, VALUE_BOOLEAN, 0)]
    seq = 1
    for msgs in (quotes, marks):
        core.on_datagram("A", encode_datagram(SESSION, seq, [CODECS.encode(m) for m in msgs]), clock.now_ns)
        seq += len(msgs)
    assert (core.instrument_quality(1), core.instrument_quality(2)) == ("MAYBE_STALE", "OK")
    core.on_datagram("A", encode_datagram(SESSION, seq, [CODECS.encode(m) for m in clears]), clock.now_ns)
    assert core.instrument_quality(1) == "OK"
