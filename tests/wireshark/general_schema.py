"""A schema that uses every construct the Lua generator supports (for tests/wireshark/test_lua_general.py)."""

from __future__ import annotations

from construct import (
    Array,
    BitsInteger,
    BitStruct,
    BytesInteger,
    Computed,
    Const,
    CString,
    Enum,
    Flag,
    FlagsEnum,
    GreedyRange,
    If,
    Int8ub,
    Int16ub,
    Int32sl,
    Int64ub,
    PaddedString,
    Padding,
    Struct,
    Switch,
    this,
)

Kind = Enum(Int8ub, small=1, large=2)

Everything = Struct(
    "msg_type" / Const(b"X") * "the type byte",
    "stamp" / BytesInteger(6) * "a 6-byte big-endian integer (ITCH style)",
    "little" / Int32sl * "a little-endian signed integer",
    "flags" / FlagsEnum(Int64ub, low=1, mid=1 << 20, high=1 << 40) * "flags, one beyond 32 bits",
    "bits" / BitStruct("wide" / BitsInteger(40), "narrow" / BitsInteger(7), "on" / Flag, Padding(16)) * "bit fields, one 40 bits wide",
    "name" / CString("ascii") * "a NUL-terminated name",
    "label" / PaddedString(8, "ascii") * "a padded label",
    "kind" / Kind * "which body follows",
    "body" / Switch(this.kind, {"small": Struct("a" / Int8ub), "large": Struct("a" / Int16ub, "b" / Int16ub)}) * "chosen by kind",
    "n" / Int8ub * "number of points",
    "points" / Array(this.n, Struct("x" / Int16ub, "y" / Int16ub)) * "n points",
    Padding(2),
    "double_n" / Computed(this.n * 2) * "n times two",
    "extra" / If(this.n > 1, Int16ub) * "present when there is more than one point",
    "tail" / GreedyRange(Int8ub) * "whatever bytes remain",
)

Plain = Struct("msg_type" / Const(b"Y"), "v" / Int8ub * "a byte")

MESSAGES = {"everything": Everything, "plain": Plain}
