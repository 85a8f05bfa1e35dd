"""The re-request server's sans-I/O core: validate, limit, deduplicate, answer or reject.

Rules:
1. Every request gets an answer: the retransmitted messages (ordinary downstream
   datagrams, split at `max_datagram_bytes`), or a retransmission reject (`J`, in a
   packet with sequence number 0) saying why and when to retry. The only requests
   not answered are repeats already answered inside the dedupe window, and requests
   whose requester cannot afford even a reject (both counted).
2. No amplification: everything sent to a requester, rejects included, is paid for from
   its own byte bucket and the global one; a requester can never get more bytes per
   second than its bucket, whatever it asks.
3. The requester table is bounded (least recently seen forgotten first), so a flood of
   spoofed addresses costs memory only up to the bound.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from decoders import CODECS, DecodeError
from decoders.moldudp64 import HEADER_SIZE, DatagramWriter, decode_request, encode_datagram
from mdcommon.counters import Counter, CounterSet

from .journal import Journal
from .ratelimit import TokenBucket

__all__ = ["RequestServer", "ServerLimits", "SERVER_COUNTERS", "REJECT_REASONS"]

REJECT_REASONS = {
    "too_old": ord("O"),
    "too_far_ahead": ord("A"),
    "rate_limited": ord("L"),
    "wrong_session": ord("W"),
    "malformed": ord("M"),
    "count_out_of_range": ord("C"),
}
_REJECT_BYTES = HEADER_SIZE + 2 + CODECS.by_name["retransmission_reject"].size

SERVER_COUNTERS = CounterSet(
    "rtx_server",
    [
        Counter(0, "requests", "requests received"),
        Counter(1, "served", "requests answered with data"),
        Counter(2, "messages_sent", "messages retransmitted"),
        Counter(3, "bytes_sent", "bytes sent to requesters (data and rejects)"),
        Counter(4, "rejected_too_old", "rejects: range before the journal"),
        Counter(5, "rejected_too_far_ahead", "rejects: range at or past the journal's head"),
        Counter(6, "rejected_rate_limited", "rejects: requester or global bucket empty"),
        Counter(7, "rejected_wrong_session", "rejects: another session"),
        Counter(8, "rejected_malformed", "rejects: not a request packet"),
        Counter(9, "rejected_count_out_of_range", "rejects: count 0 or above the maximum"),
        Counter(10, "deduplicated", "repeats inside the dedupe window, already answered"),
        Counter(11, "suppressed", "requests not even rejected: the requester's bucket cannot pay for a reject"),
        Counter(12, "requesters_evicted", "requesters forgotten to bound the table"),
    ],
)


@dataclass
class ServerLimits:
    """Per requester and global token buckets (rate/s, burst), and the request bounds."""

    max_request_messages: int = 2000
    max_datagram_bytes: int = 1400
    requester_requests: tuple[float, float] = (50.0, 20.0)
    requester_messages: tuple[float, float] = (100_000.0, 20_000.0)
    requester_bytes: tuple[float, float] = (10_000_000.0, 2_000_000.0)
    global_requests: tuple[float, float] = (2_000.0, 500.0)
    global_messages: tuple[float, float] = (1_000_000.0, 100_000.0)
    global_bytes: tuple[float, float] = (100_000_000.0, 10_000_000.0)
    dedupe_window_ns: int = 50_000_000
    too_far_retry_ns: int = 10_000_000
    max_requesters: int = 10_000


@dataclass
class _Requester:
    requests: TokenBucket
    messages: TokenBucket
    bytes: TokenBucket
    served: list[tuple[int, int, int]] = field(default_factory=list)  # (first, last, when)


class RequestServer:
    """Answers MoldUDP64 requests from a journal; see the module rules."""

    def __init__(self, journal: Journal, limits: ServerLimits | None = None, now_ns: int = 0) -> None:
        self.journal = journal
        self.limits = lim = limits or ServerLimits()
        self.session: bytes | None = None
        self.counters = SERVER_COUNTERS.new()
        self.requesters: OrderedDict[object, _Requester] = OrderedDict()
        self.g_requests = TokenBucket(*lim.global_requests, now_ns)
        self.g_messages = TokenBucket(*lim.global_messages, now_ns)
        self.g_bytes = TokenBucket(*lim.global_bytes, now_ns)
        self.writer = DatagramWriter(CODECS, lim.max_datagram_bytes)

    def _requester(self, addr: object, now_ns: int) -> _Requester:
        r = self.requesters.get(addr)
        if r is None:
            lim = self.limits
            r = _Requester(TokenBucket(*lim.requester_requests, now_ns), TokenBucket(*lim.requester_messages, now_ns),
                           TokenBucket(*lim.requester_bytes, now_ns))
            self.requesters[addr] = r
            if len(self.requesters) > lim.max_requesters:
                self.requesters.popitem(last=False)
                self.counters.values[SERVER_COUNTERS.requesters_evicted] += 1
        else:
            self.requesters.move_to_end(addr)
        return r

    def on_request(self, data: bytes | memoryview, addr: object, now_ns: int) -> list[bytes]:
        """The datagrams to send back to `addr` (possibly none)."""
        c = self.counters.values
        c[SERVER_COUNTERS.requests] += 1
        r = self._requester(addr, now_ns)
        try:
            session, seq, count = decode_request(data)
        except DecodeError:
            return self._reject(r, "malformed", 0, 0, 0, now_ns)
        if session != self.session:
            return self._reject(r, "wrong_session", seq, count, 0, now_ns)
        if not 1 <= count <= self.limits.max_request_messages:
            return self._reject(r, "count_out_of_range", seq, count, 0, now_ns)
        # cheapest limit first, so that a flood costs the server almost nothing per request
        wait = max(r.requests.wait_ns(1, now_ns), self.g_requests.wait_ns(1, now_ns))
        if wait != 0:
            return self._reject(r, "rate_limited", seq, count, wait if wait > 0 else 1_000_000_000, now_ns)
        j = self.journal
        if seq < j.first_sequence:
            return self._reject(r, "too_old", seq, count, 0, now_ns)
        if seq >= j.next_sequence:
            return self._reject(r, "too_far_ahead", seq, count, self.limits.too_far_retry_ns, now_ns)
        last = min(seq + count, j.next_sequence) - 1
        # dedupe: drop what this requester was sent inside the window
        window = self.limits.dedupe_window_ns
        r.served = [s for s in r.served if now_ns - s[2] < window]
        for first_s, last_s, _ in r.served:
            if first_s <= seq <= last_s:
                seq = last_s + 1
        if seq > last:
            c[SERVER_COUNTERS.deduplicated] += 1
            return []
        n = last - seq + 1
        avg = j.nbytes / len(j) if len(j) else 0  # estimate before fetching anything
        est_bytes = int(n * (avg + 2)) + HEADER_SIZE * (1 + n // 20)
        waits = [r.messages.wait_ns(n, now_ns), r.bytes.wait_ns(est_bytes, now_ns),
                 self.g_messages.wait_ns(n, now_ns), self.g_bytes.wait_ns(est_bytes, now_ns)]
        if any(w != 0 for w in waits):
            retry = max(waits) if all(w >= 0 for w in waits) else 1_000_000_000
            r.requests.take(1, now_ns)  # a refused request still spends the requester's request token
            return self._reject(r, "rate_limited", seq, count, retry, now_ns)
        for bucket, amount in ((r.requests, 1), (r.messages, n), (self.g_requests, 1), (self.g_messages, n)):
            bucket.take(amount, now_ns)
        blocks = j.get(seq, n)
        out = self._split(session, seq, blocks)
        sent = sum(len(d) for d in out)
        r.bytes.take(min(sent, r.bytes.tokens), now_ns)
        self.g_bytes.take(min(sent, self.g_bytes.tokens), now_ns)
        r.served.append((seq, last, now_ns))
        c[SERVER_COUNTERS.served] += 1
        c[SERVER_COUNTERS.messages_sent] += n
        c[SERVER_COUNTERS.bytes_sent] += sent
        return out

    def _split(self, session: bytes, seq: int, blocks: list[bytes]) -> list[bytes]:
        w = self.writer
        w.reset()
        out: list[bytes] = []
        first = seq
        for block in blocks:
            if not w.add_block(block):
                out.append(bytes(w.finish(session, first)))
                first += w.count
                w.reset()
                w.add_block(block)
        if w.count:
            out.append(bytes(w.finish(session, first)))
        return out

    def _reject(self, r: _Requester, reason: str, seq: int, count: int, retry_after_ns: int, now_ns: int) -> list[bytes]:
        c = self.counters.values
        if not r.bytes.take(_REJECT_BYTES, now_ns) or not self.g_bytes.take(_REJECT_BYTES, now_ns):
            c[SERVER_COUNTERS.suppressed] += 1  # answering would exceed the requester's (or the global) bytes
            return []
        c[getattr(SERVER_COUNTERS, f"rejected_{reason}")] += 1
        c[SERVER_COUNTERS.bytes_sent] += _REJECT_BYTES
        msg = (b"J", now_ns, REJECT_REASONS[reason], seq, min(count, 0xFFFF), retry_after_ns,
               self.journal.first_sequence, self.journal.next_sequence)
        return [encode_datagram(self.session or b" " * 10, 0, [CODECS.encode(msg)])]
