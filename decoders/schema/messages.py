"""Market-data messages: the payload of each MoldUDP64 message block.

Every message starts with a one-byte ASCII type (`msg_type`, a `Const`), then a
nanosecond timestamp, then its fields in wire order, all big-endian. Prices are
fixed-point integers (`Price`), scaled by the instrument's `price_exponent` from its
instrument directory message. These declarations are the single source of truth:
the fast codecs, the schema fingerprint and the Wireshark dissector are derived from
them, so a layout change here changes all of them at once.
"""

from __future__ import annotations

from construct import Const, Enum, Int8sb, Int8ub, Int16ub, Int64sb, Int64ub, Struct

from .types import InstrumentId, Price, Symbol, Timestamp

__all__ = [
    "SystemEvent",
    "InstrumentDirectory",
    "Quote",
    "Trade",
    "FieldUpdate",
    "FieldValue",
    "ValueType",
    "EventCode",
    "Aggressor",
]

EventCode = Enum(Int8ub, start_of_session=ord("S"), end_of_session=ord("E"))
Aggressor = Enum(Int8ub, unknown=ord(" "), buy=ord("B"), sell=ord("S"))
ValueType = Enum(Int8ub, integer=1, price=2, timestamp_ns=3, boolean=4)

SystemEvent = Struct(
    "msg_type" / Const(b"S") * "system event",
    "timestamp_ns" / Timestamp * "time the event was published, ns since the epoch",
    "event_code" / EventCode * "S = start of session, E = end of session",
    "schema_fingerprint" / Int64ub * "fingerprint of the publisher's schema; must equal the receiver's",
) * "A session boundary, carrying the schema fingerprint the session is published with."

InstrumentDirectory = Struct(
    "msg_type" / Const(b"R") * "instrument directory",
    "timestamp_ns" / Timestamp * "time of publication, ns since the epoch",
    "instrument_id" / InstrumentId * "instrument id used by every other message",
    "symbol" / Symbol * "ticker symbol, ASCII",
    "price_exponent" / Int8sb * "prices of this instrument are raw × 10**price_exponent",
) * "Maps an instrument id to its symbol and declares the scale of its prices."

Quote = Struct(
    "msg_type" / Const(b"Q") * "quote",
    "timestamp_ns" / Timestamp * "time of the quote, ns since the epoch",
    "instrument_id" / InstrumentId * "instrument id",
    "bid_price" / Price * "best bid price (fixed-point)",
    "bid_size" / Int64ub * "quantity at the best bid",
    "ask_price" / Price * "best ask price (fixed-point)",
    "ask_size" / Int64ub * "quantity at the best ask",
) * "Top of book: best bid and ask with their sizes."

Trade = Struct(
    "msg_type" / Const(b"T") * "trade",
    "timestamp_ns" / Timestamp * "time of the trade, ns since the epoch",
    "instrument_id" / InstrumentId * "instrument id",
    "price" / Price * "trade price (fixed-point)",
    "size" / Int64ub * "traded quantity",
    "aggressor" / Aggressor * "side that crossed the spread: B, S or space if unknown",
    "trade_id" / Int64ub * "trade id, unique per instrument and day",
) * "A trade print."

FieldUpdate = Struct(
    "msg_type" / Const(b"F") * "field update",
    "timestamp_ns" / Timestamp * "time of the update, ns since the epoch",
    "instrument_id" / InstrumentId * "instrument id",
    "field_id" / Int16ub * "field id from the field dictionary",
    "value_type" / ValueType * "how to read value: 1 integer, 2 price, 3 timestamp_ns, 4 boolean",
    "value" / Int64sb * "new value of the cell; prices are fixed-point",
) * "One cell of the instrument's record changed (the spreadsheet model)."

FieldValue = Struct(
    "field_id" / Int16ub * "field id from the field dictionary",
    "value_type" / ValueType * "how to read value",
    "value" / Int64sb * "current value of the cell",
)
