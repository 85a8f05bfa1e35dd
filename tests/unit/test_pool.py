"""The pool server core (retransmit/pool.py) on a fake clock: several servers hear the same requests and
each other's repairs, as on the repair group, and between them answer each request once."""

from __future__ import annotations

import random

import pytest

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import decode_datagram, decode_header, encode_request
from retransmit.journal import Journal
from retransmit.pool import PoolLimits, RepairPool
from retransmit.server import RequestServer, ServerLimits

S = make_session(SCHEMA_FINGERPRINT, 5)
MS = 1_000_000
H1, H2, APPLE = ("10.0.0.31", 5000), ("10.0.0.32", 5000), ("10.0.0.99", 6000)


def pool_server(seed: int, n: int = 5000, limits: PoolLimits | None = None, offer=None, **server_limits) -> RepairPool:
    j = Journal()
    for s in range(1, n + 1):
        j.append(s, CODECS.encode((b"Q", s, 1, s, 1, s + 1, 1)), 0)
    srv = RequestServer(j, ServerLimits(**server_limits))
    srv.session = S
    return RepairPool(srv, limits or PoolLimits(), rng=random.Random(seed), now_ns=0, offer=offer)


class Group:
    """Servers on one repair group: what one sends, all hear (itself included, as multicast loopback does)."""

    def __init__(self, *servers: RepairPool) -> None:
        self.servers = servers
        self.wire: list[tuple[int, bytes]] = []  # (server index, datagram) in the order sent

    def request(self, data: bytes, addr: tuple, now_ns: int) -> list[list[bytes]]:
        return [p.on_request(data, addr, now_ns) for p in self.servers]

    def run(self, now_ns: int, until_ns: int, step_ns: int = 100_000) -> int:
        """Fire timers in steps of `step_ns` (a repair is heard by the others at the next step: the wire's delay)."""
        t = now_ns
        while t <= until_ns:
            sent = []
            for i, p in enumerate(self.servers):
                nt = p.next_timer()
                if nt is not None and nt <= t:
                    sent += [(i, d) for d in p.on_timer(t)]
            for i, d in sent:
                self.wire.append((i, d))
                for p in self.servers:
                    p.on_repair_heard(d, t)
            t += step_ns
        return t

    def repaired(self) -> list[int]:
        out = []
        for _, d in self.wire:
            _, seq, count = decode_header(d)
            if seq:
                out += range(seq, seq + count)
        return out


def test_one_request_heard_by_three_servers_is_repaired_once() -> None:
    g = Group(*(pool_server(seed) for seed in (1, 2, 3)))
    assert g.request(encode_request(S, 100, 50), H1, 0) == [[], [], []]
    g.run(0, 20 * MS)
    assert sorted(g.repaired()) == list(range(100, 150))  # each message once, whoever sent it
    senders = {i for i, _ in g.wire}
    assert len(senders) == 1
    assert sum(p.counters["yielded"] for p in g.servers) >= 1


def test_a_repeat_inside_the_dedupe_window_is_not_repaired_again_and_after_it_is() -> None:
    g = Group(pool_server(1), pool_server(2))
    g.request(encode_request(S, 10, 5), H1, 0)
    t = g.run(0, 10 * MS)
    g.request(encode_request(S, 10, 5), H2, t)  # another handler lost the same: the repair already went to all
    t = g.run(t, t + 10 * MS)
    assert sorted(g.repaired()) == list(range(10, 15))
    g.request(encode_request(S, 10, 5), H2, t + 60 * MS)  # past the 50 ms window: it was lost again, repair again
    g.run(t + 60 * MS, t + 80 * MS)
    assert sorted(g.repaired()) == sorted([*range(10, 15)] * 2)


def test_requests_for_touching_ranges_share_one_answer_and_none_is_widened() -> None:
    p = pool_server(1)
    p.on_request(encode_request(S, 10, 5), H1, 0)
    p.on_request(encode_request(S, 15, 5), H2, 0)
    g = Group(p)
    g.run(0, 10 * MS)
    assert g.repaired() == list(range(10, 20))
    assert p.counters.as_dict()["coalesced"] == 1 and p.counters.as_dict()["answers"] == 1


def test_an_identical_reject_from_another_server_stands_for_ours() -> None:
    g = Group(pool_server(1, n=100), pool_server(2, n=100))
    g.request(encode_request(S, 500, 10), H1, 0)  # beyond both journals: too_far_ahead, once on the group
    g.run(0, 10 * MS)
    (d,) = [d for _, d in g.wire]
    _, seq, _, msgs = decode_datagram(d, CODECS)
    assert seq == 0 and CODECS.to_dict(msgs[0])["reason"] == "too_far_ahead"


def test_a_flooding_requester_is_limited_alike_by_every_server_and_others_are_still_served() -> None:
    g = Group(pool_server(1), pool_server(2))
    t = 0
    for i in range(200):  # 200 requests in 20 ms: 20x the per-requester burst of 20
        g.request(encode_request(S, 1 + (i % 50) * 10, 10), APPLE, t)
        t += 100_000
    g.request(encode_request(S, 4000, 20), H1, t)
    g.run(0, t + 20 * MS)
    repaired = g.repaired()
    assert set(range(4000, 4020)) <= set(repaired)
    for p in g.servers:
        c = p.counters.as_dict()
        assert c["suppressed"] >= 150, c  # every server counted the flood alike, and answered it one reject per token
    rejects = [d for _, d in g.wire if decode_header(d)[1] == 0]
    assert 1 <= len(rejects) <= 4


def test_one_requester_cannot_take_more_than_its_share_of_the_budget() -> None:
    limits = PoolLimits(min_repair_bytes_per_s=1_000_000, requester_share=0.25, burst_s=0.2)
    p = pool_server(1, n=60_000, limits=limits, requester_requests=(10_000.0, 10_000.0))
    g = Group(p)
    t = 0
    for i in range(500):  # 2000 messages a request, 1 ms apart: far beyond 250 kB/s
        p.on_request(encode_request(S, 1 + (i * 2000) % 58_000, 2000), APPLE, t)
        t += MS
        g.run(t - MS, t - 1, step_ns=MS)
    sent = p.counters.as_dict()["bytes_sent"]
    seconds = t / 1e9
    share = 0.25 * 1_000_000
    assert sent <= share * seconds + max(share * 0.2, 128 * 1024) + 2000, (sent, seconds)
    # and an honest requester still gets its repair from the budget that is left
    p.on_request(encode_request(S, 100, 20), H1, t)
    before = len(g.repaired())
    g.run(t, t + 10 * MS)
    assert len(g.repaired()) - before >= 20


def test_the_pool_budget_counts_the_other_servers_repairs() -> None:
    limits = PoolLimits(min_repair_bytes_per_s=200_000, requester_share=1.0, burst_s=0.2)
    a, b = pool_server(1, limits=limits, requester_requests=(10_000.0, 10_000.0)), pool_server(2, limits=limits, requester_requests=(10_000.0, 10_000.0))
    g = Group(a, b)
    t = 0
    for i in range(400):  # distinct requesters, so only the pool-wide budget limits them
        g.request(encode_request(S, 1 + i * 10, 10), (f"10.0.1.{i % 250}", 5000 + i), t)
        t += MS
        g.run(t - MS, t - 1, step_ns=250_000)
    total = sum(p.counters.as_dict()["bytes_sent"] for p in g.servers)
    seconds = t / 1e9
    assert total <= 200_000 * seconds + 128 * 1024 + 4000, (total, seconds)
    assert sum(p.counters.as_dict()["budget_refused"] for p in g.servers) > 0


def test_an_image_query_is_answered_by_the_offer_at_once_and_only_when_there_is_one() -> None:
    p = pool_server(1, offer=lambda now, asker: b"offer")
    assert p.on_request(encode_request(S, 0, 0), H1, 0) == [b"offer"]
    q = pool_server(1, offer=lambda now, asker: None)
    assert q.on_request(encode_request(S, 0, 0), H1, 0) == []
    assert p.counters.as_dict()["offers"] == 1 and q.counters.as_dict()["image_queries"] == 1


def test_garbage_on_the_request_group_is_counted_and_never_answered() -> None:
    g = Group(pool_server(1))
    for data in (b"", b"x" * 19, b"x" * 21, bytes(200)):
        assert g.request(data, APPLE, 0) == [[]]
    g.run(0, 10 * MS)
    assert g.wire == [] and g.servers[0].counters["malformed"] == 4


@pytest.mark.parametrize("bad", [dict(answer_slot_ns=-1), dict(repair_share=0), dict(min_repair_bytes_per_s=0),
                                 dict(requester_share=0), dict(requester_share=1.5), dict(burst_s=0)])
def test_impossible_pool_limits_are_refused_at_start(bad: dict) -> None:
    with pytest.raises(ValueError):
        PoolLimits(**bad)


def test_a_forged_repair_makes_no_server_stand_down() -> None:
    p = pool_server(1)
    p.on_request(encode_request(S, 100, 10), H1, 0)
    real = Group(pool_server(2))
    real.servers[0].on_request(encode_request(S, 100, 10), H2, 0)
    real.run(0, 10 * MS)
    (genuine,) = [d for _, d in real.wire]
    forged = bytearray(genuine)
    forged[-1] ^= 0xFF  # same header, other content
    p.on_repair_heard(bytes(forged), MS)
    p.on_repair_heard(genuine[:18] + b"\xff\xff", MS)  # a bare end-of-session header claiming 65,535 messages
    out = Group(p)
    out.run(MS, 10 * MS)
    assert out.repaired() == list(range(100, 110))
    assert p.counters["repairs_unverified"] == 1 and p.counters["yielded"] == 0


def test_a_repair_inside_a_pending_answer_leaves_both_ends_to_be_sent() -> None:
    p = pool_server(1)
    p.on_request(encode_request(S, 10, 91), H1, 0)  # 10..100 pending
    other = pool_server(2)
    other.on_request(encode_request(S, 50, 11), H2, 0)  # another handler's loss inside ours: the other server answers it
    (repair,) = other.on_timer(10 * MS)
    p.on_repair_heard(repair, 0)
    g = Group(p)
    g.run(0, 10 * MS)
    assert sorted(g.repaired()) == [*range(10, 50), *range(61, 101)]


def test_a_server_without_the_range_leaves_it_to_one_that_has_it() -> None:
    holder = pool_server(1)
    late = pool_server(2)
    late.server.journal.reset(3000)  # joined late: its journal starts at 3000
    for s in range(3000, 5001):
        late.server.journal.append(s, CODECS.encode((b"Q", s, 1, s, 1, s + 1, 1)), 0)
    for seed in range(20):  # whatever the slots drawn, the holder's repair comes first and the too_old is dropped
        holder.rng.seed(seed), late.rng.seed(seed + 100)
        g = Group(holder, late)
        t = seed * 100 * MS
        g.request(encode_request(S, 100 + seed * 20, 10), H1, t)
        g.run(t, t + 20 * MS)
        assert [decode_header(d)[1] for _, d in g.wire] == [100 + seed * 20], seed  # one repair, no reject
    assert late.counters["rejects_yielded"] == 20
