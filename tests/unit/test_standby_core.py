"""The hot-standby role decision on a fake clock: listen, mirror, take over on silence, step back, hand over."""

from __future__ import annotations

from decoders import SCHEMA_FINGERPRINT, make_session
from tests.unit.handler_harness import MS, run_timers
from tickerplant.standby import ACTIVE, ENDED, LISTENING, STANDBY, StandbyCore, StartSession, StepBack, TakeOver

S7 = make_session(SCHEMA_FINGERPRINT, 7)
S8 = make_session(SCHEMA_FINGERPRINT, 8)


def test_alone_at_start_the_primary_publishes_after_one_timeout(clock) -> None:
    core = StandbyCore(0, 50 * MS, clock.now_ns)
    assert core.state == LISTENING and core.next_timer() == clock.now_ns + 50 * MS
    start = clock.now_ns
    assert run_timers(core, clock, start + 49 * MS) == []
    assert run_timers(core, clock, start + 50 * MS) == [StartSession(-1, "no active plant heard at start-up")]
    assert core.state == ACTIVE
    core.started(S7, 2)
    assert core.session == S7 and core.own_next == 2


def test_a_standby_priority_listens_longer_at_start(clock) -> None:
    core = StandbyCore(2, 50 * MS, clock.now_ns)
    assert core.next_timer() == clock.now_ns + 150 * MS
    assert core.takeover_wait_ns == 100 * MS


def test_hearing_an_active_plant_at_start_makes_even_the_primary_a_standby(clock) -> None:
    core = StandbyCore(0, 50 * MS, clock.now_ns)
    assert core.on_peer(S7, 1000, False, clock.advance_ms(10)) == []
    assert (core.state, core.session, core.peer_next) == (STANDBY, S7, 1000)
    for i in range(20):  # the active plant keeps sending: no takeover, however long
        core.on_peer(S7, 1000 + 10 * i, False, clock.advance_ms(30))
        assert core.on_timer(clock.now_ns) == []
    assert core.peer_next == 1190


def test_takes_over_from_the_next_sequence_after_the_silence(clock) -> None:
    core = StandbyCore(1, 50 * MS, clock.now_ns)
    core.on_peer(S7, 500, False, clock.advance_ms(1))
    core.on_peer(S7, 530, False, clock.advance_ms(1))
    core.on_peer(S7, 520, False, clock.advance_ms(1))  # a late copy on the other feed: never moves it back
    last = clock.now_ns
    assert run_timers(core, clock, last + 49 * MS) == []
    assert run_timers(core, clock, last + 50 * MS) == [TakeOver(S7, 530, 50 * MS)]
    assert core.state == ACTIVE and core.own_next == 530 and core.takeovers == 1


def test_heartbeats_keep_the_standby_waiting(clock) -> None:
    core = StandbyCore(1, 50 * MS, clock.now_ns)
    core.on_peer(S7, 530, False, clock.now_ns)
    for _ in range(10):
        assert run_timers(core, clock, clock.now_ns + 40 * MS) == []
        core.on_peer(S7, 530, False, clock.now_ns)  # heartbeat: same next sequence
    assert core.state == STANDBY


def test_active_plant_steps_back_when_another_is_ahead(clock) -> None:
    core = StandbyCore(0, 50 * MS, clock.now_ns)
    run_timers(core, clock, clock.now_ns + 50 * MS)
    core.started(S7, 2)
    core.on_published(900)
    assert core.on_peer(S7, 880, False, clock.advance_ms(1)) == []  # behind us (a takeover catching up): harmless
    assert core.on_peer(S7, 900, False, clock.advance_ms(1)) == []  # same position, priority 0 keeps going
    assert core.on_peer(S7, 930, False, clock.advance_ms(1)) == [StepBack("another active plant is ahead (930 > 900)", 930, 900)]
    assert core.state == STANDBY and core.step_backs == 1


def test_on_a_tie_the_lower_priority_steps_back(clock) -> None:
    core = StandbyCore(1, 50 * MS, clock.now_ns)
    core.on_peer(S7, 100, False, clock.now_ns)
    run_timers(core, clock, clock.now_ns + 50 * MS)
    core.on_published(120)
    [a] = core.on_peer(S7, 120, False, clock.advance_ms(1))
    assert isinstance(a, StepBack) and core.state == STANDBY


def test_a_newer_session_replaces_the_older_and_an_older_one_is_ignored(clock) -> None:
    core = StandbyCore(1, 50 * MS, clock.now_ns)
    core.on_peer(S8, 40, False, clock.now_ns)
    assert core.on_peer(S7, 5000, False, clock.advance_ms(1)) == []
    assert (core.session, core.peer_next, core.older_session_datagrams) == (S8, 40, 1)
    run_timers(core, clock, clock.now_ns + 50 * MS)
    assert core.state == ACTIVE
    S9 = make_session(SCHEMA_FINGERPRINT, 9)
    [a] = core.on_peer(S9, 3, False, clock.advance_ms(1))
    assert isinstance(a, StepBack) and (core.state, core.session, core.peer_next) == (STANDBY, S9, 3)


def test_a_diverged_standby_starts_a_new_session_instead_of_continuing(clock) -> None:
    core = StandbyCore(1, 50 * MS, clock.now_ns)
    core.on_peer(S7, 100, False, clock.now_ns)
    core.on_divergence()
    assert run_timers(core, clock, clock.now_ns + 50 * MS) == [
        StartSession(8, "this plant's input diverged from the session it mirrored")]


def test_a_standby_that_cannot_regenerate_starts_a_new_session(clock) -> None:
    core = StandbyCore(1, 50 * MS, clock.now_ns)
    core.on_peer(S7, 100, False, clock.now_ns)
    core.regenerable = False
    [a] = run_timers(core, clock, clock.now_ns + 50 * MS)
    assert isinstance(a, StartSession) and a.instance == 8


def test_end_of_session_from_the_active_plant_ends_the_group(clock) -> None:
    core = StandbyCore(1, 50 * MS, clock.now_ns)
    core.on_peer(S7, 100, False, clock.now_ns)
    core.on_peer(S7, 120, True, clock.advance_ms(1))
    assert core.state == ENDED and core.next_timer() is None
    assert run_timers(core, clock, clock.now_ns + 500 * MS) == []
    assert core.on_peer(S7, 130, False, clock.now_ns) == []


def test_handover_falls_silent_and_holds_off_for_two_waits(clock) -> None:
    core = StandbyCore(0, 50 * MS, clock.now_ns)
    run_timers(core, clock, clock.now_ns + 50 * MS)
    core.started(S7, 2)
    core.on_published(700)
    t = clock.now_ns
    assert core.handover(t) and core.state == STANDBY and core.peer_next == 700
    assert core.next_timer() == t + 100 * MS
    # the standby took over and publishes: we mirror it
    core.on_peer(S7, 730, False, clock.advance_ms(55))
    assert run_timers(core, clock, clock.now_ns + 45 * MS) == []
    assert core.state == STANDBY
    # alone (nobody took over): after the hold-off it resumes from where it stopped, no gap
    core2 = StandbyCore(0, 50 * MS, clock.now_ns)
    run_timers(core2, clock, clock.now_ns + 50 * MS)
    core2.started(S7, 2)
    core2.on_published(800)
    t2 = clock.now_ns
    core2.handover(t2)
    assert run_timers(core2, clock, t2 + 99 * MS) == []
    assert run_timers(core2, clock, t2 + 100 * MS) == [TakeOver(S7, 800, 100 * MS)]


def test_handover_only_from_active(clock) -> None:
    core = StandbyCore(1, 50 * MS, clock.now_ns)
    assert not core.handover(clock.now_ns) and core.state == LISTENING


def test_an_active_plant_that_sees_its_session_ended_by_another_ends_too(clock) -> None:
    core = StandbyCore(0, 50 * MS, clock.now_ns)
    run_timers(core, clock, clock.now_ns + 50 * MS)
    core.started(S7, 2)
    core.on_published(300)
    assert core.on_peer(S7, 300, True, clock.advance_ms(1)) == [] and core.state == ENDED
