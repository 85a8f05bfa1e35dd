"""The line handler's sans-I/O core for one channel: A/B arbitration, gaps, NACK recovery,
late join and resync from an initial image.

    core = HandlerCore(on_message, on_event, policy, rng=random.Random(seed))
    actions = core.on_datagram("A", data, now_ns)       # multicast from feed A or B
    core.on_batch("A", buf, slot, lengths, now_ns, actions)  # a recvmmsg batch of them (the in-order lane, in C)
    actions = core.on_unicast(data, server, now_ns)     # retransmissions and rejects (unicast, or the repair group: server 0)
    actions = core.on_request_heard(data, now_ns)       # a request heard on the request group
    actions = core.on_timer(now_ns)                     # when now_ns >= core.next_timer()
    core.on_image_messages(msgs); core.on_image_end(seq, now_ns); core.on_image_failed(reason, now_ns)

Rules:
1. Exactly once, in order: `on_message(sequence, message)` (or, batched,
   `on_messages(first_sequence, messages)`) is called for sequence `expected` and nothing
   else; a message that arrives early waits in a bounded buffer.
   A sequence is skipped only with a `GapEvent(first, last, reason)` before the next
   message, so the application always knows precisely what it did not get.
2. Only what is corroborated is believed: a datagram far ahead of the stream, before it
   has started, or of another live session is held until the stream continues it.
3. A datagram of another schema (session tag) is refused before decoding. With `schema_tag`
   None the channel is a foreign MoldUDP64 feed (an exchange's ITCH, decoded with `table`):
   any session name is taken, by the same corroboration as ours, and sequence-0 datagrams are
   not read as our rejects.
4. Recovery is paced, bounded and obeys the servers; nothing here reads a clock, opens a
   socket or starts a thread.

This file holds the state and the entry points; the behaviour lives by concern in
    stream.py    admitting believed datagrams, arbitration, the buffer, delivery, conflicts
    belief.py    the receive window, held claims, which session is the channel's
    recovery.py  gap timers, NACKs, retransmissions and rejects, failover, give-up
    join.py      late join and resync from an initial image
each a mixin of `HandlerCore`, sharing the attributes set in `_reset_stream` and `__init__`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from decoders import CODECS, SCHEMA_TAG, CodecTable, DecodeError, DecodeErrorKind, parse_session
from decoders.moldudp64 import END_OF_SESSION_COUNT, HEADER_SIZE, HEARTBEAT_COUNT, decode_header
from decoders.schema.fields import FIELDS_BY_NAME
from mdcommon.compact_image import AnyImage, make_image
from mdcommon.ratelimit import TokenBucket

from .belief import BeliefMixin
from .claims import Claims
from .counters import FEED_COUNTERS, STREAM_COUNTERS
from .events import QUALITY_MAYBE_STALE, QUALITY_OK, QUALITY_STALE, FeedRecovered, QualityChanged
from .gaps import GapList
from .join import JoinMixin
from .policy import RecoveryPolicy
from .recovery import RecoveryMixin
from .stream import FEED_INDEX, FEEDS, LANE_EXPECTED, LANE_NEXT, LANE_RECENT_MAX_COUNT, LEAD_LAG_EDGES_NS, StreamMixin

__all__ = ["HandlerCore", "RecoveryPolicy", "FEEDS", "LEAD_LAG_EDGES_NS"]

_MAYBE_STALE = FIELDS_BY_NAME["maybe_stale"].field_id


class HandlerCore(StreamMixin, BeliefMixin, RecoveryMixin, JoinMixin):
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
        schema_tag: bytes | None = SCHEMA_TAG,
        now_ns: int = 0,
        on_messages: Callable[[int, list | tuple], Any] | None = None,
        request_group: bool = False,
        image_factory: Callable[[], Any] = make_image,
    ) -> None:
        self.on_message = on_message
        # Batched delivery: when given, messages go to on_messages(first_sequence, messages) instead, a whole
        # in-order datagram in one call (what drains from the buffer after a gap: a run of consecutive messages
        # per call); on_message is then not called.
        self.on_messages = on_messages
        self.on_event = on_event
        self.policy = p = policy or RecoveryPolicy()
        self.rng = rng or random.Random(0)
        self.nack_servers = nack_servers
        # Anonymous recovery: server 0 (of nack_servers) is the channel's request group, and its repairs come
        # back on the repair group as retransmissions from server 0 (recovery.py)
        self.request_group = request_group and nack_servers > 0
        self.image_servers = image_servers
        self.keep_image = keep_image
        self.late_join_image = late_join_image and image_servers > 0
        self.table = table
        self.schema_tag = schema_tag
        # the replica: a CompactImage (slots in C) where built, else an Image; either is what `image` holds
        self.image_factory = image_factory
        self.image = image_factory()
        self.feed_counters = [FEED_COUNTERS.new() for _ in FEEDS]
        self.counters = STREAM_COUNTERS.new()
        self.lead_lag = [0] * (len(LEAD_LAG_EDGES_NS) + 1)  # A minus B arrival time, by bucket
        self.recovery_ns: deque[int] = deque(maxlen=4096)  # the latest gaps' times from detection to recovery
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
        # the in-order lane in C (decoders/_native_lane.c), for our own schema's native backend only
        self.lane = getattr(table.native, "admit_run", None)
        self.batch_at = 0

    def _reset_stream(self, session: bytes | None, now_ns: int) -> None:
        self.session = session
        self.expected: int | None = None  # next sequence to deliver
        self.horizon = 0  # one past the highest sequence known to exist
        self.announced_from: int | None = None  # horizon[announced_from:] is vouched for by a heartbeat only, not by data
        self.buffer: dict[int, tuple] = {}
        self.buffer_top = 0  # above every sequence buffered since the stream started (a bound: deletions leave it)
        self.buffer_bytes = 0
        # While joining, datagrams wholly above everything held wait as their bytes (first sequence -> (count, bytes)),
        # decoded only when delivered: a joiner at 100 k msg/s holds millions of messages, and a tuple and its ints
        # per message cost five times the bytes and most of its CPU (bench/join.py). Disjoint from `buffer`, above
        # it, in sequence order; empty unless joining (`_unraw` moves them into `buffer` for every other path).
        self.raw: dict[int, tuple[int, bytes]] = {}
        self.raw_messages = 0
        self.gaps = GapList(self.policy.give_up_ns)
        self.feed_next = [0, 0, 0]
        # first sequence -> (feed, arrival ns, bytes) of the first datagram starting there that delivered
        # something: A/B lead-lag timing, and the first copy later copies are compared with (conflicts)
        self.recent: dict[int, tuple[int, int, bytes]] = {}
        self.recent_order: deque[int] = deque()  # keys of `recent`, oldest first (a dict's own oldest key is slow to find after deletions)
        self.recent_limit = self.policy.conflict_ring_datagrams
        self.recent_max_count = 1  # most messages in a datagram of the ring: how far back a message's datagram can start
        # first sequences in `recent` whose datagram, when it came, was all new or equal to what was held, none of it
        # delivered: a byte copy of one can only duplicate held messages, never conflict (see StreamMixin._admit)
        self.held_whole: set[int] = set()
        self.joining = False  # late join: buffering until the image arrives
        self.resync: list[tuple[int, tuple]] | None = None  # delivered during a background image fetch
        self.image_server = 0
        self.server_down_until = [0] * max(1, self.nack_servers)  # per re-request server: no new gaps before this time
        self.image_due_ns: int | None = None
        self.image_records: AnyImage | None = None
        self.image_failures = 0
        self.resync_from = 0
        self.ended = False
        self.end_sequence = 0  # what the believed end of session announced
        self.session_seen_ns = now_ns  # last datagram of this session on A or B: silence past stale_after ends it
        self.heard_recent: deque[tuple[int, int, int]] = deque(maxlen=64)  # requests heard on the group: (first, last, until ns)

    def resume(self, session: bytes, next_sequence: int, image: AnyImage | None = None) -> None:
        """Continue `session` from `next_sequence` (a restarted mirror with its journal on disk):
        what arrives beyond it is a gap like any other."""
        self.session_instance = self._instance_of(session)
        self._reset_stream(bytes(session), 0)
        self.expected = self.horizon = next_sequence
        if image is not None:
            self.image = image

    def _instance_of(self, session: bytes) -> int:
        """The instance a session name carries (-1: none); a foreign feed's sessions have no order (0)."""
        if self.schema_tag is None:
            return 0
        instance = parse_session(session)[1]
        return -1 if instance is None else instance

    def instrument_quality(self, instrument_id: int) -> str:
        """STALE/MAYBE_STALE follow the stream; after an unrecoverable gap an instrument stays
        MAYBE_STALE until an image refreshes its record. A record whose `maybe_stale` field is set
        (a relay upstream lost messages that may have touched it) is MAYBE_STALE too, while it is."""
        if self.quality != QUALITY_OK:
            return self.quality
        if self.refreshed.get(instrument_id, 0) < self.gap_generation:
            return QUALITY_MAYBE_STALE
        if self.keep_image and self.image.value(instrument_id, _MAYBE_STALE):
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

    def on_datagram(self, feed: str, data: Any, now_ns: int) -> list:
        """A multicast datagram from feed "A" or "B"."""
        index = FEED_INDEX[feed]
        counts = self.feed_counters[index].values
        counts[0] += 1  # datagrams
        self._heard(index, feed, now_ns)
        try:
            session, seq, count = decode_header(data)
        except DecodeError as exc:
            return self._malformed(index, exc)
        if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT) and len(data) != HEADER_SIZE:
            # a heartbeat's only content is its header: anything after it means the header cannot be trusted either
            return self._malformed(index, DecodeError(DecodeErrorKind.COUNT_MISMATCH, HEADER_SIZE, f"{len(data) - HEADER_SIZE} bytes after a count of {count}"))
        if seq == 0:
            # sequence numbers start at 1: a heartbeat announcing 0 announces nothing, and data at 0 is a control
            # packet, which comes unicast, never on a feed
            return self._malformed(index, DecodeError(DecodeErrorKind.BAD_SEQUENCE, 10, "sequence number 0 on a feed"))
        return self._offer(index, session, seq, count, data, now_ns)

    def _heard(self, index: int, feed: str, now_ns: int) -> None:
        """Feed `feed` delivered a datagram at `now_ns`: it is not silent, and back if it was."""
        self.last_rx_ns[index] = now_ns
        if self.stale[index]:
            self.stale[index] = False
            self.on_event(FeedRecovered(feed))
            self._update_quality(f"feed {feed} back")

    def on_batch(self, feed: str, buf: Any, slot: int, lengths: Sequence[int], now_ns: int, actions: list, start: int = 0) -> None:
        """The datagrams of one recvmmsg on feed "A" or "B", all read at `now_ns`: datagram i is
        buf[i * slot:][:abs(lengths[i])] (negative: cut to the slot). Exactly `on_datagram` for each, in
        order; the in-order and duplicate ones in runs through the native lane (stream.py, `_lane_args`),
        one call per run. Actions are appended to `actions`. If a callback raises, `batch_at` is the
        datagram it raised on: the caller resumes after it, as it would skip a datagram whose
        `on_datagram` raised."""
        index = FEED_INDEX[feed]
        lane = self.lane if index < 2 else None
        view = None
        i, n = start, len(lengths)
        while i < n:
            self.batch_at = i
            if lane is not None and self._lane_open():
                self._heard(index, feed, now_ns)  # what on_datagram does first, for the run's first datagram
                args = self._lane_args(index, i)
                ran = False
                try:
                    lane(buf, slot, lengths, i, index, now_ns, self.session, args)
                    ran = True
                finally:
                    j = args[LANE_NEXT]
                    if j > i or not ran:  # it took datagrams of our session (or was taking one when a callback raised)
                        self.session_seen_ns = now_ns
                    self.expected = self.horizon = args[LANE_EXPECTED]
                    self.recent_max_count = args[LANE_RECENT_MAX_COUNT]
                    self.batch_at = i = j
                if i >= n:
                    return
            if view is None:
                view = memoryview(buf)
            off = i * slot
            a = self.on_datagram(feed, view[off : off + abs(lengths[i])], now_ns)
            if a:
                actions += a
            i += 1

    @property
    def buffered(self) -> int:
        """Messages held ahead of delivery: in the buffer, and in datagrams held as bytes while joining."""
        return len(self.buffer) + self.raw_messages

    def status(self) -> dict[str, Any]:
        return {
            "session": self.session.decode() if self.session else None,
            "expected": self.expected,
            "horizon": self.horizon,
            "quality": self.quality,
            "buffered": self.buffered,
            "gaps_open": len(self.gaps),
            "nacks_in_flight": self._in_flight(),
            "missing": self.gaps.missing(),
            "joining": self.joining,
            "instruments": len(self.image),
            "feeds": {FEEDS[i]: {"stale": self.stale[i] if i < 2 else None, **self.feed_counters[i].as_dict()} for i in range(3)},
            "stream": self.counters.as_dict(),
            "lead_lag_a_minus_b": dict(zip(_bucket_labels(), self.lead_lag, strict=True)),
            "recovery_ms": _percentiles(self.recovery_ns),
        }


def _percentiles(samples_ns: deque[int]) -> dict[str, float]:
    """p50, p99 and max of the latest recoveries (detection to fill), in ms: what an operator asks first."""
    if not samples_ns:
        return {"recent": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    s = sorted(samples_ns)
    n = len(s)
    return {"recent": n, "p50": s[n // 2] / 1e6, "p99": s[min(n - 1, int(n * 0.99))] / 1e6, "max": s[-1] / 1e6}


def _bucket_labels() -> list[str]:
    edges = LEAD_LAG_EDGES_NS
    labels = [f"<{edges[0] // 1000}us"]
    labels += [f"{a // 1000}..{b // 1000}us" for a, b in zip(edges, edges[1:], strict=False)]
    labels.append(f">={edges[-1] // 1000}us")
    return labels
