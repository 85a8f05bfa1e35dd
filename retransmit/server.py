"""The re-request server's sans-I/O core: validate, limit, deduplicate, answer or reject.

Rules:
1. Every request pays first: one token from its requester's request bucket and one
   from the global one, whatever becomes of it (malformed, wrong session, out of range,
   too old, too far ahead, repeat or served). A requester with no request token left
   gets one `rate_limited` reject saying when to come back, then nothing (counted as
   `suppressed`) until then: a flood of any kind of request costs one small answer per
   request token, never one per request.
2. Every request the server can afford gets an answer: the retransmitted messages
   (ordinary downstream datagrams, split at `max_datagram_bytes`), or a retransmission
   reject (`J`, in a packet with sequence number 0) saying why and when to retry. A
   reject echoes the request's own first sequence and count (the client matches rejects
   by them), even when deduplication trimmed the range. The only requests not answered
   are repeats already answered inside the dedupe window, and those of rule 1 or whose
   requester cannot afford even a reject (all counted).
3. No amplification, counted exactly: an answer's bytes (the datagrams as sent, headers
   included) are computed before anything is sent; the answer is clipped to the
   messages and bytes the requester's and the global buckets hold, refused with a
   precise retry-after if not one message fits, and exactly what is sent is charged.
   Rejects are paid from the same byte buckets. So the bytes sent to one requester in
   any window never exceed its byte burst + rate x window.
4. A requester is a host (the IP address of `addr`, which the I/O shell passes as
   `(ip, port)`), not a source port: a host's 64 ports share one set of buckets. Answers
   still go to the full address, which the shell does, and a repeat is recognised per address
   (rule 2's dedupe), since an answer reached that address only.
5. The requester table is bounded (least recently seen forgotten first), so a flood of
   spoofed addresses costs memory only up to the bound. The price: a host forgotten and
   seen again starts with full buckets; the global buckets still bound the total.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field

from decoders import CODECS, DecodeError
from decoders.moldudp64 import HEADER_SIZE, MAX_DATAGRAM_BYTES, decode_request, encode_datagram, encode_framed
from mdcommon.counters import Counter, CounterSet
from mdcommon.ratelimit import TokenBucket

from .journal import Journal, Piece

__all__ = ["RequestServer", "ServerLimits", "SERVER_COUNTERS", "REJECT_BYTES", "requester_key"]

_REJECT_CODEC = CODECS.by_name["retransmission_reject"]  # its reasons are the schema's (decoders/schema/control.py)
REJECT_BYTES = HEADER_SIZE + 2 + _REJECT_CODEC.size
# the smallest datagram limit that still carries any fixed-size message of the schema alone
_MIN_DATAGRAM_BYTES = HEADER_SIZE + 2 + max(c.size for c in CODECS.by_name.values() if c.size)
_REFUSED_RETRY_NS = 1_000_000_000  # retry-after when a limit can never be met (a bucket's burst is too small)

SERVER_COUNTERS = CounterSet(
    "rtx_server",
    [
        Counter(0, "requests", "requests received"),
        Counter(1, "served", "requests answered with data (whole or clipped to the buckets)"),
        Counter(2, "messages_sent", "messages retransmitted"),
        Counter(3, "bytes_sent", "bytes sent to requesters (data and rejects)"),
        Counter(4, "rejected_too_old", "rejects: range before the journal"),
        Counter(5, "rejected_too_far_ahead", "rejects: range at or past the journal's head"),
        Counter(6, "rejected_rate_limited", "rejects: requester or global bucket empty"),
        Counter(7, "rejected_wrong_session", "rejects: another session"),
        Counter(8, "rejected_malformed", "rejects: not a request packet"),
        Counter(9, "rejected_count_out_of_range", "rejects: count 0 or above the maximum"),
        Counter(10, "deduplicated", "repeats inside the dedupe window, already answered"),
        Counter(11, "suppressed", "requests not answered at all: no request token and already told when to retry, "
                                  "or the bytes buckets cannot pay for a reject"),
        Counter(12, "requesters_evicted", "requesters forgotten to bound the table"),
        Counter(13, "clipped", "answers cut short to what the message and byte buckets held"),
        Counter(14, "oversize_blocks", "journal messages larger than max_datagram_bytes allows, sent alone in a larger datagram"),
    ],
)


def _bucket_ok(rate_burst: tuple[float, float], min_burst: float) -> bool:
    """A (rate/s, burst) pair that can be met: both finite-or-infinite numbers >= 0 (NaN fails), and a
    burst that holds at least `min_burst` unless the rate is 0 (unlimited)."""
    if len(rate_burst) != 2:
        return False
    rate, burst = rate_burst
    if not (rate >= 0 and burst >= 0):
        return False
    return rate == 0 or burst >= min_burst


@dataclass
class ServerLimits:
    """Per requester and global token buckets (rate/s, burst; rate 0 = unlimited), and the request bounds.

    Checked when built, so a configuration that could never serve anything, or that the
    wire cannot express, fails at start-up instead of rejecting every request at run time.
    """

    max_request_messages: int = 2000  # a request's count is a u16 on the wire: 1..65535
    max_datagram_bytes: int = 1400  # must hold a header and any fixed-size message; at most a UDP payload
    requester_requests: tuple[float, float] = (50.0, 20.0)
    requester_messages: tuple[float, float] = (100_000.0, 20_000.0)
    requester_bytes: tuple[float, float] = (10_000_000.0, 2_000_000.0)
    global_requests: tuple[float, float] = (2_000.0, 500.0)
    global_messages: tuple[float, float] = (1_000_000.0, 100_000.0)
    global_bytes: tuple[float, float] = (100_000_000.0, 10_000_000.0)
    dedupe_window_ns: int = 50_000_000
    too_far_retry_ns: int = 10_000_000
    max_requesters: int = 10_000

    def __post_init__(self) -> None:
        if not 1 <= self.max_request_messages <= 0xFFFF:
            raise ValueError(f"max_request_messages {self.max_request_messages} outside 1..65535 (a u16 on the wire)")
        if not _MIN_DATAGRAM_BYTES <= self.max_datagram_bytes <= MAX_DATAGRAM_BYTES:
            raise ValueError(f"max_datagram_bytes {self.max_datagram_bytes} outside {_MIN_DATAGRAM_BYTES}..{MAX_DATAGRAM_BYTES} "
                             "(a header and one message, up to a UDP payload)")
        for name, min_burst in (("requester_requests", 1), ("requester_messages", 1), ("global_requests", 1),
                                ("global_messages", 1), ("requester_bytes", _MIN_DATAGRAM_BYTES),
                                ("global_bytes", _MIN_DATAGRAM_BYTES)):
            if not _bucket_ok(getattr(self, name), min_burst):
                raise ValueError(f"{name} {getattr(self, name)!r}: (rate/s, burst) must not be negative, and a limited "
                                 f"bucket's burst must hold at least {min_burst}")
        for name in ("dedupe_window_ns", "too_far_retry_ns"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name)} must not be negative")
        if self.max_requesters < 1:
            raise ValueError(f"max_requesters {self.max_requesters} must be at least 1")


@dataclass
class _Requester:
    requests: TokenBucket
    messages: TokenBucket
    bytes: TokenBucket
    served: list[tuple[int, int, int, object]] = field(default_factory=list)  # (first, last, when, address sent to)
    quiet_until_ns: int = 0  # told "rate limited, retry after": no answer at all before this


def requester_key(addr: object) -> object:
    """The host of an `(ip, port)` address (rule 4); any other hashable is its own key (tests)."""
    return addr[0] if isinstance(addr, tuple) and addr else addr


class AnswerDatagram:
    """One datagram of an answer, planned: `count` messages, framed, as runs (memoryviews of journal segments)."""

    __slots__ = ("runs", "count")

    def __init__(self, runs: list[memoryview], count: int) -> None:
        self.runs = runs
        self.count = count

    def __len__(self) -> int:
        return self.count


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

    def _requester(self, key: object, now_ns: int) -> _Requester:
        r = self.requesters.get(key)
        if r is None:
            lim = self.limits
            r = _Requester(TokenBucket(*lim.requester_requests, now_ns), TokenBucket(*lim.requester_messages, now_ns),
                           TokenBucket(*lim.requester_bytes, now_ns))
            self.requesters[key] = r
            if len(self.requesters) > lim.max_requesters:
                self.requesters.popitem(last=False)
                self.counters.values[SERVER_COUNTERS.requesters_evicted] += 1
        else:
            self.requesters.move_to_end(key)
        return r

    def on_request(self, data: bytes | memoryview, addr: object, now_ns: int) -> list[bytes]:
        """The datagrams to send back to `addr` (possibly none)."""
        c = self.counters.values
        c[SERVER_COUNTERS.requests] += 1
        r = self._requester(requester_key(addr), now_ns)
        try:
            session, seq, count = decode_request(data)  # pure and cheap: read first, so every reject can echo it
        except DecodeError:
            session, seq, count = None, 0, 0
        # rule 1: a request token from the requester and the global bucket, before anything else
        waits = (r.requests.wait_ns(1, now_ns), self.g_requests.wait_ns(1, now_ns))
        if waits != (0, 0):
            if now_ns < r.quiet_until_ns:
                c[SERVER_COUNTERS.suppressed] += 1  # already told when to come back
                return []
            retry = max(waits) if min(waits) >= 0 else _REFUSED_RETRY_NS
            r.quiet_until_ns = now_ns + retry
            return self._reject(r, "rate_limited", seq, count, retry, now_ns)
        r.requests.take(1, now_ns)
        self.g_requests.take(1, now_ns)
        refused = self.check(session, seq, count)
        if refused is not None:
            return self._reject(r, *refused, now_ns)
        j = self.journal
        last = min(seq + count, j.next_sequence) - 1
        # dedupe: drop what this requester was sent inside the window
        first = seq
        window = self.limits.dedupe_window_ns
        r.served = [x for x in r.served if now_ns - x[2] < window]
        # by first sequence, so ranges sent in any order all count; only what went to this very address: two handlers
        # on one host share the host's buckets, but one's answer never reached the other
        for first_s, last_s, _, to in sorted(r.served, key=lambda x: x[:3]):
            if to == addr and first_s <= first <= last_s:
                first = last_s + 1
        if first > last:
            c[SERVER_COUNTERS.deduplicated] += 1
            return []
        n = last - first + 1
        # rule 3: clip to the messages the buckets hold ...
        m_buckets = (r.messages, self.g_messages)
        n_ok = min(n, min(b.available(now_ns) for b in m_buckets))  # infinite when both are unlimited
        if n_ok < 1:
            return self._reject(r, "rate_limited", seq, count, self._wait(m_buckets, n, now_ns), now_ns)
        pieces = j.pieces(first, int(n_ok))
        # ... then to the bytes, counted on the datagrams themselves
        b_buckets = (r.bytes, self.g_bytes)
        groups, sent = self._plan(pieces, min(b.available(now_ns) for b in b_buckets))
        if not groups:
            whole = self._plan(pieces, math.inf)[1]
            return self._reject(r, "rate_limited", seq, count, self._wait(b_buckets, whole + REJECT_BYTES, now_ns), now_ns)
        out = self._encode(session, first, groups)
        k = sum(map(len, groups))
        for bucket, amount in ((r.messages, k), (self.g_messages, k), (r.bytes, sent), (self.g_bytes, sent)):
            bucket.take(amount, now_ns)  # never refused: amount <= what the bucket held just now
        r.served.append((first, first + k - 1, now_ns, addr))
        if k < n:
            c[SERVER_COUNTERS.clipped] += 1
        c[SERVER_COUNTERS.served] += 1
        c[SERVER_COUNTERS.messages_sent] += k
        c[SERVER_COUNTERS.bytes_sent] += sent
        return out

    def check(self, session: bytes | None, seq: int, count: int) -> tuple[str, int, int, int] | None:
        """Why a request cannot be served from the journal, as reject arguments (reason, sequence, count,
        retry-after), or None when it can (at least in part)."""
        if session is None:
            return ("malformed", 0, 0, 0)
        if session != self.session:
            return ("wrong_session", seq, count, 0)
        if not 1 <= count <= self.limits.max_request_messages:
            return ("count_out_of_range", seq, count, 0)
        j = self.journal
        if seq < j.first_sequence:
            return ("too_old", seq, count, 0)
        if seq >= j.next_sequence:
            return ("too_far_ahead", seq, count, self.limits.too_far_retry_ns)
        return None

    @staticmethod
    def _wait(buckets: tuple[TokenBucket, ...], amount: float, now_ns: int) -> int:
        """When all `buckets` will hold `amount` (or their burst, if `amount` is more: an answer is clipped to it)."""
        waits = [b.wait_ns(min(amount, b.burst), now_ns) for b in buckets]
        return max(waits) if min(waits) >= 0 else _REFUSED_RETRY_NS

    def _plan(self, pieces: list[Piece], budget: float) -> tuple[list[AnswerDatagram], int]:
        """(datagrams, their bytes as sent): the framed messages of `pieces` (`Journal.pieces`) packed in order,
        each datagram filled up to `max_datagram_bytes`, stopping before the first message whose bytes (its length
        prefix, and a header if it opens a datagram) exceed `budget`. A message too big for `max_datagram_bytes`
        goes alone, never dropped. Runs of messages are measured on their offsets (a bisection per datagram and
        segment), not message by message. The packet's message limit (65,534) needs no check: a datagram of at most
        65,507 bytes holds at most 21,829 framed messages of 3 bytes or more."""
        max_bytes = self.limits.max_datagram_bytes
        if budget != math.inf:  # whole bytes: `off[k] + room` below then cannot round a float budget up
            budget = math.floor(budget)
        groups: list[AnswerDatagram] = []
        group: AnswerDatagram | None = None
        size = 0  # of the open datagram
        total = 0  # of the closed ones
        for data, off, k, stop in pieces:
            view = memoryview(data)
            while k < stop:
                if group is not None:  # as many of blocks k.. as the open datagram and the budget hold
                    room = max_bytes - size
                    if budget - total - size < room:
                        room = budget - total - size
                    if room > 0:
                        end = off[k] + room
                        j = stop if off[stop] <= end else bisect_right(off, end, k, stop) - 1  # all of them, usually
                        if j > k:
                            group.runs.append(view[off[k] : off[j]])
                            group.count += j - k
                            size += off[j] - off[k]
                            k = j
                            continue
                add = off[k + 1] - off[k]  # block k does not join the open datagram (if any): it opens the next one
                if total + size + HEADER_SIZE + add > budget:
                    break
                if group is not None:
                    groups.append(group)
                    total += size
                group = AnswerDatagram([view[off[k] : off[k + 1]]], 1)
                size = HEADER_SIZE + add
                k += 1
            else:
                continue
            break
        if group is not None:
            groups.append(group)
            total += size
        return groups, total

    def _encode(self, session: bytes, first: int, groups: list[AnswerDatagram]) -> list[bytes]:
        out: list[bytes] = []
        max_bytes = self.limits.max_datagram_bytes
        for g in groups:
            datagram = encode_framed(session, first, g.count, g.runs)
            if len(datagram) > max_bytes:
                self.counters.values[SERVER_COUNTERS.oversize_blocks] += 1
            out.append(datagram)
            first += g.count
        return out

    def _reject(self, r: _Requester, reason: str, seq: int, count: int, retry_after_ns: int, now_ns: int) -> list[bytes]:
        """A `J` reject echoing the request's own `seq` and `count`, paid from the byte buckets like data."""
        c = self.counters.values
        if r.bytes.available(now_ns) < REJECT_BYTES or self.g_bytes.available(now_ns) < REJECT_BYTES:
            c[SERVER_COUNTERS.suppressed] += 1  # answering would exceed the requester's (or the global) bytes
            return []
        r.bytes.take(REJECT_BYTES, now_ns)
        self.g_bytes.take(REJECT_BYTES, now_ns)
        c[getattr(SERVER_COUNTERS, f"rejected_{reason}")] += 1
        c[SERVER_COUNTERS.bytes_sent] += REJECT_BYTES
        return [self.reject_datagram(reason, seq, count, retry_after_ns, now_ns)]

    def reject_datagram(self, reason: str, seq: int, count: int, retry_after_ns: int, now_ns: int) -> bytes:
        """The `J` reject packet (sequence number 0) echoing a request's `seq` and `count`; nothing charged."""
        msg = _REJECT_CODEC.from_dict({"timestamp_ns": now_ns, "reason": reason, "requested_sequence_number": seq,
                                       "requested_message_count": min(count, 0xFFFF), "retry_after_ns": retry_after_ns,
                                       "first_available_sequence_number": self.journal.first_sequence,
                                       "next_sequence_number": self.journal.next_sequence})
        return encode_datagram(self.session or b" " * 10, 0, [_REJECT_CODEC.encode(msg)])
