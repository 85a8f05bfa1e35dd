"""Datagrams the handler has not yet believed: claims far beyond the stream's horizon, the first
datagrams of a stream, and the datagrams of another live session.

Why (PGM's receive window, RFC 3208; TCP's in-window checks, RFC 5961): a receiver that acts on
whatever sequence number or session a single datagram claims can be made to skip, stall or switch
streams by one forged or misdirected datagram. So a claim that the stream cannot corroborate yet is
held here, delivers nothing and opens no gap, until a later datagram continues it:
- data `[first, end)` is continued by data starting at `end`, or by a heartbeat announcing `end`
  (the plant heartbeats after its data); a byte copy of held data continues nothing;
- a heartbeat announcing `n` is continued by data starting at `n`; before any stream is believed
  (a handler started while the plant is idle), also by the same announcement again on the same feed
  some time later (an idle plant repeats its heartbeat every interval on each feed; one forged
  datagram copied to both feeds, or sent twice at once, does not). Once a stream runs, a heartbeat
  far beyond it is believed only when data continues it: a repeated forgery must not open a gap. Anything held is bounded in datagrams and bytes,
oldest forgotten first, and expires after a while; every claim that leaves without being believed
is counted by the caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from decoders.moldudp64 import END_OF_SESSION_COUNT, HEARTBEAT_COUNT

__all__ = ["Claim", "Claims"]


@dataclass(slots=True, eq=False)
class Claim:
    feed: int
    session: bytes
    first: int  # first sequence carried (a heartbeat: the sequence it announces)
    end: int  # one past the last message (a heartbeat: the sequence it announces)
    count: int  # message count field: 0 heartbeat, 0xFFFF end of session
    data: bytes
    arrival_ns: int
    live: bool = True  # False once taken out (believed, expired or evicted)

    @property
    def heartbeat(self) -> bool:
        return self.first == self.end

    @classmethod
    def of(cls, feed: int, session: Any, first: int, count: int, data: Any, arrival_ns: int) -> Claim:
        """A claim from a datagram's header fields, its bytes copied (they may be a view of a receive buffer)."""
        end = first if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT) else first + count
        return cls(feed, bytes(session), first, end, count, data if type(data) is bytes else bytes(data), arrival_ns)


class Claims:
    """Held datagrams by (session, end), with one arrival-ordered queue for the bounds."""

    def __init__(self, max_datagrams: int, max_bytes: int) -> None:
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.by_end: dict[tuple[bytes, int], list[Claim]] = {}
        self.order: deque[Claim] = deque()
        self.held = 0
        self.nbytes = 0

    def __len__(self) -> int:
        return self.held

    def add(self, claim: Claim) -> int:
        """Hold `claim`; returns how many older claims were forgotten to stay within the bounds."""
        self.by_end.setdefault((claim.session, claim.end), []).append(claim)
        self.order.append(claim)
        self.held += 1
        self.nbytes += len(claim.data)
        evicted = 0
        while self.held > self.max_datagrams or self.nbytes > self.max_bytes:
            if self._pop_oldest() is None:
                break
            evicted += 1
        return evicted

    def _pop_oldest(self) -> Claim | None:
        order = self.order
        while order:
            c = order.popleft()
            if c.live:
                self.take(c)
                return c
        return None

    def take(self, claim: Claim) -> None:
        if not claim.live:
            return
        claim.live = False
        self.held -= 1
        self.nbytes -= len(claim.data)
        key = (claim.session, claim.end)
        same = self.by_end.get(key)
        if same is not None:
            same.remove(claim)
            if not same:
                del self.by_end[key]
        if not self.held:
            self.order.clear()

    def continued(self, session: bytes, first: int, end: int, feed: int, data: bytes, now_ns: int,
                  repeat_after_ns: int | None) -> Claim | None:
        """The held claim that a datagram of `session` carrying `[first, end)` (a heartbeat: first == end)
        continues, if any; see the module rules. A heartbeat repeats one held on its feed only when it comes
        `repeat_after_ns` or more later (the plant's next heartbeat, not a copy sent in the same breath);
        None: repeated heartbeats corroborate nothing (once a stream runs, only its data can carry it far)."""
        for c in self.by_end.get((session, first), ()):
            if first != end:
                if c.data != data:
                    return c  # data starting where a claim ends (data or heartbeat); a copy corroborates nothing
            elif not c.heartbeat:
                return c  # a heartbeat announcing where held data ends
            elif repeat_after_ns is not None and c.feed == feed and now_ns - c.arrival_ns >= repeat_after_ns:
                return c  # the same announcement again on its feed, an interval later
        return None

    def of_session(self, session: bytes) -> list[Claim]:
        return [c for c in self.order if c.live and c.session == session]

    def take_all(self) -> list[Claim]:
        """Every held claim, oldest first, taken out."""
        out = [c for c in self.order if c.live]
        for c in out:
            self.take(c)
        return out

    def expire(self, older_than_ns: int) -> int:
        """Forget claims that arrived before `older_than_ns`; returns how many."""
        n = 0
        order = self.order
        while order and (not order[0].live or order[0].arrival_ns < older_than_ns):
            c = order.popleft()
            if c.live:
                self.take(c)
                n += 1
        return n
