"""Property: whatever A and B lose, duplicate or reorder, with retransmission available the
application receives exactly the published messages, once each, in order, and no gap event."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from linehandler.events import GapEvent, SendNack
from linehandler.session import RecoveryPolicy
from tests.conftest import FakeClock
from tests.unit.handler_harness import MS, Published, Recorder, make_core, open_stream

N_DATAGRAMS = 25


@st.composite
def feed_patterns(draw: st.DrawFn) -> list[tuple[str, int]]:
    """(feed, datagram index) arrivals: each copy lost, delivered or duplicated, then locally shuffled."""
    arrivals: list[tuple[int, str, int]] = []
    for i in range(N_DATAGRAMS):
        for feed in "AB":
            copies = draw(st.sampled_from([0, 0, 1, 1, 1, 1, 2]))
            for _ in range(copies):
                jitter = draw(st.integers(0, 6))
                arrivals.append((i + jitter, feed, i))
    arrivals.sort(key=lambda x: x[0])
    return [(feed, i) for _, feed, i in arrivals]


@settings(max_examples=300, deadline=None)
@given(pattern=feed_patterns(), answer_loss=st.lists(st.booleans(), max_size=8), seed=st.integers(0, 1000))
def test_any_loss_dup_reorder_with_retransmission_delivers_exactly_the_stream(pattern, answer_loss, seed) -> None:
    clock = FakeClock()
    pub, rec = Published(N_DATAGRAMS * 3), Recorder()
    core = make_core(rec, nack_servers=2, seed=seed, policy=RecoveryPolicy(give_up_ns=10**13, stale_after_ns=10**13,
                                                                           request_timeout_ns=20 * MS))
    losses = list(answer_loss)

    def serve(actions: list) -> None:
        for a in actions:
            if isinstance(a, SendNack) and not (losses and losses.pop(0)):  # some answers are lost too
                for dg in pub.answer(a, per=2):
                    serve(core.on_unicast(dg, a.server, clock.now_ns))

    # the first datagram arrives first (a receiver started before the publisher)
    serve(open_stream(core, pub, clock.now_ns))
    for feed, i in pattern:
        serve(core.on_datagram(feed, pub.datagrams[i], clock.advance(50_000)))
        t = core.next_timer()
        if t is not None and clock.now_ns >= t:
            serve(core.on_timer(clock.now_ns))
    serve(core.on_datagram("A", pub.heartbeat(), clock.now_ns))
    for _ in range(2000):
        if core.expected == pub.next_sequence and not core.gaps:
            break
        clock.advance(5 * MS)
        t = core.next_timer()
        if t is not None and clock.now_ns >= t:
            serve(core.on_timer(clock.now_ns))
    assert rec.delivered == list(enumerate(pub.messages, 1))
    assert not rec.events(GapEvent)
