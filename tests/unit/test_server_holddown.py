"""A re-request server that stops answering is held down: new gaps go straight to the others."""

from __future__ import annotations

from linehandler.events import SendNack
from linehandler.session import RecoveryPolicy
from tests.unit.handler_harness import MS, Published, Recorder, make_core


def run(core, pub: Published, clock, ms: int, answering: set[int]) -> list[SendNack]:
    """Step the clock 1 ms at a time for `ms`; servers in `answering` answer each NACK at once."""
    sent = []
    for _ in range(ms):
        clock.advance(MS)
        nt = core.next_timer()
        if nt is None or clock.now_ns < nt:
            continue
        for a in core.on_timer(clock.now_ns):
            if isinstance(a, SendNack):
                sent.append(a)
                if a.server in answering:
                    for d in pub.answer(a):
                        core.on_unicast(d, a.server, clock.now_ns)
    return sent


def lose(core, pub: Published, i: int, clock) -> None:
    """Datagram i never arrives; i + 1 does, so a gap opens before it."""
    core.on_datagram("A", pub.datagrams[i + 1], clock.now_ns)


def test_a_silent_server_gets_no_new_gaps_until_it_answers_again(clock) -> None:
    pub, rec = Published(130, per=3), Recorder()
    policy = RecoveryPolicy(retries_per_server=1, request_timeout_ns=50 * MS, stale_after_ns=10**12, server_holddown_ns=5_000 * MS)
    core = make_core(rec, nack_servers=2, policy=policy)
    core.on_datagram("A", pub.datagrams[0], clock.now_ns)
    sent: list[SendNack] = []
    # gaps open one after another; whoever is asked first, server 0 never answers
    for i in range(1, 18, 2):
        lose(core, pub, i, clock)
        sent += run(core, pub, clock, 60, answering={1})
    asked_0 = [n for n in sent if n.server == 0]
    assert asked_0 and core.counters["nack_timeouts"] == 1, "exactly one request is lost to the silent server"
    assert [n.server for n in sent[sent.index(asked_0[0]) + 1:]] == [1] * (len(sent) - sent.index(asked_0[0]) - 1)
    assert [s for s, _ in rec.delivered] == list(range(1, pub.first_seq(19)))
    # after the hold-down, server 0 is tried again; once it answers it is healthy
    clock.advance(5_000 * MS)
    servers = set()
    for i in range(19, 40, 2):
        lose(core, pub, i, clock)
        servers |= {n.server for n in run(core, pub, clock, 60, answering={0, 1})}
    assert servers == {0, 1} and not core.gaps
