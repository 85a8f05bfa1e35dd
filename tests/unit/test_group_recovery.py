"""The handler core with a request group (anonymous recovery) on a fake clock: the back-off, suppression by
a heard request, and the bounds that keep another requester from holding a gap's own NACK back."""

from __future__ import annotations

import statistics

from decoders import CODECS
from decoders.moldudp64 import encode_datagram, encode_request
from linehandler.events import GapEvent, ImageApplied, Recovered, SendNack
from linehandler.session import RecoveryPolicy
from tests.unit.handler_harness import MS, SESSION, Published, Recorder, make_core, open_stream, run_timers

POLICY = dict(stale_after_ns=10_000 * MS, request_timeout_ns=200 * MS)


def lossy_core(seed: int = 1, unicast: int = 0):
    """A core on a group (server 0) plus `unicast` listed servers, with datagram 1 lost on both feeds."""
    rec = Recorder()
    core = make_core(rec, policy=RecoveryPolicy(**POLICY), nack_servers=1 + unicast, request_group=True, seed=seed)
    pub = Published(30)
    open_stream(core, pub, 0)
    core.on_datagram("A", pub.datagrams[2], 0)  # datagram 1 missing: a gap
    return rec, core, pub


def reject(seq: int, count: int, reason: int, retry_ns: int) -> bytes:
    return encode_datagram(SESSION, 0, [CODECS.encode((b"J", 0, reason, seq, count, retry_ns, 1, 100))])


def test_the_first_nack_goes_to_the_group_after_a_backoff_weighted_to_the_end_of_the_gap_wait() -> None:
    waits = []
    for seed in range(300):
        _, core, _ = lossy_core(seed)
        (g,) = core.gaps
        assert g.server == 0
        waits.append(g.due_ns)
    p = RecoveryPolicy()
    assert min(waits) >= p.gap_wait_min_ns and max(waits) <= p.gap_wait_min_ns + p.group_backoff_ns
    # truncated exponential, lambda = ln 8 + 1: median at ln(0.5 (e^lambda - 1) + 1) / lambda = 79 % of the window
    median = (statistics.median(waits) - p.gap_wait_min_ns) / p.group_backoff_ns
    assert 0.74 < median < 0.84, median
    early = sum(w < p.gap_wait_min_ns + 0.2 * p.group_backoff_ns for w in waits) / len(waits)
    assert early < 0.07, early  # few handlers ask early, so the first one is usually alone


def test_a_heard_request_for_the_gap_stands_for_ours_and_its_repair_fills_the_gap() -> None:
    rec, core, pub = lossy_core()
    first = pub.first_seq(1)
    count = pub.first_seq(2) - first
    assert core.on_request_heard(encode_request(SESSION, first, count + 2), MS // 2) == []
    sent = run_timers(core, _Clock(MS // 2), 50 * MS)
    assert not [a for a in sent if isinstance(a, SendNack)]
    assert core.counters["nacks_suppressed"] == 1 and core._in_flight() == 0
    core.on_unicast(pub.datagrams[1], 0, 50 * MS)  # the repair the other handler asked for, on the repair group
    assert not core.gaps and [s for s, _ in rec.delivered] == list(range(pub.first_seq(0), pub.first_seq(3)))
    (r,) = rec.events(Recovered)
    assert (r.first, r.server) == (first, 0)
    assert core.feed_counters[2]["first_arrivals"] == count


def test_a_request_that_does_not_start_where_the_gap_starts_does_not_suppress_it() -> None:
    _, core, pub = lossy_core()
    first = pub.first_seq(1)
    core.on_request_heard(encode_request(SESSION, first + 1, 5), MS // 2)
    core.on_request_heard(encode_request(SESSION, first - 1, 2000), MS // 2)  # a stranger's wide range: maybe never answered
    core.on_request_heard(encode_request(SESSION, first, 0), MS // 2)  # count 0: an image query, not a NACK
    sent = run_timers(core, _Clock(MS // 2), 30 * MS)
    assert [(a.server, a.sequence) for a in sent if isinstance(a, SendNack)] == [(0, first)]


def test_a_heard_request_left_unanswered_makes_us_ask_after_a_quarter_of_a_request_timeout() -> None:
    _, core, pub = lossy_core()
    first = pub.first_seq(1)
    clock = _Clock(MS // 2)
    core.on_request_heard(encode_request(SESSION, first, 3), clock.now_ns)
    assert not run_timers(core, clock, 50 * MS)
    nacks = [a for a in run_timers(core, clock, 75 * MS) if isinstance(a, SendNack)]
    assert [(a.server, a.sequence) for a in nacks] == [(0, first)]


def test_a_flood_of_heard_requests_delays_our_nack_by_one_timeout_at_most() -> None:
    _, core, pub = lossy_core()
    first = pub.first_seq(1)
    clock = _Clock(0)
    nacks: list[SendNack] = []
    while clock.now_ns < 2_000 * MS:  # another host repeats a request for our range every ms, and nobody answers
        core.on_request_heard(encode_request(SESSION, first, 3), clock.now_ns)
        nacks += [a for a in run_timers(core, clock, clock.now_ns + MS) if isinstance(a, SendNack)]
    assert nacks and nacks[0].sequence == first
    sent_at = core.counters["nacks_sent"]
    assert sent_at >= 3, sent_at  # ours go on, with backoff, whatever is heard
    assert core.counters["nacks_suppressed"] <= sent_at + 1  # a heard request stands in once per own attempt


def test_a_rate_limited_reject_of_a_heard_request_sends_us_to_ask_ourselves() -> None:
    _, core, pub = lossy_core()
    first = pub.first_seq(1)
    clock = _Clock(MS // 2)
    core.on_request_heard(encode_request(SESSION, first, 3), clock.now_ns)
    core.on_unicast(reject(first, 3, ord("L"), 5_000 * MS), 0, clock.now_ns)  # the requester we heard is limited, not us
    nacks = [a for a in run_timers(core, clock, 25 * MS) if isinstance(a, SendNack)]
    assert [a.sequence for a in nacks] == [first]


def test_our_own_request_looped_back_changes_nothing() -> None:
    _, core, pub = lossy_core()
    clock = _Clock(0)
    (nack,) = [a for a in run_timers(core, clock, 25 * MS) if isinstance(a, SendNack)]
    core.on_request_heard(encode_request(nack.session, nack.sequence, nack.count), clock.now_ns)
    assert core.counters["nacks_suppressed"] == 0 and core._in_flight() == 1


def test_an_unanswering_group_fails_over_to_a_listed_server() -> None:
    _, core, pub = lossy_core(unicast=1)
    clock = _Clock(0)
    nacks = [a for a in run_timers(core, clock, 2_000 * MS) if isinstance(a, SendNack)]
    servers = [a.server for a in nacks]
    assert servers[0] == 0 and 1 in servers, servers


class _Clock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def advance(self, ns: int) -> int:
        self.now_ns += ns
        return self.now_ns


def test_a_request_heard_before_we_see_the_gap_stands_for_ours_when_we_do() -> None:
    rec = Recorder()
    core = make_core(rec, policy=RecoveryPolicy(**POLICY), nack_servers=1, request_group=True)
    pub = Published(30)
    open_stream(core, pub, 0)
    first = pub.first_seq(1)
    core.on_request_heard(encode_request(SESSION, first, 3), MS)  # another handler is ahead of us: it saw the loss first
    core.on_datagram("A", pub.datagrams[2], 2 * MS)  # now we do
    (g,) = core.gaps
    assert g.outstanding and g.by_other and core._in_flight() == 0
    assert not [a for a in run_timers(core, _Clock(2 * MS), 40 * MS) if isinstance(a, SendNack)]
    core.on_unicast(pub.datagrams[1], 0, 40 * MS)
    assert not core.gaps and rec.delivered[-1][0] == pub.first_seq(3) - 1


def test_a_repair_on_the_group_ahead_of_our_copy_of_the_feed_is_kept_like_feed_data() -> None:
    rec = Recorder()
    core = make_core(rec, policy=RecoveryPolicy(**POLICY), nack_servers=1, request_group=True)
    pub = Published(30)
    open_stream(core, pub, 0)
    core.on_unicast(pub.datagrams[2], 0, MS)  # repaired for another handler; our feeds have not brought 1 or 2 yet
    assert core.counters["unrequested"] == 0 and len(core.buffer) == pub.first_seq(3) - pub.first_seq(2)
    (g,) = core.gaps
    assert (g.first, g.last) == (pub.first_seq(1), pub.first_seq(2) - 1)
    core.on_datagram("B", pub.datagrams[1], 2 * MS)
    assert not core.gaps and rec.delivered[-1][0] == pub.first_seq(3) - 1
    assert core.feed_counters[2]["first_arrivals"] == pub.first_seq(3) - pub.first_seq(2)


def test_one_too_old_from_the_group_is_one_servers_word_and_the_group_is_asked_again() -> None:
    rec, core, pub = lossy_core()
    clock = _Clock(0)
    (nack,) = [a for a in run_timers(core, clock, 25 * MS) if isinstance(a, SendNack)]
    core.on_unicast(reject(nack.sequence, nack.count, ord("O"), 0), 0, clock.now_ns)  # a server that joined late
    assert core.gaps and not core.gaps.head().abandoned
    again: list = []
    while not again and clock.now_ns < 2_000 * MS:
        again = [a for a in run_timers(core, clock, clock.now_ns + MS) if isinstance(a, SendNack)]
    assert again and again[0].server == 0
    core.on_unicast(reject(nack.sequence, nack.count, ord("O"), 0), 0, clock.now_ns)  # the pool says it again: lost
    core.on_timer(clock.now_ns)
    assert not core.gaps and rec.events(GapEvent)


def test_a_reject_on_the_group_for_another_count_is_someone_elses() -> None:
    _, core, pub = lossy_core()
    clock = _Clock(0)
    (nack,) = [a for a in run_timers(core, clock, 25 * MS) if isinstance(a, SendNack)]
    core.on_unicast(reject(nack.sequence, 65535, ord("C"), 0), 0, clock.now_ns)  # a bad apple asked 65,535 from our start
    assert core._in_flight() == 1


def test_an_image_beyond_the_receive_window_is_refused() -> None:
    rec = Recorder()
    core = make_core(rec, policy=RecoveryPolicy(**POLICY), image_servers=1)
    pub = Published(30)
    core.on_datagram("A", pub.datagrams[5], 0)
    core.on_datagram("A", pub.announce(5), 0)  # a late join: the image is asked for
    assert core.joining
    core.on_image_end(pub.next_sequence + 10**6, MS)  # "consistent with" a sequence a million ahead of the stream
    assert core.counters["images_refused"] == 1 and not rec.events(ImageApplied)
    assert core.expected <= pub.first_seq(5)  # nothing skipped: with no other image to be had, it recovers from the start
