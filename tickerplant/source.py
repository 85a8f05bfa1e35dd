"""Where the plant's messages come from: a seeded synthetic market, or a JSON-lines file.

Determinism: `SyntheticMarket(seed=s)` produces the same message contents in the same
order for the same seed and the same sequence of `next_messages(n, now_ns)` calls;
only the timestamps (`now_ns`) come from outside.

The plant consumes an input as *batches* (`SyntheticFeed`, `FileFeed`): batch k is due at
`origin_ns + k × batch_ns` and is stamped with that time, batch 0 being the instrument
directory (or the whole file). What a batch holds depends only on the configuration and
k, never on when the plant runs; the plant flushes its datagram at the end of every
batch, so the datagrams' boundaries depend only on the messages too. Two plants with
the same input configuration and origin therefore publish the same bytes under the
same sequence numbers (the hot standby relies on this, docs/standby.md), and a plant
can regenerate the stream from its start to any position (`batch_of_sequence`).
"""

from __future__ import annotations

import json
import random
from array import array
from collections.abc import Iterator
from typing import IO, Any

from decoders import AGGRESSORS, CODECS, CodecTable
from decoders.native import wanted_backend
from decoders.schema.fields import FIELDS_BY_NAME, VALUE_INTEGER, VALUE_PRICE

__all__ = ["SyntheticMarket", "RateSchedule", "SyntheticFeed", "FileFeed", "read_json_lines", "message_from_json"]

_AGGRESSORS = (AGGRESSORS["buy"], AGGRESSORS["sell"])
_VWAP = FIELDS_BY_NAME["vwap"].field_id
_OPEN_INTEREST = FIELDS_BY_NAME["open_interest"].field_id
_HALTED = FIELDS_BY_NAME["halted"].field_id
# what tickerplant/_synthetic.c writes into its messages, in the order of its C_* enum
_C_CONSTS = (b"Q", b"T", b"F", _AGGRESSORS[0], _AGGRESSORS[1], _VWAP, VALUE_PRICE, _OPEN_INTEREST, VALUE_INTEGER, _HALTED, 4, 0)


def _load_synthetic() -> Any:
    """The C generator (tickerplant/_synthetic.c) where pip install built it, unless MD_BACKEND=python."""
    if wanted_backend() == "python":
        return None
    try:
        from . import _synthetic  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _synthetic


_SYNTHETIC = _load_synthetic()


class RateSchedule:
    """Messages due after `elapsed_ns`: `burst_multiplier`× the base rate for the first
    `burst_seconds` (the opening bell), then the base rate."""

    def __init__(self, rate_per_s: float, burst_multiplier: float = 1.0, burst_seconds: float = 0.0) -> None:
        if rate_per_s < 0 or burst_multiplier < 1 or burst_seconds < 0:
            raise ValueError("rate must be >= 0, burst multiplier >= 1, burst seconds >= 0")
        self.rate_per_s = rate_per_s
        self.burst_multiplier = burst_multiplier
        self.burst_seconds = burst_seconds

    def due(self, elapsed_ns: int) -> int:
        t = elapsed_ns / 1e9
        if t <= self.burst_seconds:
            return int(self.rate_per_s * self.burst_multiplier * t)
        return int(self.rate_per_s * (self.burst_multiplier * self.burst_seconds + (t - self.burst_seconds)))


class SyntheticMarket:
    """N instruments with random-walk mids; quotes, trades and field updates in a fixed mix."""

    def __init__(self, instruments: int = 1000, seed: int = 1, price_exponent: int = -4) -> None:
        if not 1 <= instruments <= 4_000_000:
            raise ValueError(f"instruments {instruments} outside 1..4,000,000")
        self.instruments = instruments
        self.price_exponent = price_exponent
        self._rng = random.Random(seed)
        self._mt: bytearray | None = None  # the C generator's state while it holds it (then self._rng is stale)
        rnd = self._rng.random
        # int64 arrays, not lists of ints: the C generator reads and writes a random instrument's mid with every
        # message, and ints scattered over the heap cost it a cache miss, a conversion and an int freed each time
        self.mid = array("q", [int(10_0000 + rnd() * 490_0000) for _ in range(instruments)])  # 10.0000 .. 500.0000
        self.trade_id = array("q", bytes(8 * instruments))

    def directory(self, now_ns: int) -> Iterator[tuple]:
        """One instrument directory message per instrument, ids 1..N."""
        for i in range(self.instruments):
            yield (b"R", now_ns, i + 1, f"SYM{i + 1:06d}", self.price_exponent)

    @property
    def rng(self) -> random.Random:
        """The market's random generator, its state taken back from the C generator if that holds it."""
        if self._mt is not None:
            version, _, gauss = self._rng.getstate()
            self._rng.setstate((version, _SYNTHETIC.state_tuple(self._mt), gauss))
            self._mt = None
        return self._rng

    def next_messages(self, n: int, now_ns: int) -> list[tuple]:
        if _SYNTHETIC is not None:  # the same messages, in C, from the state it keeps between calls
            if self._mt is None:
                self._mt = _SYNTHETIC.state_buffer(self._rng.getstate()[1])
            return _SYNTHETIC.next_messages(self._mt, n, now_ns, self.mid, self.trade_id, self.instruments, _C_CONSTS)
        return self._next_messages_python(n, now_ns)

    def _next_messages_python(self, n: int, now_ns: int) -> list[tuple]:
        rng = self.rng
        rnd = rng.random
        mid = self.mid
        count = self.instruments
        out: list[tuple] = []
        append = out.append
        for _ in range(n):
            k = int(rnd() * count)
            iid = k + 1
            r = rnd()
            m = mid[k] + int((r - 0.5) * 20)
            if m < 100:
                m = 100
            mid[k] = m
            if r < 0.6:
                spread = 1 + int(r * 10)
                append((b"Q", now_ns, iid, m - spread, 100 + int(r * 9000), m + spread, 100 + int((1 - r) * 9000)))
            elif r < 0.8:
                self.trade_id[k] += 1
                append((b"T", now_ns, iid, m, 1 + int(r * 500), _AGGRESSORS[int(r * 100) & 1], self.trade_id[k]))
            elif r < 0.95:
                append((b"F", now_ns, iid, _VWAP, VALUE_PRICE, m))
            elif r < 0.99:
                append((b"F", now_ns, iid, _OPEN_INTEREST, VALUE_INTEGER, int(r * 1_000_000)))
            else:
                append((b"F", now_ns, iid, _HALTED, 4, 0))
        return out


class SyntheticFeed:
    """The synthetic market as a deterministic, replayable input in batches of `batch_ns`.

    Sequence numbers of a session: 1 is the plant's start-of-session event, 2..1+N the
    directory (batch 0, due at the origin), then the market batches 1, 2, ... of
    `schedule.due(kT) - schedule.due((k-1)T)` messages each, batch k due at
    origin + `open_ns` + kT. The market opens `open_ns` after the origin (3 µs an
    instrument, whole batches: a function of the configuration, so the same on every plant)
    so that publishing the directory does not make the first market batches late.
    """

    NS_PER_INSTRUMENT = 3000

    def __init__(self, market: SyntheticMarket, schedule: RateSchedule, batch_ns: int, origin_ns: int) -> None:
        if batch_ns <= 0:
            raise ValueError("batch_ns must be positive")
        self.market = market
        self.schedule = schedule
        self.batch_ns = batch_ns
        self.origin_ns = origin_ns
        self.open_ns = -(-market.instruments * self.NS_PER_INSTRUMENT // batch_ns) * batch_ns
        self.next_batch = 0

    def due_batches(self, now_ns: int) -> int:
        """How many batches (0, 1, ...) are due at wall-clock `now_ns`."""
        if now_ns < self.origin_ns:
            return 0
        return max(0, now_ns - self.origin_ns - self.open_ns) // self.batch_ns + 1

    def batch_due_ns(self, k: int) -> int:
        return self.origin_ns + (self.open_ns + k * self.batch_ns if k else 0)

    def batch_size(self, k: int) -> int:
        if k == 0:
            return self.market.instruments
        return self.schedule.due(k * self.batch_ns) - self.schedule.due((k - 1) * self.batch_ns)

    def next(self) -> list[tuple]:
        """The next batch's messages, stamped with its due time."""
        k = self.next_batch
        self.next_batch += 1
        ts = self.batch_due_ns(k)
        if k == 0:
            return list(self.market.directory(ts))
        n = self.batch_size(k)
        return self.market.next_messages(n, ts) if n else []

    def batch_of_sequence(self, sequence: int) -> int:
        """The batch whose messages include `sequence` (1 = the start-of-session event: batch 0)."""
        i = sequence - 2 - self.market.instruments  # 0-based index among market messages
        if i < 0:
            return 0
        due = self.schedule.due
        hi = 1
        while due(hi * self.batch_ns) <= i:
            hi *= 2
        lo = 1
        while lo < hi:  # smallest k with due(kT) > i
            mid = (lo + hi) // 2
            if due(mid * self.batch_ns) > i:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def origin_from(self, sequence: int, timestamp_ns: int) -> int:
        """The origin of a stream in which message `sequence` is stamped `timestamp_ns`."""
        k = self.batch_of_sequence(sequence)
        return timestamp_ns - (self.open_ns + k * self.batch_ns if k else 0)


class FileFeed:
    """A JSON-lines file as one batch (batch 0) at the origin; messages without a timestamp get the origin."""

    batch_ns = 1

    def __init__(self, path: str, origin_ns: int, table: CodecTable = CODECS) -> None:
        self.path = path
        self.table = table
        self.origin_ns = origin_ns
        self.next_batch = 0

    def due_batches(self, now_ns: int) -> int:
        return 1

    def batch_due_ns(self, k: int) -> int:
        return self.origin_ns if k == 0 else 2**62

    def next(self) -> list[tuple]:
        k = self.next_batch
        self.next_batch += 1
        if k:
            return []
        with open(self.path) as fh:
            return list(read_json_lines(fh, self.origin_ns, self.table))

    def batch_of_sequence(self, sequence: int) -> int:
        return 0

    def origin_from(self, sequence: int, timestamp_ns: int) -> int:
        return timestamp_ns  # exact only for messages whose timestamp the file left out


def message_from_json(obj: dict[str, Any], now_ns: int, table: CodecTable = CODECS) -> tuple:
    """A message tuple from `{"type": "quote", "instrument_id": 1, ...}`; missing timestamp = now."""
    try:
        codec = table.by_name[obj["type"]]
    except KeyError:
        raise ValueError(f"unknown or missing message type in {obj!r}") from None
    fields = {k: v for k, v in obj.items() if k != "type"}
    fields.setdefault("timestamp_ns", now_ns)
    if "fields" in fields and isinstance(fields["fields"], list):
        fields["fields"] = [dict(f) for f in fields["fields"]]
    missing = [n for n in codec.names if n not in fields and n != "msg_type"]
    if missing:
        raise ValueError(f"{obj['type']}: missing {', '.join(missing)}")
    msg = codec.from_dict(fields)
    codec.encode(msg)  # validates ranges and lengths now, not on the hot path
    return msg


def read_json_lines(stream: IO[str], now_ns: int, table: CodecTable = CODECS) -> Iterator[tuple]:
    """Messages from a JSON-lines stream; a bad line raises ValueError naming its number."""
    for lineno, line in enumerate(stream, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            yield message_from_json(json.loads(line), now_ns, table)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"line {lineno}: {exc}") from None
