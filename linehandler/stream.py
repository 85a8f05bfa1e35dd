"""Stream and arbitration: believed datagrams become messages delivered exactly once, in order.

Part of `HandlerCore` (session.py holds the state these methods share). Arbitration is by
sequence number, per message: the first copy wins, from A, B or a retransmission (R), and
any later copy is a counted duplicate. A datagram wholly below `expected` is not decoded
but compared byte for byte with the one that delivered its first sequence (a bounded ring
of recent datagrams); only if they differ are the messages compared one by one, and a
difference is a `SequenceConflict` (two publishers disagree), the first copy staying
delivered. What arrives ahead of a gap waits in a bounded buffer; a gap is skipped only
with a `GapEvent` before the next message.
"""

from __future__ import annotations

from typing import Any

from decoders import DecodeError
from decoders.moldudp64 import END_OF_SESSION_COUNT, HEARTBEAT_COUNT, MAX_DATAGRAM_BYTES, decode_messages, split_blocks

from .counters import FEED_COUNTERS, STREAM_COUNTERS
from .events import BufferOverflow, GapEvent, Recovered, SequenceConflict, SessionEnded

__all__ = ["StreamMixin", "FEEDS", "FEED_INDEX", "NO_ACTIONS", "LEAD_LAG_EDGES_NS", "BUFFERED_MESSAGE_BYTES", "LANE_NEXT",
           "LANE_EXPECTED", "LANE_RECENT_MAX_COUNT"]

FEEDS = ("A", "B", "R")  # R: unicast retransmissions; a feed index is a position here
FEED_INDEX = {"A": 0, "B": 1, "R": 2}
NO_ACTIONS: list = []
LEAD_LAG_EDGES_NS = (-10_000_000, -1_000_000, -100_000, -10_000, 0, 10_000, 100_000, 1_000_000, 10_000_000)
BUFFERED_MESSAGE_BYTES = 48  # what one buffered message is reckoned to cost, for max_buffer_bytes (tuple + ints)
# The native lane's argument list (decoders/_native_lane.c, enum L_*): what it reads, and where it writes its progress
LANE_NEXT, LANE_EXPECTED, LANE_RECENT_MAX_COUNT = 13, 14, 15
_LANE_IDS = (FEED_COUNTERS.datagrams, FEED_COUNTERS.messages, FEED_COUNTERS.first_arrivals, FEED_COUNTERS.duplicates,
             FEED_COUNTERS.missed, STREAM_COUNTERS.delivered)


def _as_bytes(data: Any) -> bytes:
    """A datagram as bytes to keep or compare (a view of a receive buffer is copied)."""
    return data if type(data) is bytes else bytes(data)


class StreamMixin:
    """Admitting believed datagrams, merging out-of-order ones, draining the buffer, comparing copies."""

    def _admit(self, feed: int, seq: int, count: int, data: Any, now_ns: int) -> list:
        """A datagram of the current session that is believed: within the window, or corroborated."""
        counts = self.feed_counters[feed].values
        if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT):
            return self._heartbeat(feed, seq, count, now_ns)
        end = seq + count
        if self.ended and end > self.end_sequence:
            # data past the end of session: that end was not the plant's (the plant sends nothing after it)
            self.ended = False
            self.counters.values[STREAM_COUNTERS.end_withdrawn] += 1
        counts[FEED_COUNTERS.messages] += count
        feed_was_at = -1
        if feed < 2:
            feed_was_at = self.feed_next[feed]
            if seq > feed_was_at and feed_was_at:
                counts[FEED_COUNTERS.missed] += seq - feed_was_at
            if end > feed_was_at:
                self.feed_next[feed] = end
        first_copy = self.recent.get(seq)  # (feed, arrival ns, bytes) of the first datagram that started at seq
        if first_copy is not None and first_copy[0] != feed and feed < 2 and first_copy[0] < 2:
            self._lead_lag(first_copy[0], now_ns - first_copy[1])
        expected = self.expected
        if expected is not None and end <= expected:
            counts[FEED_COUNTERS.duplicates] += count  # wholly delivered already: compared, not decoded
            if first_copy is not None and first_copy[2] == _as_bytes(data):
                return NO_ACTIONS
            return self._check_delivered(feed, seq, data)
        buffer = self.buffer
        if (first_copy is not None and buffer and expected is not None and self.announced_from is None and seq in self.held_whole
                and first_copy[2] == _as_bytes(data) and all(map(buffer.__contains__, range(max(seq, expected), end)))):
            # the other feed's copy of a datagram held ahead of a gap: every message of it is delivered or buffered,
            # each equal to a first copy with these very bytes (held_whole: when that copy came, nothing held
            # differed from it and none of it was delivered), so `_merge` would only count duplicates. Counted
            # here without decoding: a handler that fell behind must not spend three times as much on the second
            # copy of each datagram as on the first, or it never catches up. A first copy that met a held message
            # that differed, or a delivered one, is not in held_whole: its copies are still compared.
            counts[FEED_COUNTERS.duplicates] += count
            return NO_ACTIONS
        raw = self.raw
        if raw:
            held = raw.get(seq)
            if held is not None and held[0] == count and held[1] == _as_bytes(data):
                counts[FEED_COUNTERS.duplicates] += count  # the other feed's copy of a datagram held while joining
                return NO_ACTIONS
        try:
            msgs = decode_messages(data, count, self.table)  # the header was accepted above
        except DecodeError as exc:
            counts[FEED_COUNTERS.messages] -= count
            if feed_was_at >= 0 and self.feed_next[feed] == end:  # a malformed body moves none of this feed's figures
                if seq > feed_was_at and feed_was_at:
                    counts[FEED_COUNTERS.missed] -= seq - feed_was_at
                self.feed_next[feed] = feed_was_at
            return self._malformed(feed, exc)
        if seq == expected and not self.buffer and not self.gaps and not self.joining:
            # the common case: the next datagram, in order, nothing pending
            if self.on_messages is not None:
                self.on_messages(seq, msgs)
                if self.keep_image:
                    self.image.apply_many(msgs)
            elif self.keep_image:
                deliver = self.on_message
                apply = self.image.apply
                for m in msgs:
                    deliver(seq, m)
                    apply(m)
                    seq += 1
            else:
                deliver = self.on_message
                for m in msgs:
                    deliver(seq, m)
                    seq += 1
            if self.resync is not None:
                self._remember(end - count, msgs)
            if first_copy is None:
                self._remember_datagram(feed, expected, count, data, now_ns)
            counts[FEED_COUNTERS.first_arrivals] += count
            self.counters.values[STREAM_COUNTERS.delivered] += count
            self.expected = self.horizon = end
            return NO_ACTIONS
        if self.joining and seq == self.horizon and seq >= self.buffer_top and self.announced_from is None:
            # wholly new while joining (decoded above only to refuse a malformed body now): kept as its bytes
            return self._hold_raw(feed, seq, count, data, now_ns, first_copy is None)
        return self._merge(feed, seq, msgs, now_ns, data, now_ns if first_copy is None else None)

    def _hold_raw(self, feed: int, seq: int, count: int, data: Any, now_ns: int, first: bool) -> list:
        """What `_merge` does with a datagram wholly above everything known, but held as bytes (see `raw`)."""
        kept = _as_bytes(data)
        self.raw[seq] = (count, kept)
        self.raw_messages += count
        self.buffer_bytes += BUFFERED_MESSAGE_BYTES * count
        self.feed_counters[feed].values[FEED_COUNTERS.first_arrivals] += count
        self.horizon = self.buffer_top = seq + count
        if first:
            self._remember_datagram(feed, seq, count, kept, now_ns, whole=True)
        if self._over_bounds():
            self._overflow(now_ns)
        self._update_quality("gap")
        return NO_ACTIONS

    def _over_bounds(self) -> bool:
        p = self.policy
        return self.buffered > p.max_buffer_messages or self.buffer_bytes > p.max_buffer_bytes

    def _unheld(self, seq: int, count: int, data: bytes) -> None:
        """One datagram held as bytes, decoded into `buffer` (its bytes stay counted in `buffer_bytes`)."""
        self.buffer.update(zip(range(seq, seq + count), decode_messages(data, count, self.table)))

    def _unraw(self) -> None:
        """Decode every datagram held as bytes into `buffer`, for the paths that read it message by message."""
        if not self.raw:
            return
        for seq, (count, data) in self.raw.items():
            self._unheld(seq, count, data)
        self.raw.clear()
        self.raw_messages = 0

    def _lane_open(self) -> bool:
        """May the native lane run? It takes only what `_admit` takes on its in-order and wholly-delivered
        paths, so only when those paths are all `_admit` would take for an in-order datagram."""
        return (self.expected is not None and self.session is not None and self.horizon == self.expected and not self.buffer
                and not self.gaps and not self.joining and not self.ended and self.resync is None)

    def _lane_args(self, feed: int, start: int) -> list:
        """The state the lane reads and updates in place, in the order of decoders/_native_lane.c's L_* enum."""
        batched = self.on_messages is not None
        image = self.image if self.keep_image else None
        return [self.feed_counters[feed].values, self.counters.values, self.lead_lag, LEAD_LAG_EDGES_NS, self.recent,
                self.recent_order, self.feed_next, self.recent_limit, self.on_messages, self.on_message,
                image.apply_many if image is not None and batched else None, image.apply if image is not None and not batched else None,
                _LANE_IDS, start, self.expected, self.recent_max_count, MAX_DATAGRAM_BYTES]

    def _heartbeat(self, feed: int, seq: int, count: int, now_ns: int) -> list:
        self._unraw()
        counts = self.feed_counters[feed].values
        counts[FEED_COUNTERS.heartbeats] += 1
        actions = NO_ACTIONS
        if self.expected is None:
            actions = self._start(seq, now_ns)
        announced = self.announced_from
        if announced is not None and max(announced, self.expected) <= seq < self.horizon and not any(s >= seq for s in self.buffer):
            # the plant's heartbeats only move forward: one announcing less than a range that only a heartbeat
            # announced says that announcement was not the plant's (or is stale). Withdraw what lies above it;
            # a real tail loss is announced again by the plant's next heartbeat.
            self.gaps.remove_range(seq, self.horizon - 1)
            self.horizon = seq
            self.announced_from = announced if announced < seq else None
            self.counters.values[STREAM_COUNTERS.announced_withdrawn] += 1
        if seq > self.horizon:
            self.gaps.add(self._new_gap(self.horizon, seq - 1, now_ns))  # tail loss, seen thanks to the heartbeat
            if self.announced_from is None:
                self.announced_from = self.horizon
            self.horizon = seq
        if feed < 2 and seq > self.feed_next[feed]:
            if self.feed_next[feed]:
                counts[FEED_COUNTERS.missed] += seq - self.feed_next[feed]
            self.feed_next[feed] = seq
        if count == END_OF_SESSION_COUNT and not self.ended:
            self.ended = True
            self.end_sequence = seq
            self.on_event(SessionEnded(self.session, seq))
        return actions

    def _merge(self, feed: int, seq: int, msgs: list, now_ns: int, data: Any = None, remember: int | None = None) -> list:
        """Anything but the in-order case: start, overlap, early arrival, fill of a gap."""
        self._unraw()
        actions = NO_ACTIONS
        if self.expected is None:
            actions = self._start(seq, now_ns)
        counts = self.feed_counters[feed].values
        count = len(msgs)
        end = seq + count
        announced = self.announced_from
        if announced is not None:
            if end >= self.horizon:
                self.announced_from = None  # data reached what the heartbeat announced: it holds
            elif feed < 2 and seq >= announced:
                # live data inside a range only a heartbeat announced: the plant sends its heartbeats after its
                # data, so this heartbeat was reordered ahead of it or came from another sender. Believe the data:
                # the range above it is no longer a gap (the plant's next heartbeat or datagram re-announces it).
                # Data already held inside that range (a repair, or live data that came earlier) is corroborated
                # too: the horizon never drops below it, or a later gap would be opened over held messages.
                top = max(end, self.buffer_top, self.expected)
                if top < self.horizon:
                    self.gaps.remove_range(top, self.horizon - 1)
                    self.horizon = top
                self.announced_from = None
                self.counters.values[STREAM_COUNTERS.announced_withdrawn] += 1
        if seq > self.horizon:
            self.gaps.add(self._new_gap(self.horizon, seq - 1, now_ns))
        old_horizon = self.horizon
        if end > self.horizon:
            self.horizon = end
        expected = self.expected
        buffer = self.buffer
        est = BUFFERED_MESSAGE_BYTES
        first_new = last_new = None
        delivered_dups = 0
        buffered_conflicts: list[int] = []
        if seq >= expected and seq >= self.buffer_top and msgs:
            # wholly new (above what was delivered and above anything ever buffered): kept at once, as the loop
            # below would keep it message by message (a late join buffers the whole live feed this way)
            buffer.update(zip(range(seq, end), msgs))
            self.buffer_bytes += est * count
            counts[FEED_COUNTERS.first_arrivals] += count
            first_new, last_new = seq, end - 1
        else:
            for i, m in enumerate(msgs):
                s = seq + i
                if s < expected:
                    counts[FEED_COUNTERS.duplicates] += 1
                    delivered_dups += 1
                    continue
                if s in buffer:
                    counts[FEED_COUNTERS.duplicates] += 1
                    if buffer[s] != m:
                        buffered_conflicts.append(s)
                    continue
                buffer[s] = m
                self.buffer_bytes += est
                counts[FEED_COUNTERS.first_arrivals] += 1
                if first_new is None:
                    first_new = s
                last_new = s
        if last_new is not None and last_new >= self.buffer_top:
            self.buffer_top = last_new + 1
        if delivered_dups and data is not None:
            try:
                self._compare(feed, seq, split_blocks(data)[3][:delivered_dups])
            except DecodeError as exc:
                self.last_decode_error = exc  # decoded fine above; cannot happen, but never silently
        if buffered_conflicts:
            self._conflict(feed, buffered_conflicts)
        if first_new is not None and data is not None and remember is not None:  # never overwrite a first copy
            # whole: each message held from these bytes, or equal to them
            self._remember_datagram(feed, seq, count, data, remember, whole=not delivered_dups and not buffered_conflicts)
        if first_new is not None and first_new < old_horizon:
            for g in self.gaps.remove_range(first_new, min(last_new, old_horizon - 1)):
                if g.attempts or g.heard or feed == 2:  # asked for, by us or by a handler we heard, or repaired for another
                    self.counters.values[STREAM_COUNTERS.gaps_recovered_by_nack] += 1
                    self.recovery_ns.append(now_ns - g.detected_ns)
                    self.on_event(Recovered(g.first, g.last, g.server, now_ns - g.detected_ns))
                else:
                    self.counters.values[STREAM_COUNTERS.gaps_filled_by_other_feed] += 1
        if not self.joining:
            self._drain()
        if self._over_bounds():
            self._overflow(now_ns)
        self._update_quality("gap")
        return actions

    def _deliver_run(self, first: int, run: list[tuple]) -> None:
        """Deliver consecutive messages from `first`: one on_messages call and one apply_many, or message by
        message (the replica updated, and the count kept, after each, as the in-order path does)."""
        delivered = self.counters.values
        if self.on_messages is not None:
            self.on_messages(first, run)
            if self.keep_image:
                self.image.apply_many(run)
            delivered[STREAM_COUNTERS.delivered] += len(run)
            if self.resync is not None:
                self._remember(first, run)
            return
        for i, m in enumerate(run):
            s = first + i
            self.on_message(s, m)
            delivered[STREAM_COUNTERS.delivered] += 1
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
        """Deliver from the buffer in order, a run of consecutive messages at a time (one on_messages call and
        one apply_many per run); skip abandoned gaps at the head, loudly."""
        buffer = self.buffer
        expected = self.expected
        while True:
            if expected in buffer:
                pop = buffer.pop
                run = [pop(expected)]
                s = expected + 1
                while s in buffer:
                    run.append(pop(s))
                    s += 1
                self.buffer_bytes -= BUFFERED_MESSAGE_BYTES * len(run)
                self.expected = expected  # where the run starts, should a callback raise in it
                self._deliver_run(expected, run)
                expected = s
                continue
            held = self.raw.pop(expected, None) if self.raw else None
            if held is not None:  # a datagram held as bytes while joining: decoded now, delivered as one run
                count, data = held
                self.raw_messages -= count
                self.buffer_bytes -= BUFFERED_MESSAGE_BYTES * count
                self.expected = expected
                self._deliver_run(expected, decode_messages(data, count, self.table))
                expected += count
                continue
            head = self.gaps.head()
            if head is not None and head.first == expected and head.abandoned:
                self.gaps.remove_range(head.first, head.last)
                self._report_gap(head.first, head.last, head.abandoned)
                expected = head.last + 1
                continue
            break
        self.expected = expected

    def _report_gap(self, first: int, last: int, reason: str) -> None:
        self.counters.values[STREAM_COUNTERS.messages_lost] += last - first + 1
        self.counters.values[STREAM_COUNTERS.gaps_unrecoverable] += 1
        self.gap_generation += 1
        self.on_event(GapEvent(first, last, reason))

    def _overflow(self, now_ns: int) -> None:
        """The buffer is full: give up the oldest gap so buffered messages can drain."""
        self._unraw()
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
            self.gaps.add(self._new_gap(self.expected, upto, now_ns))
            return
        p = self.policy
        for g in list(self.gaps):  # the oldest first, until what is held fits again
            if len(self.buffer) <= p.max_buffer_messages and self.buffer_bytes <= p.max_buffer_bytes:
                break
            self.gaps.abandon(g, "buffer_overflow")
            self._drain()

    def _close_session(self, reason: str) -> None:
        """The session is over: deliver what is buffered, and report every gap left, in order."""
        if self.expected is None or self.joining:
            return
        for g in self.gaps:
            self.gaps.abandon(g, reason)
        self._drain()

    def _remember_datagram(self, feed: int, seq: int, count: int, data: Any, now_ns: int, whole: bool = False) -> None:
        """The first copy of the datagram starting at `seq`; `whole`: it met nothing held that differed and nothing
        delivered (held_whole, which is set here only, where every first copy the Python paths keep is set)."""
        self.recent[seq] = (feed, now_ns, _as_bytes(data))
        held = self.held_whole
        if whole:
            held.add(seq)
            if len(held) > 2 * self.recent_limit:  # forget what `recent` forgot (the native lane evicts without telling)
                held &= self.recent.keys()
        elif held:
            held.discard(seq)
        order = self.recent_order
        order.append(seq)
        if len(order) > self.recent_limit:
            self.recent.pop(order.popleft(), None)
        if count > self.recent_max_count:
            self.recent_max_count = count

    def _check_delivered(self, feed: int, seq: int, data: Any) -> list:
        """A wholly delivered datagram that is not a byte copy of the one that delivered its first
        sequence: compare its messages one by one with the first copies."""
        try:
            blocks = split_blocks(data)[3]
        except DecodeError as exc:
            return self._malformed(feed, exc)
        self._compare(feed, seq, blocks)
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

    def _compare(self, feed: int, seq: int, blocks: list[bytes]) -> None:
        """Compare the raw messages from `seq` on with the first copies delivered."""
        bad: list[int] = []
        unchecked = 0
        copy: tuple[int, list[bytes]] | None = None
        for i, b in enumerate(blocks):
            s = seq + i
            if copy is None or not copy[0] <= s < copy[0] + len(copy[1]):
                copy = self._first_copy(s)
                if copy is None:
                    unchecked += 1
                    continue
            if copy[1][s - copy[0]] != b:
                bad.append(s)
        if unchecked:
            self.counters.values[STREAM_COUNTERS.duplicates_unchecked] += unchecked
        if bad:
            self._conflict(feed, bad)

    def _conflict(self, feed: int, seqs: list[int]) -> None:
        self.feed_counters[feed].values[FEED_COUNTERS.conflicts] += len(seqs)
        self.counters.values[STREAM_COUNTERS.conflicts] += len(seqs)
        self.on_event(SequenceConflict(FEEDS[feed], self.session, seqs[0], seqs[-1], len(seqs)))

    def _lead_lag(self, first_feed: int, delta_ns: int) -> None:
        a_minus_b = -delta_ns if first_feed == 0 else delta_ns  # negative: A arrived first
        i = 0
        for edge in LEAD_LAG_EDGES_NS:
            if a_minus_b < edge:
                break
            i += 1
        self.lead_lag[i] += 1

    def _malformed(self, feed: int, exc: DecodeError) -> list:
        counts = self.feed_counters[feed].values
        counts[FEED_COUNTERS.malformed] += 1
        self.counters.values[STREAM_COUNTERS.malformed_datagrams] += 1
        self.last_decode_error = exc
        return NO_ACTIONS
