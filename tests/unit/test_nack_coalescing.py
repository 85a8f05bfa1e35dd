"""Loss that hits both feeds alike: nearby gaps are asked for in one request, and everything arrives."""

from __future__ import annotations

from linehandler.events import SendNack
from linehandler.session import RecoveryPolicy
from tests.unit.handler_harness import MS, Published, Recorder, make_core, step_and_answer


def recover(coalesce: int, clock, requests_per_s: float = 50.0) -> tuple[list[SendNack], Recorder, object]:
    pub, rec = Published(600, per=3), Recorder()
    policy = RecoveryPolicy(stale_after_ns=10**12, coalesce_held_messages=coalesce, max_request_messages=60,
                            requests_per_s=requests_per_s, request_burst=requests_per_s / 5)  # 0.2 s of the rate
    core = make_core(rec, nack_servers=1, policy=policy)
    for i, d in enumerate(pub.datagrams):
        if i % 5 != 2:  # every fifth datagram lost on both feeds
            core.on_datagram("A", d, clock.now_ns)
        clock.advance(MS // 10)
    core.on_datagram("A", pub.heartbeat(), clock.now_ns)
    sent = step_and_answer(core, pub, clock, 3000)
    assert [s for s, _ in rec.delivered] == list(range(1, 601)), "every message once, in order"
    return sent, rec, core


def test_nearby_gaps_share_a_request_capped_at_the_request_size(clock) -> None:
    alone, _, core_alone = recover(0, clock)
    together, _, core = recover(1000, clock)
    assert len(alone) == 40  # one request per lost datagram
    assert len(together) <= 12 and all(n.count <= 60 for n in together)
    assert core.counters["messages_requested"] > core_alone.counters["messages_requested"]  # held messages come back too
    assert core.counters["gaps_unrecoverable"] == 0


def test_held_messages_between_gaps_bound_the_coalescing_while_requests_are_plenty(clock) -> None:
    sent, _, _ = recover(11, clock, requests_per_s=1000)  # 12 held messages between neighbouring gaps: too many
    assert len(sent) == 40


def test_when_requests_are_scarce_one_request_reaches_across_held_messages(clock) -> None:
    """40 gaps at once against a budget of 10 requests: gaps far apart (more held messages between them
    than coalesce_held_messages) share requests too, each capped at max_request_messages."""
    sent, _, core = recover(11, clock, requests_per_s=50)
    assert len(sent) <= 12 and all(n.count <= 60 for n in sent)
    assert core.counters["gaps_unrecoverable"] == 0
