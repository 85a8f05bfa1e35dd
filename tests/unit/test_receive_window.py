"""What one forged or misplaced datagram can do to the handler core: nothing that costs real data.

Each case was seen against the core before the receive window and the session rules
(linehandler/claims.py, the module rules of linehandler/session.py): the numbers in the
docstrings are issue 16's list.
"""

from __future__ import annotations

from decoders import SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import encode_datagram, encode_end_of_session, encode_heartbeat
from linehandler.events import (
    BufferOverflow,
    GapEvent,
    ImageApplied,
    SchemaMismatch,
    SendNack,
    SessionChanged,
    SessionConflict,
)
from linehandler.session import RecoveryPolicy
from tests.unit.handler_harness import MS, SESSION, Published, Recorder, make_core, open_stream, run_timers, step_and_answer

FORGED_INSTANCE = make_session(SCHEMA_FINGERPRINT, 36**6 - 1)  # ZZZZZZ: newer than any real instance


def _moved(datagram: bytes, sequence: int | None = None, session: bytes | None = None) -> bytes:
    """A copy of a real datagram with its header rewritten, as a hostile host would send it."""
    d = bytearray(datagram)
    if session is not None:
        d[0:10] = session
    if sequence is not None:
        d[10:18] = sequence.to_bytes(8, "big")
    return bytes(d)


def _sequences(rec: Recorder) -> list[int]:
    return [s for s, _ in rec.delivered]


def test_a_sequence_0_heartbeat_opens_no_gap_and_asks_for_nothing(clock) -> None:
    """1: it opened Gap(1, -1) and sent SendNack(count=-1), which crashed the daemon's encoder."""
    pub, rec = Published(30), Recorder()
    core = make_core(rec, nack_servers=1)
    actions = core.on_datagram("A", encode_heartbeat(SESSION, 0), clock.now_ns)
    actions += open_stream(core, pub, clock.now_ns)
    actions += core.on_datagram("B", encode_heartbeat(SESSION, 0), clock.now_ns)
    actions += run_timers(core, clock, clock.now_ns + 50 * MS)
    assert not actions and not core.gaps
    assert core.feed_counters[0]["malformed"] == 1 and core.feed_counters[1]["malformed"] == 1
    for d in pub.datagrams[1:]:
        core.on_datagram("A", d, clock.now_ns)
    assert _sequences(rec) == list(range(1, 31)) and not rec.events(GapEvent)


def test_data_a_billion_ahead_is_held_never_delivered_and_costs_the_real_stream_nothing(clock) -> None:
    """2: one forged quote at 10^9 gave GapEvent(3001..999,999,999), was delivered, and every later real
    datagram was dropped as a duplicate."""
    pub, rec = Published(60), Recorder()
    core = make_core(rec, nack_servers=1)
    for d in pub.datagrams[:5]:
        core.on_datagram("A", d, clock.now_ns)
    forged = _moved(pub.datagrams[5], 10**9)
    assert core.on_datagram("A", forged, clock.now_ns) == []
    assert core.on_datagram("B", forged, clock.now_ns) == []  # copied to both feeds: still one claim, uncorroborated
    assert not core.gaps and core.horizon == 16
    sent = []
    for d in pub.datagrams[5:]:
        core.on_datagram("A", d, clock.now_ns)
        sent += step_and_answer(core, pub, clock, 2)
    assert _sequences(rec) == list(range(1, 61)) and not rec.events(GapEvent) and not sent
    # A: the forged datagram, and the stream's first datagram (held until the second continued it)
    assert core.feed_counters[0]["unconfirmed"] == 2 and core.feed_counters[1]["unconfirmed"] == 1


def test_a_far_ahead_heartbeat_is_held_and_opens_no_gap(clock) -> None:
    pub, rec = Published(30), Recorder()
    core = make_core(rec, nack_servers=1)
    open_stream(core, pub, clock.now_ns)
    for feed in "AB":
        core.on_datagram(feed, encode_heartbeat(SESSION, 10**9), clock.now_ns)
    assert not core.gaps and core.horizon == 4
    for d in pub.datagrams[1:]:
        core.on_datagram("B", d, clock.now_ns)
    step_and_answer(core, pub, clock, 100)
    assert _sequences(rec) == list(range(1, 31)) and not rec.events(GapEvent)


def test_a_real_stream_far_ahead_after_an_outage_is_believed_once_it_continues(clock) -> None:
    """Both feeds lost for longer than the window: the first datagram after the outage waits for the
    next one (any feed), then the outage is a gap like any other and is recovered."""
    pub, rec = Published(6000, per=1), Recorder()
    core = make_core(rec, nack_servers=1, policy=RecoveryPolicy(stale_after_ns=10**13, min_ahead_messages=1000))
    open_stream(core, pub, clock.now_ns)
    core.on_datagram("A", pub.datagrams[3000], clock.now_ns)  # sequence 3001: 2999 beyond the horizon
    assert not core.gaps and _sequences(rec) == [1]
    core.on_datagram("B", pub.datagrams[3001], clock.now_ns)  # continues it
    assert core.gaps.missing() == 2999 and core.counters["claims_corroborated"] == 2  # the opening, and this
    for d in pub.datagrams[3002:]:
        core.on_datagram("A", d, clock.now_ns)
    step_and_answer(core, pub, clock, 200)
    assert _sequences(rec) == list(range(1, 6001)) and not rec.events(GapEvent)


def test_a_stream_joined_mid_way_starts_only_once_a_second_datagram_continues_the_first(clock) -> None:
    """A forged datagram seen first would otherwise fix where the stream starts (a late join at 10^9)."""
    pub, rec = Published(30), Recorder()
    core = make_core(rec, nack_servers=1)
    core.on_datagram("A", _moved(pub.datagrams[4], 10**9), clock.now_ns)
    core.on_datagram("B", _moved(pub.datagrams[4], 10**9), clock.now_ns)
    core.on_datagram("A", pub.datagrams[3], clock.now_ns)  # 10..12
    assert core.expected is None
    core.on_datagram("A", pub.datagrams[4], clock.now_ns)  # 13..15 continues 10..12: the stream starts at 10
    assert core.expected == 1 and core.horizon == 16  # no image server: 1..9 by NACK
    for d in pub.datagrams[5:]:
        core.on_datagram("A", d, clock.now_ns)
    step_and_answer(core, pub, clock, 50)
    assert _sequences(rec) == list(range(1, 31)) and not rec.events(GapEvent)


def test_an_idle_plant_is_joined_from_its_heartbeat_repeated_on_one_feed_not_from_copies(clock) -> None:
    pub, rec = Published(9), Recorder()
    core = make_core(rec, nack_servers=1)
    core.on_datagram("A", pub.heartbeat(), clock.now_ns)
    core.on_datagram("B", pub.heartbeat(), clock.now_ns)  # the same announcement on the other feed: not enough
    assert core.expected is None
    clock.advance(1000 * MS)
    core.on_datagram("A", pub.heartbeat(), clock.now_ns)  # the plant's next heartbeat on A
    assert core.expected == 1 and core.gaps.missing() == 9


def test_a_forged_newer_session_instance_is_a_conflict_not_a_restart(clock) -> None:
    """3: the handler switched to the forged session and refused the real plant as old_session for good."""
    pub, rec = Published(60), Recorder()
    core = make_core(rec, nack_servers=1)
    for d in pub.datagrams[:5]:
        core.on_datagram("A", d, clock.now_ns)
    for forged in (encode_heartbeat(FORGED_INSTANCE, 1), _moved(pub.datagrams[5], session=FORGED_INSTANCE)):
        for feed in "AB":
            core.on_datagram(feed, forged, clock.now_ns)
    for d in pub.datagrams[5:]:
        core.on_datagram("B", d, clock.advance(MS))
    assert _sequences(rec) == list(range(1, 61)) and not rec.events(GapEvent)
    assert rec.events(SessionConflict) == [SessionConflict("A", SESSION, FORGED_INSTANCE)]  # once
    assert not rec.events(SessionChanged) and core.session == SESSION
    assert core.feed_counters[0]["other_session"] == 2 and core.feed_counters[1]["other_session"] == 2


def test_a_stray_plant_on_the_same_groups_costs_nothing_and_is_reported(clock) -> None:
    """The mistake seen: a second plant (another seed, a newer instance) for a while, then it ends."""
    real = Published(300)
    stray = Published(300, session=make_session(SCHEMA_FINGERPRINT, 5000))
    rec = Recorder()
    core = make_core(rec, nack_servers=1)
    for i, d in enumerate(real.datagrams):
        core.on_datagram("A", d, clock.advance(MS))
        core.on_datagram("B", d, clock.now_ns)
        if 20 <= i < 60:
            core.on_datagram("A", stray.datagrams[i - 20], clock.now_ns)
            core.on_datagram("B", stray.datagrams[i - 20], clock.now_ns)
        if i == 60:
            core.on_datagram("A", encode_end_of_session(stray.session, 121), clock.now_ns)
    assert _sequences(rec) == list(range(1, 301)) and not rec.events(GapEvent)
    assert [type(e).__name__ for e in rec.events(SessionConflict)] == ["SessionConflict"]
    assert core.session == real.session


def test_a_plant_killed_and_restarted_is_followed_once_its_old_session_is_silent_with_nothing_lost(clock) -> None:
    """kill -9: no end of session. The new session is held while the old one may still be alive, then
    adopted from its first datagram."""
    old, new = Published(30), Published(90, session=make_session(SCHEMA_FINGERPRINT, 101))
    rec = Recorder()
    core = make_core(rec, policy=RecoveryPolicy(stale_after_ns=3000 * MS))
    for d in old.datagrams:
        core.on_datagram("A", d, clock.advance(MS))
    for d in new.datagrams:
        core.on_datagram("A", d, clock.advance(100 * MS))
    seqs = _sequences(rec)
    assert seqs == list(range(1, 31)) + list(range(1, 91))
    assert rec.events(SessionChanged) == [SessionChanged(old.session, new.session)]
    assert not rec.events(GapEvent)


def test_a_clean_restart_is_followed_at_once(clock) -> None:
    old, new = Published(30), Published(30, session=make_session(SCHEMA_FINGERPRINT, 101))
    rec = Recorder()
    core = make_core(rec)
    for d in old.datagrams:
        core.on_datagram("A", d, clock.advance(MS))
    core.on_datagram("A", old.heartbeat(), clock.now_ns)
    core.on_datagram("A", encode_end_of_session(old.session, old.next_sequence), clock.now_ns)
    for d in new.datagrams:
        core.on_datagram("B", d, clock.advance(MS))
    assert _sequences(rec) == list(range(1, 31)) * 2 and len(rec.events(SessionChanged)) == 1


def test_a_forged_end_of_session_is_withdrawn_by_the_data_that_follows_it(clock) -> None:
    pub, rec = Published(30), Recorder()
    core = make_core(rec)
    for d in pub.datagrams[:3]:
        core.on_datagram("A", d, clock.now_ns)
    core.on_datagram("B", encode_end_of_session(SESSION, 10), clock.now_ns)
    assert core.ended
    for d in pub.datagrams[3:]:
        core.on_datagram("A", d, clock.now_ns)
    assert not core.ended and core.counters["end_withdrawn"] == 1
    core.on_datagram("A", _moved(pub.datagrams[0], session=FORGED_INSTANCE), clock.now_ns)
    assert core.session == SESSION and _sequences(rec) == list(range(1, 31))


def test_an_image_slower_than_give_up_delivers_nothing_early_and_nothing_twice(clock) -> None:
    """4: gaps were given up while joining, buffered data was delivered before the image, then the image
    moved `expected` backwards: 10-36 delivered twice, 19-21 after a GapEvent said they were lost."""
    from mdcommon.image import Image

    pub, rec = Published(120), Recorder()
    policy = RecoveryPolicy(give_up_ns=1000 * MS, stale_after_ns=10**13)
    core = make_core(rec, nack_servers=1, image_servers=1, policy=policy)
    core.on_datagram("A", pub.datagrams[3], clock.now_ns)  # 10..12
    core.on_datagram("A", pub.datagrams[4], clock.now_ns)  # joining from an image
    for i, d in enumerate(pub.datagrams[5:30]):
        if i % 3 != 1:  # some lost on both feeds while joining
            core.on_datagram("A", d, clock.now_ns)
        run_timers(core, clock, clock.now_ns + 100 * MS)
    assert rec.delivered == [] and not rec.events(GapEvent)  # 2.5 s in, far past give_up: nothing yet
    img = Image()
    for m in pub.messages[:20]:
        img.apply(m)
    for m in img.record_messages(0):
        core.on_image_message(m)
    core.on_image_end(20, clock.now_ns)
    for d in pub.datagrams[30:]:
        core.on_datagram("A", d, clock.now_ns)
    step_and_answer(core, pub, clock, 200)
    assert _sequences(rec) == list(range(21, 121)) and not rec.events(GapEvent)
    assert rec.events(ImageApplied)[0].sequence == 20


def test_the_buffer_bound_holds_while_joining(clock) -> None:
    """5: 2,970 messages held against a limit of 100, one BufferOverflow per datagram."""
    pub, rec = Published(3000), Recorder()
    core = make_core(rec, nack_servers=1, image_servers=1, policy=RecoveryPolicy(max_buffer_messages=100, stale_after_ns=10**13))
    for d in pub.datagrams:
        core.on_datagram("A", d if d is not pub.datagrams[0] else pub.datagrams[1], clock.now_ns)
        assert len(core.buffer) <= 100
    assert len(rec.events(BufferOverflow)) < 100


def test_other_schemas_are_reported_by_name_a_bounded_number_of_times(clock) -> None:
    """10: refused_tags grew by one entry and one WARN line per distinct forged session name."""
    pub, rec = Published(3), Recorder()
    core = make_core(rec)
    for i in range(1000):
        d = bytearray(pub.datagrams[0])
        d[0:10] = b"ZZZZ%06d" % i
        core.on_datagram("A", bytes(d), clock.now_ns)
    assert len(core.refused_tags) == core.policy.max_refused_sessions == len(rec.events(SchemaMismatch))
    assert core.feed_counters[0]["schema_mismatch"] == 1000


def test_a_retransmission_beyond_the_horizon_widens_nothing(clock) -> None:
    pub, rec = Published(30), Recorder()
    core = make_core(rec, nack_servers=1)
    open_stream(core, pub, clock.now_ns)
    core.on_unicast(encode_datagram(SESSION, 4, [b"\xff"] * 0 + pub.journal.get(4, 27)[:20]), 0, clock.now_ns)
    assert core.horizon == 4 and not core.gaps and core.counters["unrequested"] == 20
    assert _sequences(rec) == [1, 2, 3]


def test_no_nack_ever_asks_for_an_empty_or_oversized_range(clock) -> None:
    pub, rec = Published(3000, per=1), Recorder()
    core = make_core(rec, nack_servers=1)
    open_stream(core, pub, clock.now_ns)
    core.on_datagram("A", pub.datagrams[2999], clock.now_ns)
    core.on_datagram("A", encode_heartbeat(SESSION, 3001), clock.now_ns)
    sent = [a for a in run_timers(core, clock, clock.now_ns + 50 * MS) if isinstance(a, SendNack)]
    assert sent and all(1 <= a.count <= core.policy.max_request_messages for a in sent)


def test_a_forged_announcement_inside_the_window_is_withdrawn_by_the_plants_next_heartbeat(clock) -> None:
    """The plant is idle; a forged heartbeat announces 500 messages more. The plant's own heartbeat, which only
    moves forward, announces less: the range is withdrawn before anything is given up or reported."""
    pub, rec = Published(30), Recorder()
    core = make_core(rec, nack_servers=1, policy=RecoveryPolicy(give_up_ns=5000 * MS, stale_after_ns=10**13))
    for d in pub.datagrams:
        core.on_datagram("A", d, clock.now_ns)
    core.on_datagram("B", encode_heartbeat(SESSION, 531), clock.now_ns)
    assert core.gaps.missing() == 500
    clock.advance(1000 * MS)
    core.on_datagram("A", pub.heartbeat(), clock.now_ns)  # the plant, still idle: next is 31
    assert not core.gaps and core.horizon == 31 and core.counters["announced_withdrawn"] == 1
    run_timers(core, clock, clock.now_ns + 10_000 * MS, 10 * MS)
    assert not rec.events(GapEvent) and _sequences(rec) == list(range(1, 31))
