"""Where the plant's messages come from: a seeded synthetic market, or a JSON-lines file.

Determinism: `SyntheticMarket(seed=s)` produces the same message contents in the same
order for the same seed and the same sequence of `next_messages(n, now_ns)` calls;
only the timestamps (`now_ns`) come from outside. The hot-standby plant relies on this.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import IO, Any

from decoders import CODECS, CodecTable
from decoders.schema.fields import FIELDS_BY_NAME, VALUE_INTEGER, VALUE_PRICE

__all__ = ["SyntheticMarket", "RateSchedule", "read_json_lines", "message_from_json"]

_AGGRESSORS = (ord("B"), ord("S"))
_VWAP = FIELDS_BY_NAME["vwap"].field_id
_OPEN_INTEREST = FIELDS_BY_NAME["open_interest"].field_id
_HALTED = FIELDS_BY_NAME["halted"].field_id


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
        self.rng = random.Random(seed)
        rnd = self.rng.random
        self.mid = [int(10_0000 + rnd() * 490_0000) for _ in range(instruments)]  # 10.0000 .. 500.0000
        self.trade_id = [0] * instruments

    def directory(self, now_ns: int) -> Iterator[tuple]:
        """One instrument directory message per instrument, ids 1..N."""
        for i in range(self.instruments):
            yield (b"R", now_ns, i + 1, f"SYM{i + 1:06d}", self.price_exponent)

    def next_messages(self, n: int, now_ns: int) -> list[tuple]:
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
