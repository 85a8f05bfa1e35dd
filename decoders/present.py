"""Turning decoded messages into JSON-ready dicts, for the command-line tools and logs.

Prices stay raw integers (never floats); `price_exponent` travels beside them in the
instrument directory. Bytes become ASCII text when printable, hex otherwise.
"""

from __future__ import annotations

from typing import Any

from .fastcodec import CodecTable

__all__ = ["jsonable", "message_record"]


def jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return raw.decode("ascii") if raw.isascii() and raw.decode("ascii").isprintable() else raw.hex()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def message_record(table: CodecTable, msg: tuple, **context: Any) -> dict[str, Any]:
    """`context` (session, sequence, ...) first, then the message's type name and fields."""
    out: dict[str, Any] = {k: jsonable(v) for k, v in context.items()}
    out.update(jsonable(table.to_dict(msg)))
    return out
