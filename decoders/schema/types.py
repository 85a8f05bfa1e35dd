"""Field types with a meaning beyond their bytes.

`Price` and `Timestamp` parse and build exactly like construct's `Int64sb` and
`Int64ub`; they are subclasses only so that every backend derived from the schema
(the fast codecs, the Wireshark generator, the JSON printers) can tell a fixed-point
price or a nanosecond timestamp from a plain integer without a second table.

Prices are never floats: a price is a signed 64-bit integer `raw`, and its value is
`raw × 10**price_exponent`, with `price_exponent` declared per instrument in the
instrument directory (for example -4: raw 1234500 means 123.45).

>>> Price.parse(b"\\x00\\x00\\x00\\x00\\x00\\x12\\xd6\\x87")
1234567
>>> Timestamp.build(1)
b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01'
"""

from __future__ import annotations

from construct import FormatField, Int32ub, PaddedString

__all__ = ["Price", "PriceField", "Timestamp", "TimestampField", "InstrumentId", "Symbol", "SYMBOL_LENGTH"]


class PriceField(FormatField):
    """Signed 64-bit big-endian fixed-point price; scale by the instrument's `price_exponent`."""

    def __init__(self) -> None:
        super().__init__(">", "q")


class TimestampField(FormatField):
    """Unsigned 64-bit big-endian count of nanoseconds since the Unix epoch (UTC)."""

    def __init__(self) -> None:
        super().__init__(">", "Q")


Price = PriceField()
Timestamp = TimestampField()
InstrumentId = Int32ub
SYMBOL_LENGTH = 16
Symbol = PaddedString(SYMBOL_LENGTH, "ascii")
