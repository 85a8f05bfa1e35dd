"""The current image of every instrument: the record (spreadsheet) model all daemons share.

The plant keeps one to serve initial images, the retransmission server mirrors one,
and a line handler's replica is one; all three apply messages through `Image.apply`,
so "image at sequence N" means the same thing everywhere.

Rules:
1. A quote sets bid/ask price and size and the quote time; a trade sets last price and
   size, adds to volume and trade count, moves open/high/low and the last trade time;
   a field update sets one field; a directory entry sets symbol and price exponent.
2. Messages for an instrument not yet in the directory create its record (symbol "").
3. Record images (`I`) replace a whole record; `records()` produces them back, so an
   image survives encode → decode → load unchanged.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from decoders.native import wanted_backend
from decoders.schema.fields import FIELDS, FIELDS_BY_NAME, VALUE_INTEGER

__all__ = ["Record", "Image", "same_image", "write_image"]

_BID_PRICE = FIELDS_BY_NAME["bid_price"].field_id
_BID_SIZE = FIELDS_BY_NAME["bid_size"].field_id
_ASK_PRICE = FIELDS_BY_NAME["ask_price"].field_id
_ASK_SIZE = FIELDS_BY_NAME["ask_size"].field_id
_QUOTE_TIME = FIELDS_BY_NAME["quote_time"].field_id
_LAST_PRICE = FIELDS_BY_NAME["last_price"].field_id
_LAST_SIZE = FIELDS_BY_NAME["last_size"].field_id
_VOLUME = FIELDS_BY_NAME["volume"].field_id
_TRADE_COUNT = FIELDS_BY_NAME["trade_count"].field_id
_OPEN = FIELDS_BY_NAME["open_price"].field_id
_HIGH = FIELDS_BY_NAME["high_price"].field_id
_LOW = FIELDS_BY_NAME["low_price"].field_id
_LAST_TRADE_TIME = FIELDS_BY_NAME["last_trade_time"].field_id


def _load_native() -> ModuleType | None:
    """mdcommon/_replica.c (built by pip install): apply_many in C for quotes, trades and field updates of known
    instruments and for record images; None without the build or with MD_BACKEND=python (the wire backend's
    switch). Configured once `Record` exists, below."""
    if wanted_backend() == "python":
        return None
    try:
        from . import _replica  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _replica


_NATIVE = _load_native()


class Record:
    """One instrument: symbol, price exponent, and its fields by field id."""

    __slots__ = ("instrument_id", "symbol", "price_exponent", "values", "types")

    def __init__(self, instrument_id: int, symbol: str = "", price_exponent: int = 0) -> None:
        self.instrument_id = instrument_id
        self.symbol = symbol
        self.price_exponent = price_exponent
        self.values: dict[int, int] = {}
        self.types: dict[int, int] = {}  # value types that differ from the field dictionary

    def copy(self) -> Record:
        rec = Record(self.instrument_id, self.symbol, self.price_exponent)
        rec.values = dict(self.values)
        rec.types = dict(self.types)
        return rec

    def message(self, timestamp_ns: int) -> tuple:
        """This record as a record image message (in C where built: `_message`, below, is what it means)."""
        if _NATIVE is not None:
            return _NATIVE.record_message(self, timestamp_ns)
        return self._message(timestamp_ns)

    def _message(self, timestamp_ns: int) -> tuple:
        fields = tuple((fid, self.value_type(fid), val) for fid, val in sorted(self.values.items()))
        return (b"I", timestamp_ns, self.instrument_id, self.symbol, self.price_exponent, fields)

    def value_type(self, field_id: int) -> int:
        t = self.types.get(field_id)
        if t is not None:
            return t
        f = FIELDS.get(field_id)
        return f.value_type if f else VALUE_INTEGER

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Record)
            and self.instrument_id == other.instrument_id
            and self.symbol == other.symbol
            and self.price_exponent == other.price_exponent
            and self.values == other.values
            and {k: self.value_type(k) for k in self.values} == {k: other.value_type(k) for k in other.values}
        )

    def __repr__(self) -> str:
        return f"Record({self.instrument_id}, {self.symbol!r}, e{self.price_exponent}, {self.values})"


if _NATIVE is not None:
    _NATIVE.configure((_BID_PRICE, _BID_SIZE, _ASK_PRICE, _ASK_SIZE, _QUOTE_TIME, _LAST_PRICE, _LAST_SIZE, _VOLUME, _TRADE_COUNT,
                       _OPEN, _HIGH, _LOW, _LAST_TRADE_TIME), {fid: f.value_type for fid, f in FIELDS.items()}, Record, VALUE_INTEGER)


class Image:
    """instrument_id → Record, updated one decoded message (fast-codec tuple) at a time."""

    def __init__(self) -> None:
        self.records: dict[int, Record] = {}
        self._saved: dict[int, Record | None] | None = None  # copy-on-write originals while a snapshot is taken

    def freeze(self) -> tuple[list[int], dict[int, Record | None]]:
        """Start a consistent snapshot: (instrument ids now, originals of records changed from now on).

        Until `thaw`, the first change to a record saves its previous state (None if it did
        not exist), so `frozen_record` still sees the image as it was at `freeze`."""
        self._saved = {}
        return sorted(self.records), self._saved

    def thaw(self) -> None:
        self._saved = None

    def frozen_record(self, instrument_id: int) -> Record | None:
        saved = self._saved
        if saved is not None and instrument_id in saved:
            return saved[instrument_id]
        return self.records.get(instrument_id)

    def frozen_messages(self, ids: list[int], timestamp_ns: int, each: Callable[[tuple], Any] | None = None) -> list:
        """The record image messages of `ids` as the image was at `freeze` (ids not in it then are skipped): a
        snapshot's records, in C where built. With `each` (an encoder), each(message) instead, every message freed
        as soon as it is encoded (holding 200,000 costs full garbage collections of the heap)."""
        if _NATIVE is not None:
            return _NATIVE.frozen_messages(self.records, self._saved, ids, timestamp_ns, each)
        out = []
        for iid in ids:
            rec = self.frozen_record(iid)
            if rec is not None:
                m = rec.message(timestamp_ns)
                out.append(m if each is None else each(m))
        return out

    def _save(self, instrument_id: int) -> None:
        saved = self._saved
        if saved is not None and instrument_id not in saved:
            rec = self.records.get(instrument_id)
            saved[instrument_id] = rec.copy() if rec is not None else None

    def __len__(self) -> int:
        return len(self.records)

    def __eq__(self, other: object) -> bool:
        return same_image(self, other)

    __hash__ = None  # type: ignore[assignment]

    def value(self, instrument_id: int, field_id: int, default: Any = None) -> Any:
        """records[instrument_id].values.get(field_id, default): one field of the replica (CompactImage reads it
        from its slot without making a Record)."""
        rec = self.records.get(instrument_id)
        return default if rec is None else rec.values.get(field_id, default)

    def record(self, instrument_id: int) -> Record:
        if self._saved is not None:
            self._save(instrument_id)
        rec = self.records.get(instrument_id)
        if rec is None:
            rec = self.records[instrument_id] = Record(instrument_id)
        return rec

    def apply(self, msg: tuple) -> None:
        """Apply one market-data message; types that carry no instrument state are ignored. In C where built
        (quotes, trades, field updates of known instruments), a snapshot in progress copying on write there too."""
        if _NATIVE is not None:
            _NATIVE.apply_many(self.records, (msg,), self._apply, self._saved)
            return
        self._apply(msg)

    def _apply(self, msg: tuple) -> None:
        """What applying means (the C replica takes only what it does exactly as this does)."""
        t = msg[0]
        if t == b"Q":
            _, ts, iid, bid, bid_size, ask, ask_size = msg
            v = self.record(iid).values
            v[_BID_PRICE] = bid
            v[_BID_SIZE] = bid_size
            v[_ASK_PRICE] = ask
            v[_ASK_SIZE] = ask_size
            v[_QUOTE_TIME] = ts
        elif t == b"T":
            _, ts, iid, price, size, _aggressor, _trade_id = msg
            v = self.record(iid).values
            v[_LAST_PRICE] = price
            v[_LAST_SIZE] = size
            v[_VOLUME] = v.get(_VOLUME, 0) + size
            v[_TRADE_COUNT] = v.get(_TRADE_COUNT, 0) + 1
            if _OPEN not in v:
                v[_OPEN] = price
            if price > v.get(_HIGH, price - 1):
                v[_HIGH] = price
            if price < v.get(_LOW, price + 1):
                v[_LOW] = price
            v[_LAST_TRADE_TIME] = ts
        elif t == b"F":
            _, _ts, iid, field_id, value_type, value = msg
            rec = self.record(iid)
            rec.values[field_id] = value
            f = FIELDS.get(field_id)
            if f is None or f.value_type != value_type:
                rec.types[field_id] = value_type
            elif field_id in rec.types:
                del rec.types[field_id]
        elif t == b"R":
            _, _ts, iid, symbol, exponent = msg
            rec = self.record(iid)
            rec.symbol = symbol
            rec.price_exponent = exponent
        elif t == b"I":
            self.load_record(msg)

    def apply_many(self, msgs: list[tuple] | tuple) -> None:
        """`apply` each message in order (a datagram's worth); in C where built."""
        if _NATIVE is not None:
            _NATIVE.apply_many(self.records, msgs, self._apply, self._saved)
            return
        apply = self._apply
        for m in msgs:
            apply(m)

    def load_record(self, msg: tuple) -> None:
        """Replace one instrument from a record image message."""
        if _NATIVE is not None and self._saved is None and _NATIVE.load_record(self.records, msg, Record):
            return
        _, _ts, iid, symbol, exponent, fields = msg
        if self._saved is not None:
            self._save(iid)
        rec = Record(iid, symbol, exponent)
        for field_id, value_type, value in fields:
            rec.values[field_id] = value
            f = FIELDS.get(field_id)
            if f is None or f.value_type != value_type:
                rec.types[field_id] = value_type
        self.records[iid] = rec

    def record_messages(self, timestamp_ns: int) -> Iterator[tuple]:
        """One record image message per instrument, in instrument id order."""
        for iid in sorted(self.records):
            yield self.records[iid].message(timestamp_ns)


def same_image(a: object, b: object) -> bool:
    """Two images (an `Image` or a `CompactImage`, mdcommon/compact_image.py) hold the same records."""
    if not (hasattr(a, "frozen_messages") and hasattr(b, "frozen_messages")):
        return False
    ra, rb = a.records, b.records  # type: ignore[attr-defined]
    return len(ra) == len(rb) and all(rb.get(iid) == rec for iid, rec in ra.items())


def write_image(image: Image, path: str) -> None:
    """The image as CSV (instrument_id, symbol, price_exponent, field_id, value) or, for a `.json` path, JSON."""
    if path.endswith(".json"):
        data = {str(i): {"symbol": r.symbol, "price_exponent": r.price_exponent, "fields": {str(k): v for k, v in sorted(r.values.items())}}
                for i, r in sorted(image.records.items())}
        with open(path, "w") as fh:
            json.dump(data, fh)
        return
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["instrument_id", "symbol", "price_exponent", "field_id", "value"])
        for iid, r in sorted(image.records.items()):
            for fid, v in sorted(r.values.items()):
                w.writerow([iid, r.symbol, r.price_exponent, fid, v])
