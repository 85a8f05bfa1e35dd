"""The line handler's sans-I/O core for one channel: A/B arbitration, gaps, NACK recovery,
late join and resync from an initial image.

    core = HandlerCore(on_message, on_event, policy, rng=random.Random(seed))
    actions = core.on_datagram("A", data, now_ns)       # multicast from feed A or B
    actions = core.on_unicast(data, server, now_ns)     # retransmissions and rejects
    actions = core.on_timer(now_ns)                     # when now_ns >= core.next_timer()
    core.on_image_message(msg); core.on_image_end(seq, now_ns); core.on_image_failed(reason, now_ns)

Rules:
1. Exactly once, in order: `on_message(sequence, message)` is called for sequence
   `expected` and nothing else; a message that arrives early waits in a bounded buffer.
   A sequence is skipped only with a `GapEvent(first, last, reason)` before the next
   message, so the application always knows precisely what it did not get.
2. Arbitration is by sequence number, per message: the first copy wins, any later copy
   (either feed, or a retransmission) is a counted duplicate. A datagram wholly below
   `expected` is never decoded: it is compared byte for byte with the datagram that
   delivered the same first sequence, kept in a bounded ring of recent datagrams. Only
   when they differ (or were packed differently) are the messages compared one by one;
   a message whose bytes differ from the first copy is a `SequenceConflict` (two
   publishers disagree: a divergent standby, split brain), counted, and the first copy
   stays delivered. Buffered messages are compared as decoded tuples.
3. A datagram of another schema (session tag) is refused before decoding; one of an
   older session instance is refused; a newer instance is a publisher restart
   (`SessionChanged`) and the handler resynchronises.
4. Recovery is paced: a gap waits a random gap-wait for the other feed, then is NACKed
   in ranges of at most `max_request_messages`, under client token buckets, with a
   bounded number in flight, jittered exponential backoff, failover across servers and
   obedience to rejects; after `give_up_ns` it is resynchronised from an image or
   reported unrecoverable. Nothing here reads a clock, opens a socket or starts a thread.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from decoders import (
    CODECS,
    REJECT_REASONS,
    RETRANSMISSION_REJECT,
    SCHEMA_TAG,
    CodecTable,
    DecodeError,
    DecodeErrorKind,
    parse_session,
)
from decoders.moldudp64 import (
    END_OF_SESSION_COUNT,
    HEADER_SIZE,
    HEARTBEAT_COUNT,
    decode_datagram,
    decode_header,
    decode_messages,
    split_blocks,
)
from mdcommon.image import Image
from mdcommon.ratelimit import TokenBucket

from .claims import Claim, Claims
from .counters import FEED_COUNTERS, STREAM_COUNTERS
from .events import (
    QUALITY_MAYBE_STALE,
    QUALITY_OK,
    QUALITY_STALE,
    BufferOverflow,
    FeedRecovered,
    FeedStale,
    GapEvent,
    ImageApplied,
    ImageFailed,
    QualityChanged,
    Recovered,
    RequestImage,
    SchemaMismatch,
    SendNack,
    SequenceConflict,
    SessionChanged,
    SessionConflict,
    SessionEnded,
    SessionStarted,
)
from .gaps import Gap, GapList

__all__ = ["HandlerCore", "RecoveryPolicy", "FEEDS", "LEAD_LAG_EDGES_NS"]

FEEDS = ("A", "B", "R")  # R: unicast retransmissions
_FEED_INDEX = {"A": 0, "B": 1, "R": 2}
NO_ACTIONS: list = []
LEAD_LAG_EDGES_NS = (-10_000_000, -1_000_000, -100_000, -10_000, 0, 10_000, 100_000, 1_000_000, 10_000_000)
BUFFERED_MESSAGE_BYTES = 48  # what one buffered message is reckoned to cost, for max_buffer_bytes (tuple + ints)
_REJECT_FIELDS = itemgetter(*CODECS.by_name["retransmission_reject"].slots(
    "reason", "requested_sequence_number", "retry_after_ns", "first_available_sequence_number"))
_RATE_LIMITED, _TOO_OLD, _TOO_FAR_AHEAD = (REJECT_REASONS[n] for n in ("rate_limited", "too_old", "too_far_ahead"))


@dataclass
class RecoveryPolicy:
    """The numbers of recovery (DESIGN §3); all durations in ns."""

    gap_wait_min_ns: int = 1_000_000
    gap_wait_max_ns: int = 10_000_000
    request_timeout_ns: int = 200_000_000
    backoff_max_ns: int = 2_000_000_000
    retries_per_server: int = 2
    max_outstanding_requests: int = 4
    max_request_messages: int = 2000
    requests_per_s: float = 50.0
    request_burst: float = 10.0
    messages_per_s: float = 200_000.0
    message_burst: float = 20_000.0
    give_up_ns: int = 10_000_000_000
    max_buffer_messages: int = 1_000_000
    max_buffer_bytes: int = 256 << 20
    stale_after_ns: int = 3_000_000_000
    resync_on_unrecoverable: bool = True
    image_retry_ns: int = 5_000_000_000
    server_holddown_ns: int = 5_000_000_000  # a server that stopped answering gets no new gaps for this long
    coalesce_held_messages: int = 1000  # when requests are scarce, one may span gaps with this many held messages between two
    max_resync_history: int = 1_000_000
    conflict_ring_datagrams: int = 4096  # recent first-copy datagrams kept to compare later copies with (conflict detection)
    # The receive window (linehandler/claims.py): a claim more than this far beyond the horizon waits for the stream to
    # continue it. Sized from the stream's own rate (what it publishes in ahead_window_ns), within these bounds.
    ahead_window_ns: int = 2_000_000_000
    min_ahead_messages: int = 1000
    max_ahead_messages: int = 1_000_000  # a retransmission server's journal holds 1 M messages by default
    max_claims_datagrams: int = 16_384  # datagrams held unbelieved: far-ahead claims, another live session's
    max_claims_bytes: int = 32 << 20
    max_refused_sessions: int = 64  # distinct other sessions reported by name (each once); beyond, counted only


class HandlerCore:
    """One channel's stream; see the module rules."""

    def __init__(
        self,
        on_message: Callable[[int, tuple], Any],
        on_event: Callable[[Any], Any],
        policy: RecoveryPolicy | None = None,
        *,
        rng: random.Random | None = None,
        nack_servers: int = 0,
        image_servers: int = 0,
        keep_image: bool = True,
        late_join_image: bool = True,
        table: CodecTable = CODECS,
        schema_tag: bytes = SCHEMA_TAG,
        now_ns: int = 0,
    ) -> None:
        self.on_message = on_message
        self.on_event = on_event
        self.policy = p = policy or RecoveryPolicy()
        self.rng = rng or random.Random(0)
        self.nack_servers = nack_servers
        self.image_servers = image_servers
        self.keep_image = keep_image
        self.late_join_image = late_join_image and image_servers > 0
        self.table = table
        self.schema_tag = schema_tag
        self.image = Image()
        self.feed_counters = [FEED_COUNTERS.new() for _ in FEEDS]
        self.counters = STREAM_COUNTERS.new()
        self.lead_lag = [0] * (len(LEAD_LAG_EDGES_NS) + 1)  # A minus B arrival time, by bucket
        self.request_bucket = TokenBucket(p.requests_per_s, p.request_burst, now_ns)
        self.message_bucket = TokenBucket(p.messages_per_s, p.message_burst, now_ns)
        self.last_rx_ns = [now_ns, now_ns]
        self.stale = [False, False]
        self.quality = QUALITY_OK
        self._reset_stream(None, now_ns)
        self.session_instance = -1
        self.refused_tags: set[bytes] = set()  # other schemas' sessions already reported (bounded)
        self.conflicting: set[bytes] = set()  # other live sessions of our schema already reported (bounded)
        self.claims = Claims(p.max_claims_datagrams, p.max_claims_bytes)
        self.previous_session: bytes | None = None  # the session a new one replaces, for SessionChanged
        self.retired: deque[bytes] = deque(maxlen=8)  # sessions we moved on from: their stragglers are no conflict
        self.ahead_window = p.min_ahead_messages
        self.rate_mark = (now_ns, 0)  # (time, horizon) the stream's rate is measured from
        self.gap_generation = 0
        self.refreshed: dict[int, int] = {}  # instrument id -> gap generation its record was last refreshed in

    # ------------------------------------------------------------------ state

    def _reset_stream(self, session: bytes | None, now_ns: int) -> None:
        self.session = session
        self.expected: int | None = None  # next sequence to deliver
        self.horizon = 0  # one past the highest sequence known to exist
        self.announced_from: int | None = None  # horizon[announced_from:] is vouched for by a heartbeat only, not by data
        self.buffer: dict[int, tuple] = {}
        self.buffer_bytes = 0
        self.gaps = GapList()
        self.feed_next = [0, 0, 0]
        # first sequence -> (feed, arrival ns, bytes) of the first datagram starting there that delivered
        # something: A/B lead-lag timing, and the first copy later copies are compared with (conflicts)
        self.recent: dict[int, tuple[int, int, bytes]] = {}
        self.recent_order: deque[int] = deque()  # keys of `recent`, oldest first (a dict's own oldest key is slow to find after deletions)
        self.recent_limit = self.policy.conflict_ring_datagrams
        self.recent_max_count = 1  # most messages in a datagram of the ring: how far back a message's datagram can start
        self.joining = False  # late join: buffering until the image arrives
        self.resync: list[tuple[int, tuple]] | None = None  # delivered during a background image fetch
        self.image_server = 0
        self.server_down_until = [0] * max(1, self.nack_servers)  # per re-request server: no new gaps before this time
        self.image_due_ns: int | None = None
        self.image_records: Image | None = None
        self.image_failures = 0
        self.resync_from = 0
        self.ended = False
        self.end_sequence = 0  # what the believed end of session announced
        self.session_seen_ns = now_ns  # last datagram of this session on A or B: silence past stale_after ends it

    def resume(self, session: bytes, next_sequence: int, image: Image | None = None) -> None:
        """Continue `session` from `next_sequence` (a restarted mirror with its journal on disk):
        what arrives beyond it is a gap like any other."""
        _, instance = parse_session(session)
        self.session_instance = instance if instance is not None else -1
        self._reset_stream(bytes(session), 0)
        self.expected = self.horizon = next_sequence
        if image is not None:
            self.image = image

    def instrument_quality(self, instrument_id: int) -> str:
        """STALE/MAYBE_STALE follow the stream; after an unrecoverable gap an instrument stays
        MAYBE_STALE until an image refreshes its record."""
        if self.quality != QUALITY_OK:
            return self.quality
        if self.refreshed.get(instrument_id, 0) < self.gap_generation:
            return QUALITY_MAYBE_STALE
        return QUALITY_OK

    def _set_quality(self, quality: str, reason: str) -> None:
        if quality != self.quality:
            self.quality = quality
            self.on_event(QualityChanged(quality, reason))

    def _update_quality(self, reason: str) -> None:
        """STALE: both feeds silent. MAYBE_STALE: joining, refreshing the replica after a loss,
        or a gap past its gap-wait. OK otherwise (per instrument, see instrument_quality)."""
        if self.stale[0] and self.stale[1]:
            self._set_quality(QUALITY_STALE, "both feeds silent")
        elif self.joining or self.resync is not None or self.gaps.flagged:
            self._set_quality(QUALITY_MAYBE_STALE, reason)
        else:
            self._set_quality(QUALITY_OK, reason)

    # --------------------------------------------------------------- datagrams

    def on_datagram(self, feed: str, data: Any, now_ns: int) -> list:
        """A multicast datagram from feed "A" or "B"."""
        fi = _FEED_INDEX[feed]
        c = self.feed_counters[fi].values
        c[0] += 1  # datagrams
        self.last_rx_ns[fi] = now_ns
        if self.stale[fi]:
            self.stale[fi] = False
            self.on_event(FeedRecovered(feed))
            self._update_quality(f"feed {feed} back")
        try:
            session, seq, count = decode_header(data)
        except DecodeError as exc:
            return self._malformed(fi, exc)
        if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT) and len(data) != HEADER_SIZE:
            # a heartbeat's only content is its header: anything after it means the header cannot be trusted either
            return self._malformed(fi, DecodeError(DecodeErrorKind.COUNT_MISMATCH, HEADER_SIZE, f"{len(data) - HEADER_SIZE} bytes after a count of {count}"))
        if seq == 0:
            # sequence numbers start at 1: a heartbeat announcing 0 announces nothing, and data at 0 is a control
            # packet, which comes unicast, never on a feed
            return self._malformed(fi, DecodeError(DecodeErrorKind.BAD_SEQUENCE, 10, "sequence number 0 on a feed"))
        return self._offer(fi, session, seq, count, data, now_ns)

    def _admit(self, fi: int, seq: int, count: int, data: Any, now_ns: int) -> list:
        """A datagram of the current session that is believed: within the window, or corroborated."""
        c = self.feed_counters[fi].values
        if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT):
            return self._heartbeat(fi, seq, count, now_ns)
        end = seq + count
        if self.ended and end > self.end_sequence:
            # data past the end of session: that end was not the plant's (the plant sends nothing after it)
            self.ended = False
            self.counters.values[STREAM_COUNTERS.end_withdrawn] += 1
        c[FEED_COUNTERS.messages] += count
        fn = -1
        if fi < 2:
            fn = self.feed_next[fi]
            if seq > fn and fn:
                c[FEED_COUNTERS.missed] += seq - fn
            if end > fn:
                self.feed_next[fi] = end
        held = self.recent.get(seq)  # (feed, arrival ns, bytes) of the first datagram that started at seq
        if held is not None and held[0] != fi and fi < 2 and held[0] < 2:
            self._lead_lag(held[0], now_ns - held[1])
        exp = self.expected
        if exp is not None and end <= exp:
            c[FEED_COUNTERS.duplicates] += count  # wholly delivered already: compared, not decoded
            if held is not None and held[2] == (data if type(data) is bytes else bytes(data)):
                return NO_ACTIONS
            return self._check_delivered(fi, seq, data)
        try:
            msgs = decode_messages(data, count, self.table)  # the header was accepted above
        except DecodeError as exc:
            c[FEED_COUNTERS.messages] -= count
            if fn >= 0 and self.feed_next[fi] == end:  # a malformed body moves none of this feed's figures
                if seq > fn and fn:
                    c[FEED_COUNTERS.missed] -= seq - fn
                self.feed_next[fi] = fn
            return self._malformed(fi, exc)
        if seq == exp and not self.buffer and not self.gaps and not self.joining:
            # the common case: the next datagram, in order, nothing pending
            deliver = self.on_message
            if self.keep_image:
                apply = self.image.apply
                for m in msgs:
                    deliver(seq, m)
                    apply(m)
                    seq += 1
            else:
                for m in msgs:
                    deliver(seq, m)
                    seq += 1
            if self.resync is not None:
                self._remember(end - count, msgs)
            if held is None:
                self._remember_datagram(fi, exp, count, data, now_ns)
            c[FEED_COUNTERS.first_arrivals] += count
            self.counters.values[STREAM_COUNTERS.delivered] += count
            self.expected = self.horizon = end
            return NO_ACTIONS
        return self._merge(fi, seq, msgs, now_ns, data, now_ns if held is None else None)

    # ------------------------------------------------------------- conflicts

    def _remember_datagram(self, fi: int, seq: int, count: int, data: Any, now_ns: int) -> None:
        self.recent[seq] = (fi, now_ns, data if type(data) is bytes else bytes(data))
        order = self.recent_order
        order.append(seq)
        if len(order) > self.recent_limit:
            self.recent.pop(order.popleft(), None)
        if count > self.recent_max_count:
            self.recent_max_count = count

    def _check_delivered(self, fi: int, seq: int, data: Any) -> list:
        """A wholly delivered datagram that is not a byte copy of the one that delivered its first
        sequence: compare its messages one by one with the first copies."""
        try:
            blocks = split_blocks(data)[3]
        except DecodeError as exc:
            return self._malformed(fi, exc)
        self._compare(fi, seq, blocks)
        return NO_ACTIONS

    def _first_copy(self, s: int) -> tuple[int, list[bytes]] | None:
        """(first sequence, message blocks) of the ring datagram holding `s`, if still kept."""
        recent = self.recent
        for f in range(s, max(0, s - self.recent_max_count), -1):
            d = recent.get(f)
            if d is not None:
                blocks = split_blocks(d[2])[3]
                return (f, blocks) if f + len(blocks) > s else None
        return None

    def _compare(self, fi: int, seq: int, blocks: list[bytes]) -> None:
        """Compare the raw messages from `seq` on with the first copies delivered."""
        bad: list[int] = []
        unchecked = 0
        held: tuple[int, list[bytes]] | None = None
        for i, b in enumerate(blocks):
            s = seq + i
            if held is None or not held[0] <= s < held[0] + len(held[1]):
                held = self._first_copy(s)
                if held is None:
                    unchecked += 1
                    continue
            if held[1][s - held[0]] != b:
                bad.append(s)
        if unchecked:
            self.counters.values[STREAM_COUNTERS.duplicates_unchecked] += unchecked
        if bad:
            self._conflict(fi, bad)

    def _conflict(self, fi: int, seqs: list[int]) -> None:
        self.feed_counters[fi].values[FEED_COUNTERS.conflicts] += len(seqs)
        self.counters.values[STREAM_COUNTERS.conflicts] += len(seqs)
        self.on_event(SequenceConflict(FEEDS[fi], self.session, seqs[0], seqs[-1], len(seqs)))

    def _lead_lag(self, first_fi: int, delta_ns: int) -> None:
        a_minus_b = -delta_ns if first_fi == 0 else delta_ns  # negative: A arrived first
        i = 0
        for edge in LEAD_LAG_EDGES_NS:
            if a_minus_b < edge:
                break
            i += 1
        self.lead_lag[i] += 1

    def _malformed(self, fi: int, exc: DecodeError) -> list:
        c = self.feed_counters[fi].values
        c[FEED_COUNTERS.malformed] += 1
        self.counters.values[STREAM_COUNTERS.malformed_datagrams] += 1
        self.last_decode_error = exc
        return NO_ACTIONS

    # ----------------------------------------------- what is believed (claims.py)

    def _offer(self, fi: int, session: bytes, seq: int, count: int, data: Any, now_ns: int) -> list:
        """A datagram whose header is sound: admit it, hold it, or refuse it."""
        if session != self.session or self.expected is None:
            return self._unbelieved(fi, session, seq, count, data, now_ns)
        self.session_seen_ns = now_ns
        if seq > self.horizon + self.ahead_window and self._beyond_window(seq, now_ns):
            return self._hold(fi, session, seq, count, data, now_ns)
        return self._admit(fi, seq, count, data, now_ns)

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

    def _hold(self, fi: int, session: bytes, seq: int, count: int, data: Any, now_ns: int) -> list:
        """A claim the stream does not corroborate yet: held aside (bounded), delivering nothing and opening
        no gap; believed, with the claim it continues, once a later datagram continues it."""
        claim = Claim.of(fi, session, seq, count, data, now_ns)
        if not claim.heartbeat:
            try:
                decode_messages(claim.data, count, self.table)  # only well-formed datagrams are worth holding
            except DecodeError as exc:
                return self._malformed(fi, exc)
        claims = self.claims
        expired = claims.expire(now_ns - 2 * self.policy.stale_after_ns)
        repeat_after_ns = self.policy.gap_wait_max_ns if self.expected is None else None
        prev = claims.continued(claim.session, seq, claim.end, fi, claim.data, now_ns, repeat_after_ns)
        if prev is None:
            self.feed_counters[fi].values[FEED_COUNTERS.unconfirmed] += 1
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
        actions = actions + self._admit(fi, seq, count, claim.data, now_ns)
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

    def _unbelieved(self, fi: int, session: bytes, seq: int, count: int, data: Any, now_ns: int) -> list:
        """A datagram of another session than ours, or any datagram before our stream has started."""
        c = self.feed_counters[fi].values
        tag, instance = parse_session(session)
        if tag != self.schema_tag or instance is None:
            c[FEED_COUNTERS.schema_mismatch] += 1
            if session not in self.refused_tags and len(self.refused_tags) < self.policy.max_refused_sessions:
                self.refused_tags.add(bytes(session))
                self.on_event(SchemaMismatch(FEEDS[fi], bytes(session), self.schema_tag))
            return NO_ACTIONS
        if self.expected is not None:
            # two live sessions on one channel (a stray plant, a forged instance): a conflict to report, not a
            # restart to follow. The other's datagrams are held, so that if ours has really gone (kill -9)
            # nothing of the new one is lost.
            over = self.ended or now_ns - self.session_seen_ns >= self.policy.stale_after_ns
            claim = Claim.of(fi, session, seq, count, data, now_ns)
            session = claim.session
            if over and self.claims.continued(session, seq, claim.end, fi, claim.data, now_ns, self.policy.gap_wait_max_ns):
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
                return actions + self._offer(fi, session, seq, count, claim.data, now_ns)
            c[FEED_COUNTERS.old_session if instance < self.session_instance else FEED_COUNTERS.other_session] += 1
            if (not over and session not in self.conflicting and session not in self.retired
                    and len(self.conflicting) < self.policy.max_refused_sessions):
                self.conflicting.add(session)
                self.counters.values[STREAM_COUNTERS.session_conflicts] += 1
                self.on_event(SessionConflict(FEEDS[fi], self.session, session))
            dropped = self.claims.add(claim)
            if dropped:
                self.counters.values[STREAM_COUNTERS.claims_dropped] += dropped
            return NO_ACTIONS
        if session in self.retired:
            c[FEED_COUNTERS.old_session] += 1  # a straggler of a session we moved on from
            return NO_ACTIONS
        return self._hold(fi, session, seq, count, data, now_ns)  # even sequence 1: a stray plant starts there too

    def _adopt(self, session: bytes, now_ns: int) -> None:
        """`session` is the channel's from now on (its stream starts with the datagram being admitted)."""
        old = self.previous_session
        if old is not None and old != session:
            self.counters.values[STREAM_COUNTERS.session_changes] += 1
            self.on_event(SessionChanged(old, session))
            self.image = Image()
            self.refreshed.clear()
        _, instance = parse_session(session)
        self.session_instance = instance if instance is not None else -1
        self.conflicting.discard(session)
        self.previous_session = session
        self._reset_stream(session, now_ns)

    # ------------------------------------------------------------------ merging

    def _start(self, first_seq: int, now_ns: int) -> list:
        """First data of a session: join live, from an image, or by recovering from 1."""
        self.on_event(SessionStarted(self.session, first_seq))
        self.rate_mark = (now_ns, first_seq)
        if first_seq == 1:
            self.expected = self.horizon = 1
            return NO_ACTIONS
        if self.late_join_image:
            self.expected = self.horizon = first_seq
            self.joining = True
            self.image_due_ns = now_ns
            self._update_quality("joining from an initial image")
            return self._image_actions(now_ns)
        # no image: the messages before the first one seen are a gap like any other
        self.expected = 1
        self.horizon = first_seq
        self.gaps.add(self._new_gap(1, first_seq - 1, now_ns))
        return NO_ACTIONS

    def _new_gap(self, first: int, last: int, now_ns: int) -> Gap:
        p = self.policy
        wait = p.gap_wait_min_ns + int(self.rng.random() * (p.gap_wait_max_ns - p.gap_wait_min_ns))
        self.counters.values[STREAM_COUNTERS.gaps_detected] += 1
        return Gap(first, last, now_ns, now_ns + wait, server=self._pick_server(now_ns))

    def _pick_server(self, now_ns: int) -> int:
        """A random server among those answering (spreads the load); any server if none is."""
        if self.nack_servers <= 1:
            return 0
        up = [i for i, until in enumerate(self.server_down_until) if until <= now_ns]
        return self.rng.choice(up) if up else self.rng.randrange(self.nack_servers)

    def _heartbeat(self, fi: int, seq: int, count: int, now_ns: int) -> list:
        c = self.feed_counters[fi].values
        c[FEED_COUNTERS.heartbeats] += 1
        actions = NO_ACTIONS
        if self.expected is None:
            actions = self._start(seq, now_ns)
        af = self.announced_from
        if af is not None and max(af, self.expected) <= seq < self.horizon and not any(s >= seq for s in self.buffer):
            # the plant's heartbeats only move forward: one announcing less than a range that only a heartbeat
            # announced says that announcement was not the plant's (or is stale). Withdraw what lies above it;
            # a real tail loss is announced again by the plant's next heartbeat.
            self.gaps.remove_range(seq, self.horizon - 1)
            self.horizon = seq
            self.announced_from = af if af < seq else None
            self.counters.values[STREAM_COUNTERS.announced_withdrawn] += 1
        if seq > self.horizon:
            self.gaps.add(self._new_gap(self.horizon, seq - 1, now_ns))  # tail loss, seen thanks to the heartbeat
            if self.announced_from is None:
                self.announced_from = self.horizon
            self.horizon = seq
        if fi < 2 and seq > self.feed_next[fi]:
            if self.feed_next[fi]:
                c[FEED_COUNTERS.missed] += seq - self.feed_next[fi]
            self.feed_next[fi] = seq
        if count == END_OF_SESSION_COUNT and not self.ended:
            self.ended = True
            self.end_sequence = seq
            self.on_event(SessionEnded(self.session, seq))
        return actions

    def _merge(self, fi: int, seq: int, msgs: list, now_ns: int, data: Any = None, remember: int | None = None) -> list:
        """Anything but the in-order case: start, overlap, early arrival, fill of a gap."""
        actions = NO_ACTIONS
        if self.expected is None:
            actions = self._start(seq, now_ns)
        c = self.feed_counters[fi].values
        count = len(msgs)
        end = seq + count
        af = self.announced_from
        if af is not None:
            if end >= self.horizon:
                self.announced_from = None  # data reached what the heartbeat announced: it holds
            elif fi < 2 and seq >= af:
                # live data inside a range only a heartbeat announced: the plant sends its heartbeats after its
                # data, so this heartbeat was reordered ahead of it or came from another sender. Believe the data:
                # the range above it is no longer a gap (the plant's next heartbeat or datagram re-announces it).
                self.gaps.remove_range(end, self.horizon - 1)
                self.horizon = end
                self.announced_from = None
                self.counters.values[STREAM_COUNTERS.announced_withdrawn] += 1
        if seq > self.horizon:
            self.gaps.add(self._new_gap(self.horizon, seq - 1, now_ns))
        old_horizon = self.horizon
        if end > self.horizon:
            self.horizon = end
        exp = self.expected
        buffer = self.buffer
        est = BUFFERED_MESSAGE_BYTES
        first_new = last_new = None
        delivered_dups = 0
        buffered_conflicts: list[int] = []
        for i, m in enumerate(msgs):
            s = seq + i
            if s < exp:
                c[FEED_COUNTERS.duplicates] += 1
                delivered_dups += 1
                continue
            if s in buffer:
                c[FEED_COUNTERS.duplicates] += 1
                if buffer[s] != m:
                    buffered_conflicts.append(s)
                continue
            buffer[s] = m
            self.buffer_bytes += est
            c[FEED_COUNTERS.first_arrivals] += 1
            if first_new is None:
                first_new = s
            last_new = s
        if delivered_dups and data is not None:
            try:
                self._compare(fi, seq, split_blocks(data)[3][:delivered_dups])
            except DecodeError as exc:
                self.last_decode_error = exc  # decoded fine above; cannot happen, but never silently
        if buffered_conflicts:
            self._conflict(fi, buffered_conflicts)
        if first_new is not None and data is not None and remember is not None:  # never overwrite a first copy
            self._remember_datagram(fi, seq, count, data, remember)
        if first_new is not None and first_new < old_horizon:
            for g in self.gaps.remove_range(first_new, min(last_new, old_horizon - 1)):
                if g.attempts:
                    self.counters.values[STREAM_COUNTERS.gaps_recovered_by_nack] += 1
                    self.on_event(Recovered(g.first, g.last, g.server, now_ns - g.detected_ns))
                else:
                    self.counters.values[STREAM_COUNTERS.gaps_filled_by_other_feed] += 1
        if not self.joining:
            self._drain()
        if len(buffer) > self.policy.max_buffer_messages or self.buffer_bytes > self.policy.max_buffer_bytes:
            self._overflow(now_ns)
        self._update_quality("gap")
        return actions

    def _close_session(self, reason: str) -> None:
        """The session is over: deliver what is buffered, and report every gap left, in order."""
        if self.expected is None or self.joining:
            return
        for g in self.gaps:
            self.gaps.abandon(g, reason)
        self._drain()

    def _deliver(self, s: int, m: tuple) -> None:
        self.on_message(s, m)
        self.counters.values[STREAM_COUNTERS.delivered] += 1
        if self.keep_image:
            self.image.apply(m)
        if self.resync is not None:
            self._remember(s, (m,))

    def _remember(self, first: int, msgs: list | tuple) -> None:
        """Keep what is delivered while an image is fetched, to bring the image up to date."""
        history = self.resync
        for i, m in enumerate(msgs):
            history.append((first + i, m))
        if len(history) > self.policy.max_resync_history:
            self.resync = None  # too much history to replay onto an image: start over with a new fetch
            self.image_due_ns = 0

    def _drain(self) -> None:
        """Deliver from the buffer in order; skip abandoned gaps at the head, loudly."""
        buffer = self.buffer
        exp = self.expected
        while True:
            m = buffer.pop(exp, None)
            if m is not None:
                self.buffer_bytes -= BUFFERED_MESSAGE_BYTES
                self._deliver(exp, m)
                exp += 1
                continue
            head = self.gaps.head()
            if head is not None and head.first == exp and head.abandoned:
                self.gaps.remove_range(head.first, head.last)
                self._report_gap(head.first, head.last, head.abandoned)
                exp = head.last + 1
                continue
            break
        self.expected = exp

    def _report_gap(self, first: int, last: int, reason: str) -> None:
        self.counters.values[STREAM_COUNTERS.messages_lost] += last - first + 1
        self.counters.values[STREAM_COUNTERS.gaps_unrecoverable] += 1
        self.gap_generation += 1
        self.on_event(GapEvent(first, last, reason))

    def _overflow(self, now_ns: int) -> None:
        """The buffer is full: give up the oldest gap so buffered messages can drain."""
        self.counters.values[STREAM_COUNTERS.buffer_overflows] += 1
        self.on_event(BufferOverflow(len(self.buffer), self.buffer_bytes))
        if self.joining:
            # the image has not come: forget the oldest half of the buffer, as a gap the image
            # will probably cover (and recovery will fill if it does not)
            upto = sorted(self.buffer)[len(self.buffer) // 2]
            for s in [s for s in self.buffer if s <= upto]:
                del self.buffer[s]
                self.buffer_bytes -= BUFFERED_MESSAGE_BYTES
            self.gaps.remove_range(self.expected, upto)
            self._insert_gap(self._new_gap(self.expected, upto, now_ns))
            return
        p = self.policy
        for g in list(self.gaps):  # the oldest first, until what is held fits again
            if len(self.buffer) <= p.max_buffer_messages and self.buffer_bytes <= p.max_buffer_bytes:
                break
            self.gaps.abandon(g, "buffer_overflow")
            self._drain()

    # ------------------------------------------------------------------ unicast

    def on_unicast(self, data: Any, server: int, now_ns: int) -> list:
        """A datagram from re-request server `server`: retransmitted data or a reject."""
        c = self.feed_counters[2].values
        c[0] += 1
        try:
            session, seq, count = decode_header(data)
        except DecodeError as exc:
            return self._malformed(2, exc)
        if session != self.session:
            c[FEED_COUNTERS.old_session] += 1
            return NO_ACTIONS
        if seq == 0:
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
        c[FEED_COUNTERS.messages] += count
        self.server_down_until[server] = 0  # it answers
        if end <= self.expected:
            c[FEED_COUNTERS.duplicates] += count
            held = self.recent.get(seq)
            if held is not None and held[2] == bytes(data):
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
                g.outstanding = False
                g.due_ns = now_ns
        return actions

    def _on_reject(self, server: int, m: tuple, now_ns: int) -> None:
        reason, req_seq, retry_after_ns, first_available = _REJECT_FIELDS(m)
        self.counters.values[STREAM_COUNTERS.rejects] += 1
        for g in list(self.gaps.gaps.irange_key(req_seq, req_seq + self.policy.max_request_messages)):
            if not (g.outstanding and g.server == server and g.sent_first == req_seq):
                continue
            g.outstanding = False
            if reason == _RATE_LIMITED:
                g.due_ns = now_ns + max(retry_after_ns, 1)
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

    def _coalesce(self, g: Gap, count: int, now_ns: int, held_limit: int) -> list[Gap]:
        """`g` and the gaps after it that one request can also cover: idle, older than the shortest gap-wait
        (the other feed had its chance; their own random wait need not be over), and within
        `max_request_messages` of g's start with at most `held_limit` already held between neighbours
        (0 while requests are plenty, see on_timer). Under loss that hits both feeds alike this turns many
        small gaps into few requests (the held messages come back as duplicates, within the message
        budget), so the request rate limit is not what loses data."""
        p = self.policy
        members = [g]
        if count < g.last - g.first + 1 or held_limit <= 0:
            return members
        end = g.first + p.max_request_messages - 1
        for n in self.gaps.after(g):
            if (n.abandoned or n.outstanding or n.detected_ns + p.gap_wait_min_ns > now_ns or n.last > end
                    or n.first - members[-1].last - 1 > held_limit):
                break
            members.append(n)
        return members

    def _requests_needed(self, now_ns: int, held_limit: int) -> int:
        """How many requests the gaps past their first chance on the other feed would take, coalesced across
        at most `held_limit` held messages."""
        p = self.policy
        needed = 0
        start = last = -1
        for g in self.gaps:
            if g.abandoned or g.outstanding or g.detected_ns + p.gap_wait_min_ns > now_ns:
                start = -1
                continue
            if start < 0 or g.last >= start + p.max_request_messages or g.first - last - 1 > held_limit:
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
        g.outstanding = False
        if self.policy.resync_on_unrecoverable and self.image_servers and self.resync is None and not self.joining:
            self.resync = []  # refresh the replica from an image while delivery carries on
            self.resync_from = self.expected
            self.image_due_ns = now_ns
        if not self.joining:
            self._drain()

    # ------------------------------------------------------------------ timers

    def _in_flight(self) -> int:
        """Requests outstanding: one per (server, first sequence asked), however many gaps it covers."""
        return len({(g.server, g.sent_first) for g in self.gaps if g.outstanding})

    def next_timer(self) -> int | None:
        deadlines = [self.last_rx_ns[0] + self.policy.stale_after_ns if not self.stale[0] else None,
                     self.last_rx_ns[1] + self.policy.stale_after_ns if not self.stale[1] else None]
        if not self.joining:  # while joining nothing is asked for or given up: the image may cover it
            # with every request slot taken, a gap whose wait is over waits for an answer or a timeout, not for
            # its own due time (that would wake the loop at once, again and again)
            full = self._in_flight() >= self.policy.max_outstanding_requests
            for g in self.gaps:
                if g.abandoned:
                    continue
                if g.outstanding:
                    deadlines.append(g.timeout_ns)
                elif not full:
                    deadlines.append(g.due_ns)
                deadlines.append(g.detected_ns + self.policy.give_up_ns)
        if self.image_due_ns is not None:
            deadlines.append(self.image_due_ns)
        return min((d for d in deadlines if d is not None), default=None)

    def on_timer(self, now_ns: int) -> list:
        actions: list = []
        p = self.policy
        for fi in (0, 1):
            if not self.stale[fi] and now_ns - self.last_rx_ns[fi] >= p.stale_after_ns:
                self.stale[fi] = True
                self.feed_counters[fi].values[FEED_COUNTERS.stale_events] += 1
                self.on_event(FeedStale(FEEDS[fi], now_ns - self.last_rx_ns[fi]))
                self._update_quality(f"feed {FEEDS[fi]} silent")
        if self.image_due_ns is not None and now_ns >= self.image_due_ns:
            actions += self._image_actions(now_ns)
        in_flight = self._in_flight()
        # One request per gap while requests are plenty: the budget can ask for every gap waiting now and is
        # at least half full (gaps have not been coming faster than it refills). Otherwise requests are what
        # is scarce: one may reach across up to coalesce_held_messages held messages to the next gaps, and
        # across anything within the request size if even that leaves more requests than the budget holds.
        # Held messages come back as duplicates, so reaching across them is paid for only when it must be.
        held_limit = 0
        if p.coalesce_held_messages > 0:
            waiting = self._requests_needed(now_ns, 0)
            bucket = self.request_bucket
            if waiting > 1 and (bucket.wait_ns(waiting, now_ns) != 0 or bucket.wait_ns(bucket.burst / 2, now_ns) > 0):
                held_limit = p.coalesce_held_messages
                needed = self._requests_needed(now_ns, held_limit)
                if needed > 1 and bucket.wait_ns(needed, now_ns) != 0:
                    held_limit = max(held_limit, p.max_request_messages)
        if self.claims.held:
            expired = self.claims.expire(now_ns - 2 * p.stale_after_ns)
            if expired:
                self.counters.values[STREAM_COUNTERS.claims_dropped] += expired
        for g in list(self.gaps) if not self.joining else ():
            if g.abandoned:
                continue
            if now_ns - g.detected_ns >= p.give_up_ns:
                self._give_up(g, f"recovery_timeout after {g.attempts} requests", now_ns)
                continue
            if g.outstanding:
                if now_ns < g.timeout_ns:
                    continue
                g.outstanding = False  # no answer: a failure on this server
                in_flight -= 1
                self.counters.values[STREAM_COUNTERS.nack_timeouts] += 1
                g.failures_on_server += 1
                if g.failures_on_server >= p.retries_per_server or self.server_down_until[g.server] > now_ns:
                    silent = g.server
                    self._next_server(g, now_ns)
                    self._server_down(silent, now_ns)
                g.due_ns = now_ns + self._backoff(g)
                continue
            if now_ns < g.due_ns:
                continue
            if not self.nack_servers:
                self._give_up(g, "no retransmission server configured", now_ns)
                continue
            if in_flight >= p.max_outstanding_requests:
                continue
            count = min(g.last - g.first + 1, p.max_request_messages)
            members = self._coalesce(g, count, now_ns, held_limit)
            if len(members) > 1:
                count = members[-1].last - g.first + 1
            wait = max(self.request_bucket.wait_ns(1, now_ns), self.message_bucket.wait_ns(count, now_ns))
            if wait < 0:
                count = int(p.message_burst)
                wait = self.message_bucket.wait_ns(count, now_ns)
                members = [g]
            if wait > 0:
                g.due_ns = now_ns + wait
                self.counters.values[STREAM_COUNTERS.nacks_throttled] += 1
                continue
            self.request_bucket.take(1, now_ns)
            self.message_bucket.take(count, now_ns)
            for m in members:
                m.outstanding = True
                self.gaps.note_attempt(m)
                m.timeout_ns = now_ns + p.request_timeout_ns
                m.sent_first, m.sent_count, m.server = g.first, count, g.server
            in_flight += 1
            self.counters.values[STREAM_COUNTERS.nacks_sent] += 1
            self.counters.values[STREAM_COUNTERS.messages_requested] += count
            actions.append(SendNack(g.server, self.session, g.first, count))
        if not self.joining and self.expected is not None:
            self._drain()
        self._update_quality("recovery")
        return actions

    # ------------------------------------------------------------------ images

    def _image_actions(self, now_ns: int) -> list:
        self.image_due_ns = None
        if not self.image_servers or self.session is None:
            return NO_ACTIONS
        if self.resync is None and not self.joining:
            self.resync = []
            self.resync_from = self.expected
        self.image_records = Image()
        self.counters.values[STREAM_COUNTERS.image_requests] += 1
        return [RequestImage(self.image_server, self.session)]

    def on_image_message(self, msg: tuple) -> None:
        """One message of the image stream (record images; directory entries are welcome too)."""
        if self.image_records is not None:
            self.image_records.apply(msg)

    def on_image_end(self, sequence: int, now_ns: int) -> list:
        """The image is consistent with `sequence`: swap it in and reconcile the live stream."""
        img = self.image_records
        if img is None:
            return NO_ACTIONS
        self.image_records = None
        if self.joining:
            dropped = sum(1 for s in self.buffer if s <= sequence)
            for s in [s for s in self.buffer if s <= sequence]:
                del self.buffer[s]
                self.buffer_bytes -= BUFFERED_MESSAGE_BYTES
            self.joining = False
            for g in self.gaps:  # nothing was asked for while joining: give-up and gap-wait count from now
                g.detected_ns = now_ns
                g.due_ns = max(g.due_ns, now_ns)
            if sequence + 1 < self.expected:
                # the image is older than the first live message we hold: recover the difference
                self.gaps.remove_range(sequence + 1, self.expected - 1)
                gap = self._new_gap(sequence + 1, self.expected - 1, now_ns)
                self.expected = sequence + 1
                self._insert_gap(gap)
            else:
                self.expected = sequence + 1
                self.gaps.drop_below(sequence + 1)
            self.horizon = max(self.horizon, self.expected)
            self._install(img, sequence, dropped)
            self._drain()
            self._update_quality("image applied")
            return NO_ACTIONS
        history = self.resync or []
        self.resync = None
        if sequence + 1 < self.resync_from:
            # the image predates what we still remember: it cannot be brought up to date
            return self.on_image_failed(f"image at {sequence} older than kept history from {self.resync_from}", now_ns)
        for s, m in history:
            if s > sequence:
                img.apply(m)
        self._install(img, sequence, 0)
        self._update_quality("replica refreshed from image")
        return NO_ACTIONS

    def _insert_gap(self, gap: Gap) -> None:
        self.gaps.add(gap)

    def _install(self, img: Image, sequence: int, dropped: int) -> None:
        if self.keep_image:
            self.image = img
        for iid in img.records:
            self.refreshed[iid] = self.gap_generation
        self.image_failures = 0
        self.counters.values[STREAM_COUNTERS.images_applied] += 1
        self.on_event(ImageApplied(sequence, len(img), dropped))

    def on_image_failed(self, reason: str, now_ns: int) -> list:
        """The image server could not deliver: try the next one, later; never stall the live stream."""
        self.image_records = None
        self.image_failures += 1
        self.counters.values[STREAM_COUNTERS.image_failures] += 1
        self.on_event(ImageFailed(reason))
        self.image_server = (self.image_server + 1) % max(1, self.image_servers)
        if self.joining and self.image_failures >= self.image_servers:
            # no image to be had now: join by recovering from sequence 1 instead, loudly if that fails too
            self.joining = False
            first = self.expected
            if first is not None and first > 1:
                self.expected = 1
                self.gaps.add(self._new_gap(1, first - 1, now_ns))
            self._drain()
            self._update_quality("no image available")
            self.image_due_ns = None
            return NO_ACTIONS
        self.image_due_ns = now_ns + (0 if self.image_failures < self.image_servers else self.policy.image_retry_ns)
        return NO_ACTIONS

    # ------------------------------------------------------------------ figures

    def status(self) -> dict[str, Any]:
        return {
            "session": self.session.decode() if self.session else None,
            "expected": self.expected,
            "horizon": self.horizon,
            "quality": self.quality,
            "buffered": len(self.buffer),
            "gaps_open": len(self.gaps),
            "nacks_in_flight": self._in_flight(),
            "missing": self.gaps.missing(),
            "joining": self.joining,
            "instruments": len(self.image),
            "feeds": {FEEDS[i]: {"stale": self.stale[i] if i < 2 else None, **self.feed_counters[i].as_dict()} for i in range(3)},
            "stream": self.counters.as_dict(),
            "lead_lag_a_minus_b": dict(zip(_bucket_labels(), self.lead_lag, strict=True)),
        }


def _bucket_labels() -> list[str]:
    edges = LEAD_LAG_EDGES_NS
    labels = [f"<{edges[0] // 1000}us"]
    labels += [f"{a // 1000}..{b // 1000}us" for a, b in zip(edges, edges[1:], strict=False)]
    labels.append(f">={edges[-1] // 1000}us")
    return labels
