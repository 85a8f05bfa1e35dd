"""A re-request server that stops answering is held down: new gaps go straight to the others."""

from __future__ import annotations

from linehandler.events import SendNack
from linehandler.session import RecoveryPolicy
from tests.unit.handler_harness import MS, Published, Recorder, make_core, open_stream, step_and_answer


def lose(core, pub: Published, i: int, clock) -> None:
    """Datagram i never arrives; i + 1 does, so a gap opens before it."""
    core.on_datagram("A", pub.datagrams[i + 1], clock.now_ns)


def test_a_silent_server_gets_no_new_gaps_until_it_answers_again(clock) -> None:
    pub, rec = Published(130, per=3), Recorder()
    policy = RecoveryPolicy(retries_per_server=1, request_timeout_ns=50 * MS, stale_after_ns=10**12, server_holddown_ns=5_000 * MS)
    core = make_core(rec, nack_servers=2, policy=policy)
    open_stream(core, pub, clock.now_ns)
    sent: list[SendNack] = []
    # gaps open one after another; whoever is asked first, server 0 never answers
    for i in range(1, 18, 2):
        lose(core, pub, i, clock)
        sent += step_and_answer(core, pub, clock, 60, answering={1})
    asked_0 = [n for n in sent if n.server == 0]
    assert asked_0 and core.counters["nack_timeouts"] == 1, "exactly one request is lost to the silent server"
    assert [n.server for n in sent[sent.index(asked_0[0]) + 1:]] == [1] * (len(sent) - sent.index(asked_0[0]) - 1)
    assert [s for s, _ in rec.delivered] == list(range(1, pub.first_seq(19)))
    # after the hold-down, server 0 is tried again; once it answers it is healthy
    clock.advance(5_000 * MS)
    servers = set()
    for i in range(19, 40, 2):
        lose(core, pub, i, clock)
        servers |= {n.server for n in step_and_answer(core, pub, clock, 60, answering={0, 1})}
    assert servers == {0, 1} and not core.gaps
