"""Recovery scheduling: gaps are waited for, asked for (NACKs), timed out, failed over and given up.

Part of `HandlerCore`. A gap first waits a random gap-wait, as the other feed usually fills
it. Then it is asked for in ranges of at most `max_request_messages`, under two client token
buckets (requests and messages), with at most `max_outstanding_requests` in flight, jittered
exponential backoff, failover across servers (a silent one is held down) and obedience to
rejects. When requests are scarce one request may cover several gaps (`_coalesce`). After
`give_up_ns` the gap is reported unrecoverable (and the replica refreshed from an image).
Retransmissions arrive here too, as the third feed R. The numbers: docs/architecture.md.

Anonymous recovery (`request_group`): server 0 is then the channel's request group, heard by
a pool of servers and by every other handler, whose repairs come back on the repair group as
feed R. A gap's first NACK waits a truncated exponential back-off (RFC 5401), so that of the
handlers missing the same datagrams one usually asks first; the others hear its request and
wait for the repair instead (`on_request_heard`, SRM/PGM suppression). A heard request stands
in for ours only if it starts where our gap starts, for a quarter of a request timeout, at most
once per own attempt, and a rate-limited reject of it sends us to ask ourselves: another
requester's flood can delay a gap's own NACK, never stop it.
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Any

from decoders import CODECS, REJECT_REASONS, RETRANSMISSION_REJECT, DecodeError
from decoders.moldudp64 import END_OF_SESSION_COUNT, HEARTBEAT_COUNT, decode_datagram, decode_header, decode_request

from .counters import FEED_COUNTERS, STREAM_COUNTERS
from .events import FeedStale, SendNack
from .gaps import Gap
from .stream import FEEDS, NO_ACTIONS

__all__ = ["RecoveryMixin"]

_REJECT_FIELDS = itemgetter(*CODECS.by_name["retransmission_reject"].slots(
    "reason", "requested_sequence_number", "retry_after_ns", "first_available_sequence_number", "requested_message_count"))
_RATE_LIMITED, _TOO_OLD, _TOO_FAR_AHEAD = (REJECT_REASONS[n] for n in ("rate_limited", "too_old", "too_far_ahead"))


class RecoveryMixin:
    """Timers, requests and their answers."""

    def on_unicast(self, data: Any, server: int, now_ns: int) -> list:
        """A datagram from re-request server `server`: retransmitted data or a reject."""
        counts = self.feed_counters[2].values
        counts[0] += 1
        try:
            session, seq, count = decode_header(data)
        except DecodeError as exc:
            return self._malformed(2, exc)
        if session != self.session:
            counts[FEED_COUNTERS.old_session] += 1
            return NO_ACTIONS
        if seq == 0:
            if self.schema_tag is None:
                return NO_ACTIONS  # a foreign feed's server: our reject message is not its schema
            try:
                msgs = decode_datagram(data, self.table)[3]
            except DecodeError as exc:
                return self._malformed(2, exc)
            self.server_down_until[server] = 0  # it answers
            for m in msgs:
                if m[0] == RETRANSMISSION_REJECT:
                    self._on_reject(server, m, now_ns)
            return NO_ACTIONS
        if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT) or self.expected is None:
            return NO_ACTIONS
        end = seq + count
        self.server_down_until[server] = 0  # it answers
        if server == 0 and self.request_group and end > self.horizon:
            # the repair group is a third feed: a repair another handler asked for may run ahead of what we have
            # seen (our copy of the feed is late, or lost too). Within the receive window it is believed like a
            # feed datagram, opening the gap before it; beyond, it is a claim held like any other.
            return self._offer(2, session, seq, count, data, now_ns)
        counts[FEED_COUNTERS.messages] += count
        if end <= self.expected:
            counts[FEED_COUNTERS.duplicates] += count
            first_copy = self.recent.get(seq)
            if first_copy is not None and first_copy[2] == bytes(data):
                return NO_ACTIONS
            return self._check_delivered(2, seq, data)
        try:
            msgs = decode_datagram(data, self.table)[3]
        except DecodeError as exc:
            return self._malformed(2, exc)
        if end > self.horizon:
            # nothing was asked beyond the horizon: a server never widens what we know exists
            keep = max(0, self.horizon - seq)
            self.counters.values[STREAM_COUNTERS.unrequested] += count - keep
            if not keep:
                return NO_ACTIONS
            msgs, data, end = msgs[:keep], None, seq + keep
        actions = self._merge(2, seq, msgs, now_ns, data, now_ns if seq not in self.recent else None)
        # the gaps a capped request did not reach (split off by this answer) are asked for now
        for g in self.gaps.gaps.irange_key(seq, end + self.policy.max_request_messages):
            if g.outstanding and g.first >= g.sent_first + g.sent_count:
                self.gaps.set_outstanding(g, False)
                g.due_ns = now_ns
                self.gaps.schedule(g)
        return actions

    def on_request_heard(self, data: Any, now_ns: int) -> list:
        """A request on the request group: another handler's (or ours, looped back). The gap that starts where it
        starts, if no request of ours is out for it, waits for its repair instead of asking."""
        c = self.counters.values
        c[STREAM_COUNTERS.requests_heard] += 1
        if not self.request_group or self.expected is None or self.joining:
            return NO_ACTIONS
        try:
            session, seq, count = decode_request(data)
        except DecodeError:
            return NO_ACTIONS  # not a request: the servers count and refuse it; nothing here depends on it
        if session != self.session or not seq or not count:
            return NO_ACTIONS  # another session's, or an image query
        timeout = now_ns + self._heard_timeout()
        self.heard_recent.append((seq, seq + count - 1, timeout))  # for gaps we have not seen yet (_new_gap)
        i = self.gaps.gaps.bisect_key_left(seq)
        if i < len(self.gaps):
            g = self.gaps.gaps[i]
            # only a request from the gap's own first sequence: a handler that lost the same datagrams asks exactly
            # that, while a stranger asking for some range that happens to cover our gap (a bad apple, a handler
            # far behind) would make us wait on an answer the servers may never give it
            if g.first == seq and not (g.abandoned or g.outstanding or g.heard > g.attempts) and self.server_down_until[0] <= now_ns:
                g.heard += 1
                g.server, g.sent_first, g.sent_count = 0, seq, count
                self.gaps.set_outstanding(g, True, by_other=True)
                g.timeout_ns = timeout
                self.gaps.schedule(g)
                c[STREAM_COUNTERS.nacks_suppressed] += 1
        return NO_ACTIONS

    def _heard_timeout(self) -> int:
        """How long a heard request stands for ours: its repair comes within a server's answer slot, so a quarter
        of our own request timeout, not all of it (a request the servers refuse silently costs us no more)."""
        return self.policy.request_timeout_ns // 4

    def _group_wait(self) -> int:
        """The wait before a gap's NACK to the request group: the shortest gap-wait, then a back-off below
        `group_backoff_ns` drawn from a truncated exponential with lambda = ln(group size) + 1 (RFC 5401, section
        3.4.1; Aeron's multicast NAK delay), so most handlers wait long and the earliest one is usually alone: the
        others hear its request. The window is wider than the unicast gap-wait for margin: a second request goes
        when a handler's wait ends before the first request has reached it and been read. For 8 handlers and 1 ms
        of that delay (a busy host) a 20 ms window gives 1.25 requests per gap, a 9 ms one 1.6; the test LAN,
        where it is well under 1 ms, measures 1.0-1.1 (tests/lan/test_pool_scenarios.py, scenario 13)."""
        p = self.policy
        lam = math.log(max(2, p.group_size_estimate)) + 1.0
        return p.gap_wait_min_ns + int(p.group_backoff_ns * math.log(self.rng.random() * math.expm1(lam) + 1.0) / lam)

    def _on_reject(self, server: int, m: tuple, now_ns: int) -> None:
        reason, req_seq, retry_after_ns, first_available, req_count = _REJECT_FIELDS(m)
        self.counters.values[STREAM_COUNTERS.rejects] += 1
        group = self.request_group and server == 0
        for g in list(self.gaps.gaps.irange_key(req_seq, req_seq + self.policy.max_request_messages)):
            if not (g.outstanding and g.server == server and g.sent_first == req_seq):
                continue
            if group and min(g.sent_count, 0xFFFF) != req_count:
                continue  # on the group a reject answers whoever asked: ours only if it echoes our count too
            heard = g.by_other
            self.gaps.set_outstanding(g, False)
            if heard and reason == _RATE_LIMITED:
                g.due_ns = max(g.due_ns, now_ns + self._group_wait())  # the requester we heard is limited, not us: ask ourselves
            else:
                self._answer_reject(g, server, reason, retry_after_ns, first_available, now_ns)
            self.gaps.schedule(g)

    def _answer_reject(self, g: Gap, server: int, reason: int, retry_after_ns: int, first_available: int, now_ns: int) -> None:
        """When `g` may be asked for again, and of whom, after `server` refused it for `reason`."""
        if reason == _RATE_LIMITED:
            g.due_ns = now_ns + max(retry_after_ns, 1)
        elif reason == _TOO_OLD and self.request_group and server == 0 and g.failures_on_server + 1 < self.policy.retries_per_server:
            # one pool server's journal does not reach back that far; another's may (a server that joined late, or
            # whose mirror had a gap): ask the group again before believing the pool has lost it
            g.failures_on_server += 1
            g.due_ns = now_ns + self._backoff(g)
        elif reason == _TOO_OLD:
            g.too_old_servers |= 1 << server
            if g.too_old_servers == (1 << self.nack_servers) - 1:
                self._give_up(g, f"too_old: first available {first_available}", now_ns)
            else:
                self._next_server(g, now_ns)
                g.due_ns = now_ns
        elif reason == _TOO_FAR_AHEAD:
            # the server has not mirrored that far yet (it is behind us, or repairing): ask again when it
            # says, elsewhere if there is another server; a whole request timeout here cost 200 ms per gap
            g.due_ns = now_ns + max(retry_after_ns, self.policy.gap_wait_min_ns)
            self._next_server(g, now_ns)
        else:
            self._next_server(g, now_ns)
            g.due_ns = now_ns + self._backoff(g)

    def _new_gap(self, first: int, last: int, now_ns: int) -> Gap:
        p = self.policy
        server = self._pick_server(now_ns)
        if self.request_group and server == 0:
            wait = self._group_wait()
        else:
            wait = p.gap_wait_min_ns + int(self.rng.random() * (p.gap_wait_max_ns - p.gap_wait_min_ns))
        self.counters.values[STREAM_COUNTERS.gaps_detected] += 1
        gap = Gap(first, last, now_ns, now_ns + wait, server=server)
        if self.request_group and self.heard_recent and not self.joining and server == 0:
            # another handler asked for it before we saw it missing (our copy of the feed is behind theirs): its
            # repair is on the way, so wait for it as for a request heard now, until that request times out
            for h_first, h_last, until in reversed(self.heard_recent):
                if h_first == first and until > now_ns:
                    gap.server, gap.sent_first, gap.sent_count, gap.timeout_ns = 0, h_first, h_last - h_first + 1, until
                    gap.outstanding = gap.by_other = True
                    gap.heard = 1
                    self.counters.values[STREAM_COUNTERS.nacks_suppressed] += 1
                    break
        return gap

    def _pick_server(self, now_ns: int) -> int:
        """The request group while it answers; else a random server among those answering (spreads the load),
        any server if none is."""
        if self.nack_servers <= 1 or (self.request_group and self.server_down_until[0] <= now_ns):
            return 0
        up = [i for i, until in enumerate(self.server_down_until) if until <= now_ns]
        return self.rng.choice(up) if up else self.rng.randrange(self.nack_servers)

    def _coalesce(self, g: Gap, count: int, now_ns: int, reach: int) -> list[Gap]:
        """`g` and the gaps after it that one request can also cover: idle, older than the shortest gap-wait
        (the other feed had its chance; their own random wait need not be over), and within
        `max_request_messages` of g's start with at most `reach` already held between neighbours
        (0 while requests are plenty, see on_timer). Under loss that hits both feeds alike this turns many
        small gaps into few requests (the held messages come back as duplicates, within the message
        budget), so the request rate limit is not what loses data."""
        p = self.policy
        members = [g]
        if count < g.last - g.first + 1 or reach <= 0:
            return members
        end = g.first + p.max_request_messages - 1
        for n in self.gaps.after(g):
            if (n.abandoned or n.outstanding or n.detected_ns + p.gap_wait_min_ns > now_ns or n.last > end
                    or n.first - members[-1].last - 1 > reach):
                break
            members.append(n)
        return members

    def _requests_needed(self, now_ns: int, reach: int) -> int:
        """How many requests the gaps past their first chance on the other feed would take, coalesced across
        at most `reach` held messages."""
        p = self.policy
        needed = 0
        start = last = -1
        for g in self.gaps:
            if g.abandoned or g.outstanding or g.detected_ns + p.gap_wait_min_ns > now_ns:
                start = -1
                continue
            if start < 0 or g.last >= start + p.max_request_messages or g.first - last - 1 > reach:
                needed += 1
                start = g.first
            last = g.last
        return needed

    def _next_server(self, g: Gap, now_ns: int) -> None:
        """Round robin to the next server, skipping those held down while any is not."""
        n = self.nack_servers
        if n > 1:
            order = [(g.server + k) % n for k in range(1, n + 1)]
            g.server = next((i for i in order if self.server_down_until[i] <= now_ns and i != g.server), order[0])
            g.failures_on_server = 0
            self.counters.values[STREAM_COUNTERS.server_failovers] += 1

    def _server_down(self, server: int, now_ns: int) -> None:
        """`server` stopped answering: hold it down, and move the gaps waiting to ask it elsewhere now."""
        if self.nack_servers <= 1 or self.server_down_until[server] > now_ns:
            return
        self.server_down_until[server] = now_ns + self.policy.server_holddown_ns
        for g in self.gaps:
            if g.server == server and not g.outstanding and not g.abandoned:
                g.server = self._pick_server(now_ns)
                g.failures_on_server = 0

    def _backoff(self, g: Gap) -> int:
        base = self.policy.request_timeout_ns * (1 << min(g.attempts, 10))
        return int(min(base, self.policy.backoff_max_ns) * (0.5 + self.rng.random()))

    def _give_up(self, g: Gap, reason: str, now_ns: int) -> None:
        if g.abandoned:
            return
        self.gaps.abandon(g, reason)
        self.gaps.set_outstanding(g, False)
        if self.policy.resync_on_unrecoverable and self.image_servers and self.resync is None and not self.joining:
            self.resync = []  # refresh the replica from an image while delivery carries on
            self.resync_from = self.expected
            self.image_due_ns = now_ns
        if not self.joining:
            self._drain()

    def _in_flight(self) -> int:
        """Requests outstanding: one per (server, first sequence asked), however many gaps it covers."""
        return self.gaps.in_flight()

    def next_timer(self) -> int | None:
        deadlines = [self.last_rx_ns[0] + self.policy.stale_after_ns if not self.stale[0] else None,
                     self.last_rx_ns[1] + self.policy.stale_after_ns if not self.stale[1] else None]
        if not self.joining:  # while joining nothing is asked for or given up: the image may cover it
            # with every request slot taken, a gap whose wait is over waits for an answer or a timeout, not for
            # its own due time (that would wake the loop at once, again and again)
            deadlines.append(self.gaps.next_deadline(self._in_flight() >= self.policy.max_outstanding_requests))
        if self.image_due_ns is not None:
            deadlines.append(self.image_due_ns)
        return min((d for d in deadlines if d is not None), default=None)

    def on_timer(self, now_ns: int) -> list:
        """Whatever is due by `now_ns`: feeds gone silent, an image to fetch, requests to send, time out or give up."""
        self._watch_feeds(now_ns)
        actions: list = []
        if self.image_due_ns is not None and now_ns >= self.image_due_ns:
            actions += self._image_actions(now_ns)
        if self.claims.held:
            expired = self.claims.expire(now_ns - 2 * self.policy.stale_after_ns)
            if expired:
                self.counters.values[STREAM_COUNTERS.claims_dropped] += expired
        if not self.joining:  # while joining nothing is asked for or given up: the image may cover it
            actions += self._service_gaps(now_ns)
            if self.expected is not None:
                self._drain()
        self._update_quality("recovery")
        return actions

    def _watch_feeds(self, now_ns: int) -> None:
        """A feed silent for `stale_after` is reported stale, once (it recovers on its next datagram)."""
        for feed in (0, 1):
            silent_ns = now_ns - self.last_rx_ns[feed]
            if not self.stale[feed] and silent_ns >= self.policy.stale_after_ns:
                self.stale[feed] = True
                self.feed_counters[feed].values[FEED_COUNTERS.stale_events] += 1
                self.on_event(FeedStale(FEEDS[feed], silent_ns))
                self._update_quality(f"feed {FEEDS[feed]} silent")

    def _service_gaps(self, now_ns: int) -> list:
        """Each open gap in order: give it up past `give_up_ns`, time out its unanswered request, or ask for it."""
        p = self.policy
        in_flight = self._in_flight()
        reach = self._coalescing_reach(now_ns)
        actions: list = []
        for gap in list(self.gaps):
            if gap.abandoned:
                continue
            if now_ns - gap.detected_ns >= p.give_up_ns:
                self._give_up(gap, f"recovery_timeout after {gap.attempts} requests", now_ns)
            elif gap.outstanding:
                if now_ns >= gap.timeout_ns:
                    self._request_timed_out(gap, now_ns)
                    in_flight = self._in_flight()
            elif now_ns < gap.due_ns:
                continue
            elif not self.nack_servers:
                self._give_up(gap, "no retransmission server configured", now_ns)
            elif in_flight < p.max_outstanding_requests:
                nack = self._request(gap, now_ns, reach)
                if nack is not None:
                    actions.append(nack)
                    in_flight += 1
        return actions

    def _coalescing_reach(self, now_ns: int) -> int:
        """How many held messages one request may reach across to cover the next gaps as well.

        0 (one request per gap) while requests are plenty: the request bucket can ask for every
        gap waiting now and is at least half full, so gaps have not been coming faster than it
        refills. Otherwise requests are what is scarce: a request may reach across up to
        `coalesce_held_messages` held messages, and across anything within the request size if
        even that leaves more requests than the bucket holds. Held messages come back as
        duplicates, so reaching across them is paid for only when it must be.
        """
        p = self.policy
        if p.coalesce_held_messages <= 0:
            return 0
        waiting = self._requests_needed(now_ns, 0)
        bucket = self.request_bucket
        if waiting <= 1 or (bucket.wait_ns(waiting, now_ns) == 0 and bucket.wait_ns(bucket.burst / 2, now_ns) <= 0):
            return 0
        reach = p.coalesce_held_messages
        needed = self._requests_needed(now_ns, reach)
        if needed > 1 and bucket.wait_ns(needed, now_ns) != 0:
            reach = max(reach, p.max_request_messages)
        return reach

    def _request_timed_out(self, gap: Gap, now_ns: int) -> None:
        """No answer in `request_timeout`: a failure on this server; after `retries_per_server`, the next one."""
        if gap.by_other:  # the request we heard went unanswered: ask ourselves now, after a fresh group back-off
            self.gaps.set_outstanding(gap, False)
            gap.due_ns = max(gap.due_ns, now_ns + self._group_wait())  # never sooner than a backoff or retry-after said
            self.gaps.schedule(gap)
            return
        self.gaps.set_outstanding(gap, False)
        self.counters.values[STREAM_COUNTERS.nack_timeouts] += 1
        gap.failures_on_server += 1
        if gap.failures_on_server >= self.policy.retries_per_server or self.server_down_until[gap.server] > now_ns:
            silent = gap.server
            self._next_server(gap, now_ns)
            self._server_down(silent, now_ns)
        gap.due_ns = now_ns + self._backoff(gap)
        self.gaps.schedule(gap)

    def _request(self, gap: Gap, now_ns: int, reach: int) -> SendNack | None:
        """A NACK for `gap` (and the gaps after it that it can cover), or None if the buckets say later."""
        p = self.policy
        count = min(gap.last - gap.first + 1, p.max_request_messages)
        members = self._coalesce(gap, count, now_ns, reach)
        if len(members) > 1:
            count = members[-1].last - gap.first + 1
        wait = max(self.request_bucket.wait_ns(1, now_ns), self.message_bucket.wait_ns(count, now_ns))
        if wait < 0:  # more messages than the message bucket ever holds: ask for what it can, for this gap alone
            count = int(p.message_burst)
            wait = self.message_bucket.wait_ns(count, now_ns)
            members = [gap]
        if wait > 0:
            gap.due_ns = now_ns + wait
            self.gaps.schedule(gap)
            self.counters.values[STREAM_COUNTERS.nacks_throttled] += 1
            return None
        self.request_bucket.take(1, now_ns)
        self.message_bucket.take(count, now_ns)
        for member in members:
            member.sent_first, member.sent_count, member.server = gap.first, count, gap.server
            self.gaps.set_outstanding(member, True)
            self.gaps.note_attempt(member)
            member.timeout_ns = now_ns + p.request_timeout_ns
            self.gaps.schedule(member)
        self.counters.values[STREAM_COUNTERS.nacks_sent] += 1
        self.counters.values[STREAM_COUNTERS.messages_requested] += count
        return SendNack(gap.server, self.session, gap.first, count)
