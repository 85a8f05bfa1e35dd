"""An ITCH 5.0 MoldUDP64 capture as the input of a plant: the relay's normalizing layer, replayable.

The capture's datagrams of one feed (its UDP port, and group if given; a capture of both A and
B copies is arbitrated by sequence number, the first copy winning) are read in sequence order,
each ITCH message decoded with the construct declarations of `examples/itch/schema.py` (the
schema is named by module, as for the Wireshark generator) and normalized (`normalizer.py`).

As a plant input it follows the feed protocol of `tickerplant/source.py`: batch k is what the
k-th ITCH datagram normalized into, due at the origin plus its ITCH time since the first one
(divided by `speed`; speed 0 = all at once). The output depends only on the capture, so two
relays on the same capture publish the same bytes: a hot-standby pair (the standby learns the
pace from the stream, exactly with the same `origin_ns` configured on both). A sequence range missing from the capture is counted and reported (`gaps`): the
book may be wrong from there, which the relay's log says; marking the instruments it touched
MAYBE_STALE downstream is not built yet.
"""

from __future__ import annotations

import bisect
import datetime
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from decoders import DecodeError
from decoders.moldudp64 import END_OF_SESSION_COUNT, HEARTBEAT_COUNT, split_blocks
from decoders.pcap import read_udp

from .normalizer import ItchNormalizer

__all__ = ["ItchCapture", "ItchFeed", "read_capture", "midnight_ns"]


@dataclass
class ItchCapture:
    """What a capture holds of one ITCH feed, in sequence order."""

    messages: list[tuple[int, list[tuple[str, dict]]]] = field(default_factory=list)  # (first sequence, [(name, fields)]) per datagram
    datagrams: int = 0
    duplicates: int = 0  # copies of sequences already taken (the other feed, or a repeat)
    malformed: int = 0
    undecodable: int = 0  # ITCH messages of a type the schema does not declare, or that do not parse
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first, last) sequences the capture does not hold
    session: bytes = b""
    other_session: int = 0  # datagrams of another MoldUDP64 session on the same port (not this feed's: skipped)


def read_capture(path: str, port: int, group: str = "", schema: str = "examples.itch.schema") -> ItchCapture:
    """Every ITCH message of the feed on `port` (and `group`) in `path`, each sequence once, in order."""
    messages = importlib.import_module(schema).MESSAGES
    by_type = {con.subcons[0].subcon.value: (name, con) for name, con in messages.items()}  # msg type Const -> (name, construct)
    cap = ItchCapture()
    taken: dict[int, list[bytes]] = {}
    announced = 0
    for _, _, _, dst, dport, payload in read_udp(path):
        if dport != port or (group and dst != group):
            continue
        cap.datagrams += 1
        try:
            session, seq, count, blocks = split_blocks(payload)
        except DecodeError:
            cap.malformed += 1
            continue
        cap.session = cap.session or session
        if session != cap.session:
            cap.other_session += 1
            continue
        if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT) or not blocks:
            announced = max(announced, seq)  # the next sequence the feed says it will send: a lost tail shows here
            continue
        announced = max(announced, seq + count)
        for i, block in enumerate(blocks):
            if seq + i in taken:
                cap.duplicates += 1
            else:
                taken[seq + i] = block
    expected = 1  # a MoldUDP64 session starts at 1: a capture that starts later misses its head
    run_first, run = expected, []
    for seq in sorted(taken):
        if seq != expected:
            if run:
                cap.messages.append((run_first, run))
            cap.gaps.append((expected, seq - 1))
            run_first, run = seq, []
        block = taken[seq]
        name, con = by_type.get(block[:1], (None, None))
        try:
            if con is None:
                raise ValueError(f"type {block[:1]!r}")
            run.append((name, con.parse(block)))
        except Exception:  # construct raises its own errors: a message we cannot read is counted, not guessed at
            cap.undecodable += 1
        expected = seq + 1
        if len(run) >= 64:  # one batch per 64 messages at most, so a long run still paces
            cap.messages.append((run_first, run))
            run_first, run = expected, []
    if run:
        cap.messages.append((run_first, run))
    if announced > expected:
        cap.gaps.append((expected, announced - 1))  # heartbeats announced messages the capture does not hold
    return cap


def midnight_ns(date: str, first_capture_ns: int, zone: str = "America/New_York") -> int:
    """The session date's midnight in the exchange's time zone (ITCH counts nanoseconds from it), in ns since
    the epoch; without a date, the date of the capture's first frame there."""
    tz = ZoneInfo(zone)
    day = datetime.date.fromisoformat(date) if date else datetime.datetime.fromtimestamp(first_capture_ns / 1e9, tz).date()
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()) * 1_000_000_000


class ItchFeed:
    """The capture normalized, as a deterministic plant input (tickerplant/source.py's feed protocol)."""

    batch_ns = 1

    def __init__(self, capture: ItchCapture, midnight_ns: int, origin_ns: int, speed: float = 1.0,
                 clock_ns: Callable[[], int] | None = None) -> None:
        self.origin_ns = origin_ns
        self.clock_ns = clock_ns  # wall clock, for a standby learning the origin from the stream (origin_from)
        self.next_batch = 0
        self.normalizer = ItchNormalizer(midnight_ns)
        self.batches: list[list[tuple]] = []
        itch_times: list[int] = []
        for _, run in capture.messages:
            out: list[tuple] = []
            for name, m in run:
                out += self.normalizer.on_message(name, m)
            self.batches.append(out)
            itch_times.append(run[0][1]["timestamp"])
        t0 = itch_times[0] if itch_times else 0
        self.offsets: list[int] = []
        self.time_regressions = 0  # batches whose ITCH time went backwards: due with the one before, never earlier
        for t in itch_times:
            off = int((t - t0) / speed) if speed > 0 else 0
            if self.offsets and off < self.offsets[-1]:
                self.time_regressions += 1
                off = self.offsets[-1]
            self.offsets.append(off)
        self.firsts = []  # our sequence number of each batch's first message (1 is the start-of-session event)
        seq = 2
        for b in self.batches:
            self.firsts.append(seq)
            seq += len(b)

    def due_batches(self, now_ns: int) -> int:
        if now_ns < self.origin_ns:
            return 0
        return bisect.bisect_right(self.offsets, now_ns - self.origin_ns) if self.offsets else 0

    def batch_due_ns(self, k: int) -> int:
        return self.origin_ns + self.offsets[k] if k < len(self.offsets) else 2**62

    def next(self) -> list[tuple]:
        k = self.next_batch
        self.next_batch += 1
        return self.batches[k] if k < len(self.batches) else []

    def batch_of_sequence(self, sequence: int) -> int:
        return max(0, bisect.bisect_right(self.firsts, sequence) - 1)

    def origin_from(self, sequence: int, timestamp_ns: int) -> int:
        """Messages carry ITCH times, not due times: a standby learning the session from the stream takes the
        batch of `sequence` as due now (the active published it a moment ago), so after a takeover it keeps the
        pace; without a clock, the origin it was built with. A configured `origin_ns` is exact."""
        if sequence == 1:
            return timestamp_ns  # the start-of-session event is stamped with the origin itself
        if self.clock_ns is None:
            return self.origin_ns
        k = self.batch_of_sequence(sequence)
        return self.clock_ns() - (self.offsets[k] if k < len(self.offsets) else 0)

    @property
    def done(self) -> bool:
        return self.next_batch >= len(self.batches)
