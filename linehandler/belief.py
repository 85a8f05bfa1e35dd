"""What the handler believes: the receive window, held claims, and which session is the channel's.

Part of `HandlerCore`. A datagram of our session within the window (what the stream carries
in `ahead_window_ns` at its measured rate) is admitted at once. Anything else (far ahead,
before our stream has started, or of another session) is a claim held aside in
`claims.py`, delivering nothing and opening no gap, until a later datagram continues it.
Another live session is reported as a `SessionConflict` and never followed while ours is
alive; it is followed only when ours ended or went silent past `stale_after` and the other's
datagrams corroborate each other. The rules and the forgeries they stop are listed in the
README ("What the handler promises") and docs/operations.md.
"""

from __future__ import annotations

from typing import Any

from decoders import DecodeError, parse_session
from decoders.moldudp64 import decode_messages

from .claims import Claim
from .counters import FEED_COUNTERS, STREAM_COUNTERS
from .events import SchemaMismatch, SessionChanged, SessionConflict
from .stream import FEEDS, NO_ACTIONS

__all__ = ["BeliefMixin"]


class BeliefMixin:
    """Deciding whether a sound datagram is admitted, held, or refused."""

    def _offer(self, feed: int, session: bytes, seq: int, count: int, data: Any, now_ns: int) -> list:
        """A datagram whose header is sound: admit it, hold it, or refuse it."""
        if session != self.session or self.expected is None:
            return self._unbelieved(feed, session, seq, count, data, now_ns)
        self.session_seen_ns = now_ns
        if seq > self.horizon + self.ahead_window and self._beyond_window(seq, now_ns):
            return self._hold(feed, session, seq, count, data, now_ns)
        return self._admit(feed, seq, count, data, now_ns)

    def _beyond_window(self, seq: int, now_ns: int) -> bool:
        """Re-measure the receive window from the stream's own rate (at most every 100 ms): what it carried in
        ahead_window_ns, within [min_ahead_messages, max_ahead_messages]. Is `seq` beyond it?"""
        p = self.policy
        mark_ns, mark_h = self.rate_mark
        elapsed = now_ns - mark_ns
        if elapsed >= 100_000_000:
            rate_per_ns = (self.horizon - mark_h) / elapsed if mark_h else 0.0
            self.ahead_window = max(p.min_ahead_messages, min(p.max_ahead_messages, int(rate_per_ns * p.ahead_window_ns)))
            self.rate_mark = (now_ns, self.horizon)
        return seq > self.horizon + self.ahead_window

    def _hold(self, feed: int, session: bytes, seq: int, count: int, data: Any, now_ns: int) -> list:
        """A claim the stream does not corroborate yet: held aside (bounded), delivering nothing and opening
        no gap; believed, with the claim it continues, once a later datagram continues it."""
        claim = Claim.of(feed, session, seq, count, data, now_ns)
        if not claim.heartbeat:
            try:
                decode_messages(claim.data, count, self.table)  # only well-formed datagrams are worth holding
            except DecodeError as exc:
                return self._malformed(feed, exc)
        claims = self.claims
        expired = claims.expire(now_ns - 2 * self.policy.stale_after_ns)
        repeat_after_ns = self.policy.gap_wait_max_ns if self.expected is None else None
        prev = claims.continued(claim.session, seq, claim.end, feed, claim.data, now_ns, repeat_after_ns)
        if prev is None:
            self.feed_counters[feed].values[FEED_COUNTERS.unconfirmed] += 1
            expired += claims.add(claim)
            if expired:
                self.counters.values[STREAM_COUNTERS.claims_dropped] += expired
            return NO_ACTIONS
        claims.take(prev)
        self.counters.values[STREAM_COUNTERS.claims_corroborated] += 1
        if claim.session != self.session or self.expected is None:
            self._adopt(claim.session, now_ns)
        self.session_seen_ns = now_ns
        # each at its own arrival time: A/B timing and gap detection are as if it had been believed at once
        actions = self._admit(prev.feed, prev.first, prev.count, prev.data, prev.arrival_ns)
        actions = actions + self._admit(feed, seq, count, claim.data, now_ns)
        return actions + self._admit_held(now_ns)

    def _admit_held(self, now_ns: int) -> list:
        """Held claims of the current session that the stream has now reached: believe them, in order."""
        if not self.claims.held or self.expected is None:
            return NO_ACTIONS
        actions: list = []
        for cl in sorted(self.claims.of_session(self.session), key=lambda cl: cl.first):
            if cl.first > self.horizon + self.ahead_window:
                break
            self.claims.take(cl)
            actions += self._admit(cl.feed, cl.first, cl.count, cl.data, min(cl.arrival_ns, now_ns))
        return actions

    def _unbelieved(self, feed: int, session: bytes, seq: int, count: int, data: Any, now_ns: int) -> list:
        """A datagram of another session than ours, or any datagram before our stream has started."""
        counts = self.feed_counters[feed].values
        tag, instance = parse_session(session)
        if self.schema_tag is None:
            instance = 0  # a foreign feed (ITCH): any session name, no instance order; new sessions are corroborated as ours are
        elif tag != self.schema_tag or instance is None:
            counts[FEED_COUNTERS.schema_mismatch] += 1
            if session not in self.refused_tags and len(self.refused_tags) < self.policy.max_refused_sessions:
                self.refused_tags.add(bytes(session))
                self.on_event(SchemaMismatch(FEEDS[feed], bytes(session), self.schema_tag))
            return NO_ACTIONS
        if self.expected is not None:
            # two live sessions on one channel (a stray plant, a forged instance): a conflict to report, not a
            # restart to follow. The other's datagrams are held, so that if ours has really gone (kill -9)
            # nothing of the new one is lost.
            over = self.ended or now_ns - self.session_seen_ns >= self.policy.stale_after_ns
            claim = Claim.of(feed, session, seq, count, data, now_ns)
            session = claim.session
            if over and self.claims.continued(session, seq, claim.end, feed, claim.data, now_ns, self.policy.gap_wait_max_ns):
                # ours ended (its end of session was believed) or went silent past stale_after (a crash), and
                # the other's datagrams corroborate each other: it is the channel's session now. Until then
                # ours stays, state and all, in case it was only cut off for a while.
                self._close_session("session ended before recovery")
                self.previous_session = self.session
                if self.ended:
                    self.retired.append(self.session)  # its stragglers are no conflict
                self._reset_stream(None, now_ns)
                actions: list = []
                for cl in self.claims.take_all():
                    actions += self._offer(cl.feed, cl.session, cl.first, cl.count, cl.data, cl.arrival_ns)
                return actions + self._offer(feed, session, seq, count, claim.data, now_ns)
            counts[FEED_COUNTERS.old_session if instance < self.session_instance else FEED_COUNTERS.other_session] += 1
            if (not over and session not in self.conflicting and session not in self.retired
                    and len(self.conflicting) < self.policy.max_refused_sessions):
                self.conflicting.add(session)
                self.counters.values[STREAM_COUNTERS.session_conflicts] += 1
                self.on_event(SessionConflict(FEEDS[feed], self.session, session))
            dropped = self.claims.add(claim)
            if dropped:
                self.counters.values[STREAM_COUNTERS.claims_dropped] += dropped
            return NO_ACTIONS
        if session in self.retired:
            counts[FEED_COUNTERS.old_session] += 1  # a straggler of a session we moved on from
            return NO_ACTIONS
        return self._hold(feed, session, seq, count, data, now_ns)  # even sequence 1: a stray plant starts there too

    def _adopt(self, session: bytes, now_ns: int) -> None:
        """`session` is the channel's from now on (its stream starts with the datagram being admitted)."""
        old = self.previous_session
        if old is not None and old != session:
            self.counters.values[STREAM_COUNTERS.session_changes] += 1
            self.on_event(SessionChanged(old, session))
            self.image = self.image_factory()
            self.refreshed.clear()
        self.session_instance = self._instance_of(session)
        self.conflicting.discard(session)
        self.previous_session = session
        self._reset_stream(session, now_ns)
