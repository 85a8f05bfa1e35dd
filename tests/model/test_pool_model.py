"""A pool of re-request servers (retransmit/pool.py) driven by every input a request group can carry,
with the pool's promises checked after every step.

The model: up to three servers with the same journal, on one repair group where each hears what the
others send one step later, unless the drawn loss drops it for one of them. Requests come from honest
handlers and from a flooding host: valid ranges, ranges beyond or before the journal, counts of 0 or
above the limit, other sessions, image queries, garbage. Servers are killed and new ones join. After
every step:
- every repaired message is the journal's own message at that sequence number;
- nothing is repaired that no request asked for (within the dedupe window's repeats: never a sequence
  outside every requested range);
- the bytes on the repair group stay within the pool budget's burst plus its rate over the elapsed time,
  whichever servers sent them (all hearing each other), and one requester's answers within its share;
- pending answers stay within their bound; nothing raises.
At the end, with time to answer and each unanswered request asked once more (the handler's retry after its
request timeout: a killed server takes its pending answers with it): every valid request of an honest
handler was repaired (by some server) or refused with a reject echoing it.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import decode_datagram, encode_request
from retransmit.journal import Journal
from retransmit.pool import PoolLimits, RepairPool
from retransmit.server import RequestServer, ServerLimits
from tests.model.profiles import model_settings

S = make_session(SCHEMA_FINGERPRINT, 9)
OTHER = make_session(SCHEMA_FINGERPRINT, 10)
MS = 1_000_000
FIRST, N = 100, 3000  # the journal holds FIRST .. FIRST + N - 1
HONEST = [("10.0.0.31", 5000), ("10.0.0.32", 5000), ("10.0.0.33", 5001)]
APPLE = ("10.0.0.99", 6000)
BUDGET = 400_000.0  # bytes/s: small, so the budget is reached within a run
LIMITS = PoolLimits(answer_slot_ns=4 * MS, min_repair_bytes_per_s=BUDGET, requester_share=0.5, burst_s=0.2, max_pending=64)


def journal() -> Journal:
    j = Journal()
    for s in range(FIRST, FIRST + N):
        j.append(s, CODECS.encode((b"T", s, 1 + s % 5, 1000 + s, 1 + s % 9, ord("B"), s)), 0)
    return j


class PoolModel(RuleBasedStateMachine):
    @initialize(servers=st.integers(1, 3), seed=st.integers(0, 2**16))
    def start(self, servers: int, seed: int) -> None:
        self.truth = journal()
        self.rng = random.Random(seed)
        self.now = 0
        self.servers: list[RepairPool] = []
        for _ in range(servers):
            self._add_server()
        self.in_flight: list[tuple[int, int, bytes]] = []  # (deliver at, sender index, datagram) on the repair group
        self.lost_to: set[int] = set()  # servers that miss what is sent this step
        self.requested: list[tuple[int, int]] = []  # every valid range asked, (first, last)
        self.honest: list[tuple[int, int, int, int]] = []  # (asked at, first, count, expected outcome first) of honest handlers
        self.repaired: set[int] = set()
        self.rejected: set[tuple[int, int]] = set()  # (sequence, count) echoed by a reject
        self.group_bytes = 0
        self.missed_bytes = 0  # sent while the drawn loss kept a server from hearing it: that server did not charge it

    def _add_server(self) -> None:
        self.started = getattr(self, "started", 0) + 1
        srv = RequestServer(self.truth, ServerLimits(requester_requests=(50.0, 20.0)))
        srv.session = S
        self.servers.append(RepairPool(srv, LIMITS, rng=random.Random(self.rng.random()), now_ns=self.now))

    # -- inputs ---------------------------------------------------------------------

    def _hear(self, data: bytes, addr: tuple) -> None:
        for p in self.servers:
            p.on_request(data, addr, self.now)

    @rule(who=st.sampled_from(range(len(HONEST))), i=st.integers(0, N - 1), count=st.integers(1, 300))
    def honest_request(self, who: int, i: int, count: int) -> None:
        seq = FIRST + i
        self.requested.append((seq, seq + count - 1))
        self.honest.append((self.now, seq, count, who))
        self._hear(encode_request(S, seq, count), HONEST[who])

    @rule(i=st.integers(-200, N + 200), count=st.integers(0, 3000), times=st.integers(1, 50),
          kind=st.sampled_from(["valid", "session", "garbage", "query"]))
    def apple_floods(self, i: int, count: int, times: int, kind: str) -> None:
        seq = max(0, FIRST + i)
        if kind == "valid":
            data = encode_request(S, seq, count)
            if 1 <= count <= 2000:
                self.requested.append((seq, seq + count - 1))
        elif kind == "session":
            data = encode_request(OTHER, seq, count)
        elif kind == "garbage":
            data = bytes([i % 256]) * (count % 40)
        else:
            data = encode_request(S, 0, 0)
        for _ in range(times):
            self._hear(data, APPLE)

    @rule(who=st.sampled_from([0, 1, 2]))
    def repairs_lost_to(self, who: int) -> None:
        self.lost_to = {who}

    @rule()
    def server_killed(self) -> None:
        if len(self.servers) > 1:
            self.servers.pop(self.rng.randrange(len(self.servers)))

    @rule()
    def server_joins(self) -> None:
        if len(self.servers) < 3:
            self._add_server()

    @rule(us=st.sampled_from([50, 200, 1000, 5000, 20_000, 100_000]))
    def time_passes(self, us: int) -> None:
        self._run(self.now + us * 1000)

    def _run(self, until: int, step: int = 100_000) -> None:
        while self.now < until:
            self.now = min(until, self.now + step)
            due = [x for x in self.in_flight if x[0] <= self.now]
            self.in_flight = [x for x in self.in_flight if x[0] > self.now]
            for _, sender, d in due:
                if any(k != sender and k < len(self.servers) for k in self.lost_to):
                    self.missed_bytes += len(d)
                for k, p in enumerate(self.servers):
                    if k not in self.lost_to or k == sender:
                        p.on_repair_heard(d, self.now)
            self.lost_to = set()
            for k, p in enumerate(self.servers):
                nt = p.next_timer()
                if nt is not None and nt <= self.now:
                    for d in p.on_timer(self.now):
                        self._sent(k, d)

    def _sent(self, sender: int, d: bytes) -> None:
        session, seq, _, msgs = decode_datagram(d, CODECS)
        assert session == S
        self.group_bytes += len(d)
        if seq == 0:
            (m,) = msgs
            r = CODECS.to_dict(m)
            self.rejected.add((r["requested_sequence_number"], r["requested_message_count"]))
        else:
            blocks = self.truth.get(seq, len(msgs))
            assert [CODECS.encode(m) for m in msgs] == blocks, "a repair that is not the journal's messages"
            for s in range(seq, seq + len(msgs)):
                assert any(a <= s <= b for a, b in self.requested), f"{s} repaired though nobody asked for it"
                self.repaired.add(s)
        self.in_flight.append((self.now + 100_000, sender, d))

    # -- the promises ---------------------------------------------------------------

    @invariant()
    def promises_hold(self) -> None:
        if not hasattr(self, "servers"):
            return
        seconds = self.now / 1e9
        # every server charges what it hears of the others to its own copy of the budget: the pool stays within
        # one budget, plus the burst each server started with (a server that joins brings a full bucket) and what
        # a server did not hear (the drawn loss) and so did not charge
        bound = max(BUDGET * LIMITS.burst_s, 128 * 1024) * self.started + BUDGET * seconds + self.missed_bytes
        assert self.group_bytes <= bound, (self.group_bytes, bound)
        for p in self.servers:
            assert sum(1 for _, _, e in p.pending if not e.done) <= LIMITS.max_pending

    def teardown(self) -> None:
        if not hasattr(self, "servers"):
            return
        self._run(self.now + 50 * MS)
        # a handler whose request went unanswered (the server that heard it was killed before its slot, or the repair
        # was clipped) asks again after its request timeout, as the handler core does; the servers alive now hear it
        self._run(self.now + 200 * MS)
        for _, seq, count, who in self.honest:
            last = min(seq + count, FIRST + N) - 1
            if (seq, count) not in self.rejected and not all(s in self.repaired for s in range(seq, last + 1)):
                self._hear(encode_request(S, seq, count), HONEST[who])
                self._run(self.now + 10 * MS)
        self._run(self.now + 50 * MS)
        # every honest request asked at least 50 ms ago is answered: repaired (by someone, possibly for another
        # requester inside the dedupe window), refused with a reject echoing it, or cut to the requester's share
        for at, seq, count, _ in self.honest:
            last = min(seq + count, FIRST + N) - 1
            if (seq, count) in self.rejected:
                continue
            assert seq in self.repaired, f"honest request {seq}+{count} at {at} neither repaired nor rejected"
            assert all(s in self.repaired for s in range(seq, last + 1)) or any(
                p.counters["requester_clipped"] or p.counters["budget_clipped"] for p in self.servers
            ), f"honest request {seq}+{count} repaired in part, and nothing was clipped"
        for p in self.servers:
            assert p.counters["pending_dropped"] == 0 or len(self.honest) > 0


PoolModel.TestCase.settings = model_settings(ci_examples=150, ci_steps=60)
test_pool_model = PoolModel.TestCase
