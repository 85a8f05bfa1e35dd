"""The field dictionary: what each `field_id` of the record (spreadsheet) model means.

Quotes and trades update fixed fields of an instrument's record; `FieldUpdate`
messages set any field directly. The value type travels on the wire with every
update, so a receiver can show a field it does not know; the dictionary adds names.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FieldDef", "FIELDS", "FIELDS_BY_NAME", "VALUE_INTEGER", "VALUE_PRICE", "VALUE_TIMESTAMP", "VALUE_BOOLEAN"]

VALUE_INTEGER = 1
VALUE_PRICE = 2
VALUE_TIMESTAMP = 3
VALUE_BOOLEAN = 4


@dataclass(frozen=True)
class FieldDef:
    """One column of the record model."""

    field_id: int
    name: str
    value_type: int
    doc: str


_DEFS = (
    FieldDef(1, "bid_price", VALUE_PRICE, "best bid price"),
    FieldDef(2, "bid_size", VALUE_INTEGER, "quantity at the best bid"),
    FieldDef(3, "ask_price", VALUE_PRICE, "best ask price"),
    FieldDef(4, "ask_size", VALUE_INTEGER, "quantity at the best ask"),
    FieldDef(5, "last_price", VALUE_PRICE, "price of the last trade"),
    FieldDef(6, "last_size", VALUE_INTEGER, "quantity of the last trade"),
    FieldDef(7, "volume", VALUE_INTEGER, "quantity traded today"),
    FieldDef(8, "trade_count", VALUE_INTEGER, "trades today"),
    FieldDef(9, "open_price", VALUE_PRICE, "first trade price today"),
    FieldDef(10, "high_price", VALUE_PRICE, "highest trade price today"),
    FieldDef(11, "low_price", VALUE_PRICE, "lowest trade price today"),
    FieldDef(12, "close_price", VALUE_PRICE, "previous close"),
    FieldDef(13, "last_trade_time", VALUE_TIMESTAMP, "time of the last trade, ns since the epoch"),
    FieldDef(14, "quote_time", VALUE_TIMESTAMP, "time of the last quote, ns since the epoch"),
    FieldDef(15, "halted", VALUE_BOOLEAN, "1 while trading is halted"),
    FieldDef(16, "vwap", VALUE_PRICE, "volume-weighted average price today"),
    FieldDef(17, "open_interest", VALUE_INTEGER, "open interest"),
    FieldDef(18, "maybe_stale", VALUE_BOOLEAN, "1 while messages a relay lost upstream may have touched this instrument; "
                                               "0 once an image refreshed it (relay/channel_io.py)"),
)

FIELDS: dict[int, FieldDef] = {f.field_id: f for f in _DEFS}
FIELDS_BY_NAME: dict[str, FieldDef] = {f.name: f for f in _DEFS}
