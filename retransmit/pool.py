"""A re-request server as one of an anonymous pool: requests heard on the channel's request
group, repairs multicast on its repair group, so one repair heals every handler missing it.

Handlers multicast their NACKs; every server of the pool hears every request and every
other server's repairs, and none is configured with the others (SRM's request/repair timers,
PGM's NAK/NCF: docs/operations.md, "Anonymous recovery").

Rules:
1. Every server hears the same requests, so it keeps the same per-requester books: each
   request pays a request token from its requester (a host) when heard, by every server
   alike, and the bytes of the answer it would get from the requester's share of the pool
   budget. One requester cannot take more than `requester_share` of the repair group.
2. A request that can be served becomes a pending answer, sent after a random slot in
   `[0, answer_slot_ns)` unless, meanwhile, another server's repair for the range is seen on
   the repair group: then the range is that server's (the answer is trimmed, split or
   dropped). A heard repair is believed only where it matches this server's own journal
   message for message, so a forged one makes no server stand down. Rejects (the same `J`
   packets as unicast, sequence 0) wait their slot the same way and yield to an identical
   reject from another server; a reject about this server's journal (too old, too far
   ahead) waits a slot longer and yields to another server's repair of the range.
3. A range repaired on the group (by any server) inside the dedupe window is not repaired
   again; a request for a range already pending is merged into that answer.
4. The pool-wide budget: every repair on the group, this server's and the others' seen,
   is charged to one bucket (`repair_share` of the feed's bytes/s, at least
   `min_repair_bytes_per_s`); an answer is clipped to what it holds, or refused
   `rate_limited` with the time it will hold it. So the pool as a whole stays within its
   share of the wire whichever server answers.
5. No repair is larger than what was asked: an answer covers only requested sequences
   (two requests may share one answer when their ranges touch).
6. An image query (a request with sequence 0 and count 0) is answered at once, unicast,
   with an `image_offer` when this server can serve an image (`offer`, set by the shell).
Pure: time comes in as `now_ns`; the shell sends what `on_request` and `on_timer` return.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count as counter

from decoders import CODECS, REJECT_REASONS, RETRANSMISSION_REJECT, DecodeError
from decoders.moldudp64 import END_OF_SESSION_COUNT, HEARTBEAT_COUNT, decode_datagram, decode_header, decode_request, split_blocks
from mdcommon.counters import Counter, CounterSet
from mdcommon.ratelimit import TokenBucket

from .server import REJECT_BYTES, RequestServer, requester_key

__all__ = ["RepairPool", "PoolLimits", "POOL_COUNTERS"]

_RANGE_REASONS = ("too_old", "too_far_ahead")  # rejects about this server's journal, not about the request
_REJECT_KEY = CODECS.by_name["retransmission_reject"].slots("reason", "requested_sequence_number", "requested_message_count")

POOL_COUNTERS = CounterSet(
    "rtx_pool",
    [
        Counter(0, "requests", "requests heard on the request group"),
        Counter(1, "image_queries", "image queries heard (a request with sequence 0 and count 0)"),
        Counter(2, "offers", "image offers sent"),
        Counter(3, "answers", "answers sent on the repair group"),
        Counter(4, "messages_sent", "messages repaired on the repair group by this server"),
        Counter(5, "bytes_sent", "bytes this server sent on the repair group (repairs and rejects)"),
        Counter(6, "rejects_sent", "rejects sent on the repair group"),
        Counter(7, "yielded", "pending answers trimmed or dropped because another server's repair covered them"),
        Counter(8, "rejects_yielded", "pending rejects dropped because another server sent the same one"),
        Counter(9, "deduplicated", "requests for ranges repaired on the group inside the dedupe window, not repaired again"),
        Counter(10, "coalesced", "requests merged into an answer already pending"),
        Counter(11, "budget_clipped", "answers cut short to what the pool-wide budget held"),
        Counter(12, "budget_refused", "answers refused (rate_limited) because the pool-wide budget held not one message"),
        Counter(13, "requester_clipped", "answers cut short to the requester's share of the budget"),
        Counter(14, "malformed", "datagrams on the request group that are not requests (counted, not answered)"),
        Counter(15, "suppressed", "requests not answered at all: the requester had no request token and was told when to retry"),
        Counter(16, "pending_dropped", "answers dropped because too many were pending"),
        Counter(17, "repairs_heard", "datagrams of other servers heard on the repair group"),
        Counter(18, "requesters_evicted", "requesters forgotten to bound the table"),
        Counter(19, "stale_answers", "pending answers whose range left the journal before their slot came"),
        Counter(20, "repairs_unverified", "datagrams on the repair group that did not match this server's journal (or lay "
                                          "outside it): not believed, nothing yielded to them"),
    ],
)


@dataclass
class PoolLimits:
    """The pool's numbers (per server, but alike on every server of a pool)."""

    answer_slot_ns: int = 4_000_000  # a server answers after a random wait below this: long enough to hear another's repair
    repair_share: float = 0.5  # of the feed's bytes/s: the repair group's pool-wide budget
    min_repair_bytes_per_s: float = 2_000_000.0  # the budget while the feed is quiet
    burst_s: float = 0.2  # bucket depth, as seconds of the rate
    requester_share: float = 0.25  # of the budget, for any one requester
    max_pending: int = 4096
    max_recent: int = 4096  # ranges remembered as repaired on the group (and own datagrams, to know their echo)

    def __post_init__(self) -> None:
        if self.answer_slot_ns < 0 or self.repair_share <= 0 or self.min_repair_bytes_per_s <= 0:
            raise ValueError("answer_slot_ns must not be negative, and the budget must be positive")
        if not 0 < self.requester_share <= 1:
            raise ValueError(f"requester_share {self.requester_share} must be in (0, 1]")
        if self.burst_s <= 0 or self.max_pending < 1 or self.max_recent < 1:
            raise ValueError("burst_s, max_pending and max_recent must be positive")


@dataclass(slots=True)
class _Pending:
    due_ns: int
    first: int
    last: int
    reject: tuple[str, int, int, int] | None = None  # (reason, sequence, count, retry-after) for a pending reject
    done: bool = False


@dataclass(slots=True)
class _Requester:
    requests: TokenBucket
    bytes: TokenBucket
    quiet_until_ns: int = 0


class RepairPool:
    """One server's part in the pool; see the module rules."""

    def __init__(self, server: RequestServer, limits: PoolLimits | None = None, *, rng: random.Random | None = None,
                 now_ns: int = 0, offer: Callable[[int, str], bytes | None] | None = None) -> None:
        self.server = server
        self.limits = lim = limits or PoolLimits()
        self.rng = rng or random.Random()
        self.offer = offer or (lambda now_ns, asker: None)  # (now, asker's IP) -> an offer packet, or None
        self.counters = POOL_COUNTERS.new()
        rate = lim.min_repair_bytes_per_s
        self.budget = TokenBucket(rate, self._burst(rate), now_ns)
        self.requesters: OrderedDict[object, _Requester] = OrderedDict()
        self.pending: list[tuple[int, int, _Pending]] = []  # heap by due time
        self._tie = counter()
        self.repaired: deque[tuple[int, int, int]] = deque()  # (first, last, when) repaired on the group, oldest first
        self.own: deque[tuple[int, int]] = deque()  # (sequence, count) of datagrams this server sent: their echo is not news
        self.own_rejects: deque[tuple[int, int, int]] = deque()  # (reason, sequence, count) of rejects this server sent

    def _burst(self, rate: float) -> float:
        return max(rate * self.limits.burst_s, 128 * 1024)

    def set_feed_rate(self, feed_bytes_per_s: float, now_ns: int) -> None:
        """The feed's measured bytes/s: the budget is `repair_share` of it, at least `min_repair_bytes_per_s`."""
        rate = max(self.limits.min_repair_bytes_per_s, self.limits.repair_share * feed_bytes_per_s)
        self.budget.available(now_ns)  # refill at the old rate up to now
        self.budget.rate_per_s = rate
        self.budget.burst = self._burst(rate)
        self.budget.tokens = min(self.budget.tokens, self.budget.burst)

    def _requester(self, key: object, now_ns: int) -> _Requester:
        r = self.requesters.get(key)
        share = self.limits.requester_share
        if r is None:
            lim = self.server.limits
            rate = self.budget.rate_per_s * share
            r = _Requester(TokenBucket(*lim.requester_requests, now_ns), TokenBucket(rate, self._burst(rate), now_ns))
            self.requesters[key] = r
            if len(self.requesters) > lim.max_requesters:
                self.requesters.popitem(last=False)
                self.counters.values[POOL_COUNTERS.requesters_evicted] += 1
        else:
            self.requesters.move_to_end(key)
            rate = self.budget.rate_per_s * share
            if r.bytes.rate_per_s != rate:  # the budget follows the feed: so does each share
                r.bytes.available(now_ns)
                r.bytes.rate_per_s, r.bytes.burst = rate, self._burst(rate)
        return r

    # -- requests heard ----------------------------------------------------------

    def on_request(self, data: bytes | memoryview, addr: object, now_ns: int) -> list[bytes]:
        """A datagram heard on the request group from `addr`; returns what to send back to `addr` alone
        (an image offer). Repairs and rejects come from `on_timer`."""
        c = self.counters.values
        c[POOL_COUNTERS.requests] += 1
        try:
            session, seq, count = decode_request(data)
        except DecodeError:
            c[POOL_COUNTERS.malformed] += 1  # no requester to tell on a group: counted only
            return []
        r = self._requester(requester_key(addr), now_ns)
        wait = r.requests.wait_ns(1, now_ns)
        if wait:
            if now_ns < r.quiet_until_ns:
                c[POOL_COUNTERS.suppressed] += 1
                return []
            retry = wait if wait > 0 else 1_000_000_000
            r.quiet_until_ns = now_ns + retry
            self._schedule_reject(("rate_limited", seq, count, retry), now_ns)
            return []
        r.requests.take(1, now_ns)
        if seq == 0 and count == 0 and session == self.server.session:
            c[POOL_COUNTERS.image_queries] += 1
            offer = self.offer(now_ns, addr[0] if isinstance(addr, tuple) and addr else "")
            if offer is None:
                return []
            c[POOL_COUNTERS.offers] += 1
            return [offer]
        refused = self.server.check(session, seq, count)
        if refused is not None:
            self._schedule_reject(refused, now_ns)
            return []
        j = self.server.journal
        first, last = seq, min(seq + count, j.next_sequence) - 1
        first = self._past_repaired(first, last, now_ns)
        if first > last:
            c[POOL_COUNTERS.deduplicated] += 1
            return []
        # rule 1: the requester's share, charged for the bytes this answer would take, as every server charges it
        groups, nbytes = self.server._plan(j.pieces(first, last - first + 1), r.bytes.available(now_ns))
        if not groups:
            retry = r.bytes.wait_ns(min(r.bytes.burst, self.server._plan(j.pieces(first, 1), float("inf"))[1]), now_ns)
            self._schedule_reject(("rate_limited", seq, count, retry if retry > 0 else 1_000_000_000), now_ns)
            return []
        k = sum(map(len, groups))
        if k < last - first + 1:
            c[POOL_COUNTERS.requester_clipped] += 1
            last = first + k - 1
        r.bytes.take(nbytes, now_ns)
        self._schedule_answer(first, last, now_ns)
        return []

    def _past_repaired(self, first: int, last: int, now_ns: int) -> int:
        """`first` moved past what was repaired on the group inside the dedupe window or is pending already."""
        window = self.server.limits.dedupe_window_ns
        rep = self.repaired
        while rep and now_ns - rep[0][2] >= window:
            rep.popleft()
        spans = sorted([(a, b) for a, b, _ in rep] + [(p.first, p.last) for _, _, p in self.pending if not p.done and p.reject is None])
        for a, b in spans:
            if a <= first <= b:
                first = b + 1
        return first

    def _schedule_answer(self, first: int, last: int, now_ns: int) -> None:
        for _, _, p in self.pending:  # a range that touches a pending answer's end joins it (rule 5: both were asked)
            if not p.done and p.reject is None and p.last + 1 == first:
                p.last = last
                self.counters.values[POOL_COUNTERS.coalesced] += 1
                return
        self._push(_Pending(now_ns + int(self.rng.random() * self.limits.answer_slot_ns), first, last))

    def _schedule_reject(self, reject: tuple[str, int, int, int], now_ns: int) -> None:
        for _, _, p in self.pending:
            if not p.done and p.reject is not None and p.reject[:3] == reject[:3]:
                return  # the same reject is pending already
        slot = self.limits.answer_slot_ns
        # a range this server does not hold another may: its reject waits a slot longer, so a server that holds the
        # range answers first and the reject is dropped when its repair is heard (rule 2)
        wait = int(self.rng.random() * slot) + (slot if reject[0] in _RANGE_REASONS else 0)
        self._push(_Pending(now_ns + wait, reject[1], reject[1], reject))

    def _push(self, p: _Pending) -> None:
        if len(self.pending) >= self.limits.max_pending:
            self.pending = [e for e in self.pending if not e[2].done]
            heapq.heapify(self.pending)
            if len(self.pending) >= self.limits.max_pending:
                self.counters.values[POOL_COUNTERS.pending_dropped] += 1
                return
        heapq.heappush(self.pending, (p.due_ns, next(self._tie), p))

    # -- what other servers send -------------------------------------------------

    def on_repair_heard(self, data: bytes | memoryview, now_ns: int) -> None:
        """A datagram on the repair group: another server's repair or reject (or this server's own, looped back)."""
        try:
            session, seq, count = decode_header(data)
        except DecodeError:
            return
        if session != self.server.session or count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT):
            return
        if seq == 0:
            try:
                msgs = decode_datagram(data, CODECS)[3]
            except DecodeError:
                return
            for m in msgs:
                if m[0] == RETRANSMISSION_REJECT:
                    self._reject_heard(tuple(m[i] for i in _REJECT_KEY))
            return
        if (seq, count) in self.own:
            self.own.remove((seq, count))  # our own repair, looped back: charged and noted when sent
            return
        c = self.counters.values
        try:
            blocks = split_blocks(data)[3]
        except DecodeError:
            blocks = []
        if len(blocks) != count:
            c[POOL_COUNTERS.repairs_unverified] += 1
            return
        last = seq + count - 1
        for _, _, p in self.pending:
            # a reject about our journal yields to any well-formed repair of the range: another server holds what we
            # do not (a forged one only delays a reject; the handler's own timeout covers it)
            if not p.done and p.reject is not None and p.reject[0] in _RANGE_REASONS and seq <= p.first <= last:
                p.done = True
                c[POOL_COUNTERS.rejects_yielded] += 1
        if not self._verified(blocks, seq, count):
            c[POOL_COUNTERS.repairs_unverified] += 1  # a forgery must not make the pool stand down: ignored
            return
        c[POOL_COUNTERS.repairs_heard] += 1
        self.budget.take(min(len(data), self.budget.available(now_ns)), now_ns)
        self._note_repaired(seq, last, now_ns)
        split: list[_Pending] = []
        for _, _, p in self.pending:
            if p.done or p.reject is not None or seq > p.last or last < p.first:
                continue
            c[POOL_COUNTERS.yielded] += 1
            if last < p.last and seq > p.first:  # a repair inside our answer: both ends of ours are still asked for
                split.append(_Pending(p.due_ns, last + 1, p.last))
                p.last = seq - 1
            elif seq <= p.first:
                p.first = last + 1  # the other server answers from here: its next datagrams carry the rest
            else:
                p.last = seq - 1
            if p.first > p.last:
                p.done = True
        for p in split:
            self._push(p)

    def _verified(self, blocks: list, seq: int, count: int) -> bool:
        """A heard repair is believed only where it matches this server's own journal, message for message: only
        then may it stand for an answer of ours (a range beyond our journal is one we could not answer anyway)."""
        j = self.server.journal
        lo, hi = max(seq, j.first_sequence), min(seq + count, j.next_sequence)
        return lo < hi and blocks[lo - seq : hi - seq] == j.get(lo, hi - lo)

    def _reject_heard(self, key: tuple) -> None:
        reason = key[0]
        if (reason, key[1], key[2]) in self.own_rejects:
            self.own_rejects.remove((reason, key[1], key[2]))
            return
        self.counters.values[POOL_COUNTERS.repairs_heard] += 1
        # not charged to the budget: a reject cannot be checked against the journal, and a flood of forged ones
        # must not spend the budget of real repairs (each server pays its own rejects when it sends them)
        for _, _, p in self.pending:
            if not p.done and p.reject is not None and (REJECT_REASONS[p.reject[0]], p.reject[1], min(p.reject[2], 0xFFFF)) == key:
                p.done = True
                self.counters.values[POOL_COUNTERS.rejects_yielded] += 1

    def _note_repaired(self, first: int, last: int, now_ns: int) -> None:
        self.repaired.append((first, last, now_ns))
        if len(self.repaired) > self.limits.max_recent:
            self.repaired.popleft()

    # -- answering -------------------------------------------------------------

    def next_timer(self) -> int | None:
        while self.pending and self.pending[0][2].done:
            heapq.heappop(self.pending)
        return self.pending[0][0] if self.pending else None

    def on_timer(self, now_ns: int) -> list[bytes]:
        """The answers whose slot has come: datagrams to send on the repair group."""
        out: list[bytes] = []
        while self.pending and self.pending[0][0] <= now_ns:
            _, _, p = heapq.heappop(self.pending)
            if p.done:
                continue
            p.done = True
            if p.reject is not None:
                out += self._send_reject(p.reject, now_ns)
            else:
                out += self._send_answer(p, now_ns)
        return out

    def _send_answer(self, p: _Pending, now_ns: int) -> list[bytes]:
        c = self.counters.values
        j = self.server.journal
        if p.first < j.first_sequence or p.last >= j.next_sequence:
            c[POOL_COUNTERS.stale_answers] += 1  # the journal moved on (a reset): the handlers ask again
            return []
        groups, nbytes = self.server._plan(j.pieces(p.first, p.last - p.first + 1), self.budget.available(now_ns))
        if not groups:
            whole = self.server._plan(j.pieces(p.first, 1), float("inf"))[1]
            c[POOL_COUNTERS.budget_refused] += 1
            wait = self.budget.wait_ns(min(whole, self.budget.burst), now_ns)
            return self._send_reject(("rate_limited", p.first, p.last - p.first + 1, wait if wait > 0 else 1_000_000_000), now_ns)
        k = sum(map(len, groups))
        if k < p.last - p.first + 1:
            c[POOL_COUNTERS.budget_clipped] += 1
        self.budget.take(nbytes, now_ns)
        out = self.server._encode(self.server.session, p.first, groups)
        first = p.first
        for g in groups:
            self.own.append((first, len(g)))
            first += len(g)
        while len(self.own) > self.limits.max_recent:
            self.own.popleft()
        self._note_repaired(p.first, p.first + k - 1, now_ns)
        c[POOL_COUNTERS.answers] += 1
        c[POOL_COUNTERS.messages_sent] += k
        c[POOL_COUNTERS.bytes_sent] += nbytes
        return out

    def _send_reject(self, reject: tuple[str, int, int, int], now_ns: int) -> list[bytes]:
        c = self.counters.values
        if not self.budget.take(REJECT_BYTES, now_ns):
            c[POOL_COUNTERS.suppressed] += 1
            return []
        reason, seq, count, retry = reject
        self.own_rejects.append((REJECT_REASONS[reason], seq, min(count, 0xFFFF)))
        while len(self.own_rejects) > self.limits.max_recent:
            self.own_rejects.popleft()
        c[POOL_COUNTERS.rejects_sent] += 1
        c[POOL_COUNTERS.bytes_sent] += REJECT_BYTES
        return [self.server.reject_datagram(reason, seq, count, retry, now_ns)]

    def status(self) -> dict:
        return {**self.counters.as_dict(), "pending": sum(1 for _, _, p in self.pending if not p.done),
                "budget_bytes_per_s": self.budget.rate_per_s, "budget_available": int(self.budget.available(self.budget.last_ns))}
