"""The one walker of the construct tree: declarations in, a small frozen IR out.

Every backend (the fast `struct` codecs, the schema fingerprint, the Wireshark Lua
generator) reads this IR and never the construct objects themselves, so that the
rules for what a declaration means live in exactly one place.

Rules:
1. Anything the walker does not understand raises `UnsupportedConstruct` naming the
   dotted path of the offending field; nothing is skipped or guessed.
2. Expressions (`this.x`, comparisons, arithmetic on them) are read back into `Expr`
   trees; lambdas cannot be read back and are refused.
3. Docs (`"name" / X * "doc"`) are kept on every node; they never affect the wire and
   so never enter the fingerprint (see `signature`).
"""

from __future__ import annotations

import operator
import struct
from dataclasses import dataclass, field
from typing import Union

import construct as cs
from construct import expr as cexpr

from .schema.types import PriceField, TimestampField

__all__ = [
    "UnsupportedConstruct",
    "Expr",
    "Node",
    "Int",
    "ConstNode",
    "EnumNode",
    "FlagsNode",
    "BytesNode",
    "VarBytesNode",
    "GreedyBytesNode",
    "StringNode",
    "StructNode",
    "SwitchNode",
    "ArrayNode",
    "PrefixedArrayNode",
    "GreedyRangeNode",
    "PaddingNode",
    "ComputedNode",
    "IfNode",
    "BitField",
    "BitStructNode",
    "walk",
    "signature",
    "fixed_size",
]


class UnsupportedConstruct(TypeError):
    """A declaration the IR cannot represent; the message names its path."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"{path or '<root>'}: unsupported construct {what}")
        self.path = path


# ---------------------------------------------------------------- expressions

_OPS = {
    operator.eq: "==",
    operator.ne: "!=",
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
    operator.add: "+",
    operator.sub: "-",
    operator.mul: "*",
    operator.floordiv: "//",
    operator.truediv: "/",
    operator.mod: "%",
    operator.and_: "&",
    operator.or_: "|",
    operator.xor: "^",
    operator.lshift: "<<",
    operator.rshift: ">>",
}
_UNOPS = {operator.not_: "not", operator.neg: "-", operator.inv: "~"}


@dataclass(frozen=True)
class Expr:
    """`op` is "ref" (args = (name,)), "const" (args = (value,)), a binary or unary operator."""

    op: str
    args: tuple

    def __str__(self) -> str:
        if self.op == "ref":
            return f"this.{self.args[0]}"
        if self.op == "const":
            return repr(self.args[0])
        if len(self.args) == 1:
            return f"({self.op} {self.args[0]})"
        return f"({self.args[0]} {self.op} {self.args[1]})"


def _expr(obj: object, path: str) -> Expr:
    if isinstance(obj, (bool, int, bytes, str)):
        return Expr("const", (obj,))
    if isinstance(obj, cexpr.Path):
        names = []
        node = obj
        while isinstance(node, cexpr.Path) and node._Path__parent is not None:  # noqa: SLF001 - construct keeps no public accessor
            names.append(node._Path__field)  # noqa: SLF001
            node = node._Path__parent  # noqa: SLF001
        if not isinstance(node, cexpr.Path) or node._Path__name != "this":  # noqa: SLF001
            raise UnsupportedConstruct(path, f"expression rooted at {node!r}")
        return Expr("ref", (".".join(reversed(names)),))
    if isinstance(obj, cexpr.BinExpr):
        if obj.op not in _OPS:
            raise UnsupportedConstruct(path, f"operator {obj.op!r}")
        return Expr(_OPS[obj.op], (_expr(obj.lhs, path), _expr(obj.rhs, path)))
    if isinstance(obj, cexpr.UniExpr):
        if obj.op not in _UNOPS:
            raise UnsupportedConstruct(path, f"operator {obj.op!r}")
        return Expr(_UNOPS[obj.op], (_expr(obj.operand, path),))
    raise UnsupportedConstruct(path, f"expression {obj!r} (lambdas cannot be read back; use this.field)")


# ---------------------------------------------------------------- nodes


@dataclass(frozen=True)
class Node:
    name: str
    path: str
    doc: str


@dataclass(frozen=True)
class Int(Node):
    """An integer of `size` bytes; `fmt` is its struct format (with byte order) or None for odd sizes."""

    size: int
    signed: bool
    byteorder: str  # "big" or "little"
    fmt: str | None
    semantic: str = "integer"  # "integer", "price" (fixed-point) or "timestamp_ns"


@dataclass(frozen=True)
class ConstNode(Node):
    value: Union[bytes, int]
    base: Node


@dataclass(frozen=True)
class EnumNode(Node):
    base: Int
    mapping: tuple[tuple[str, int], ...]  # (name, value), sorted by value


@dataclass(frozen=True)
class FlagsNode(Node):
    base: Int
    flags: tuple[tuple[str, int], ...]  # (name, mask), sorted by mask


@dataclass(frozen=True)
class BytesNode(Node):
    length: int


@dataclass(frozen=True)
class VarBytesNode(Node):
    length: Expr


@dataclass(frozen=True)
class GreedyBytesNode(Node):
    pass


@dataclass(frozen=True)
class StringNode(Node):
    """`kind` is "padded" (fixed `length`, NUL padded) or "cstring" (NUL terminated, length None)."""

    kind: str
    length: int | None
    encoding: str


@dataclass(frozen=True)
class StructNode(Node):
    fields: tuple[Node, ...]


@dataclass(frozen=True)
class SwitchNode(Node):
    key: Expr
    cases: tuple[tuple[object, Node], ...]
    default: Node | None


@dataclass(frozen=True)
class ArrayNode(Node):
    count: Expr
    element: Node


@dataclass(frozen=True)
class PrefixedArrayNode(Node):
    count: Int
    element: Node


@dataclass(frozen=True)
class GreedyRangeNode(Node):
    element: Node


@dataclass(frozen=True)
class PaddingNode(Node):
    length: int


@dataclass(frozen=True)
class ComputedNode(Node):
    value: Expr


@dataclass(frozen=True)
class IfNode(Node):
    condition: Expr
    then: Node


@dataclass(frozen=True)
class BitField(Node):
    bits: int
    signed: bool
    offset_bits: int  # from the most significant bit of the BitStruct
    mapping: tuple[tuple[str, int], ...] = field(default=())  # enum names, if an Enum wraps it
    padding: bool = False


@dataclass(frozen=True)
class BitStructNode(Node):
    fields: tuple[BitField, ...]
    size: int  # bytes


# ---------------------------------------------------------------- the walker


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _int_from_format(con: cs.FormatField, name: str, path: str, doc: str) -> Int:
    order, code = con.fmtstr[0], con.fmtstr[1:]
    if order not in "<>" or code not in "bBhHiIlLqQ":
        raise UnsupportedConstruct(path, f"FormatField {con.fmtstr!r} (only fixed-order integers)")
    size = struct.calcsize(con.fmtstr)
    semantic = "integer"
    if isinstance(con, PriceField):
        semantic = "price"
    elif isinstance(con, TimestampField):
        semantic = "timestamp_ns"
    return Int(
        name, path, doc, size, code.islower(), "big" if order == ">" else "little", con.fmtstr, semantic
    )


def _int(con: object, name: str, path: str, doc: str) -> Int:
    if isinstance(con, cs.FormatField):
        return _int_from_format(con, name, path, doc)
    if isinstance(con, cs.BytesInteger):
        if not isinstance(con.length, int):
            raise UnsupportedConstruct(path, "BytesInteger with a computed length")
        codes = {1: "b", 2: "h", 4: "i", 8: "q"}
        order = "little" if con.swapped else "big"
        fmt = None
        if con.length in codes and not callable(con.swapped):
            code = codes[con.length]
            fmt = ("<" if con.swapped else ">") + (code if con.signed else code.upper())
        return Int(name, path, doc, con.length, bool(con.signed), order, fmt)
    if isinstance(con, cs.Rebuild):
        return _int(con.subcon, name, path, doc)
    raise UnsupportedConstruct(path, f"{type(con).__name__} where an integer was expected")


def _is_prefixed_array(con: object) -> bool:
    return (
        isinstance(con, cs.FocusedSeq)
        and con.parsebuildfrom == "items"
        and len(con.subcons) == 2
        and con.subcons[0].name == "count"
        and isinstance(con.subcons[1].subcon, cs.Array)
    )


def _bit_fields(con: cs.Struct, path: str) -> tuple[list[BitField], int]:
    out: list[BitField] = []
    offset = 0
    for sub in con.subcons:
        name = sub.name or ""
        doc = sub.docs if isinstance(sub, cs.Renamed) else ""
        inner = sub.subcon if isinstance(sub, cs.Renamed) else sub
        p = _join(path, name)
        mapping: tuple[tuple[str, int], ...] = ()
        if isinstance(inner, cs.Enum):
            mapping = tuple(sorted(((str(k), int(v)) for k, v in inner.encmapping.items()), key=lambda kv: kv[1]))
            inner = inner.subcon
        if isinstance(inner, cs.BitsInteger) and isinstance(inner.length, int):
            if inner.swapped:
                raise UnsupportedConstruct(p, "swapped BitsInteger")
            out.append(BitField(name, p, doc, inner.length, bool(inner.signed), offset, mapping))
            offset += inner.length
        elif inner is cs.Flag or (isinstance(inner, cs.Padded) and inner.subcon is cs.Pass):
            if inner is cs.Flag:
                out.append(BitField(name, p, doc, 1, False, offset))
                offset += 1
            else:
                out.append(BitField(name, p, doc, inner.length, False, offset, padding=True))
                offset += inner.length
        else:
            raise UnsupportedConstruct(p, f"{type(inner).__name__} inside a BitStruct")
    if offset % 8:
        raise UnsupportedConstruct(path, f"BitStruct of {offset} bits (not whole bytes)")
    return out, offset // 8


def walk(con: object, name: str = "", path: str = "", doc: str = "") -> Node:
    """Turn a construct declaration into IR; `path` prefixes every node's dotted path."""
    if isinstance(con, cs.Renamed):
        # `"x" / X * "doc"` nests two Renamed; collapse the chain into one name and doc.
        new_name, new_doc = None, ""
        while isinstance(con, cs.Renamed):
            new_name = new_name or con.name
            new_doc = new_doc or con.docs
            con = con.subcon
        return walk(con, new_name or name, _join(path, new_name) if new_name else path, new_doc or doc)
    if isinstance(con, cs.Struct):
        children = []
        for sub in con.subcons:
            if sub.name is None and not isinstance(sub, cs.Padded):
                raise UnsupportedConstruct(path, f"unnamed field {sub!r}")
            children.append(walk(sub, "", path))
        return StructNode(name, path, doc or con.docs, tuple(children))
    if isinstance(con, (cs.FormatField, cs.BytesInteger)):
        return _int(con, name, path, doc)
    if isinstance(con, cs.Const):
        base = walk(con.subcon, name, path, doc)
        return ConstNode(name, path, doc, con.value, base)
    if isinstance(con, cs.FlagsEnum):
        base = _int(con.subcon, name, path, doc)
        flags = tuple(sorted(((str(k), int(v)) for k, v in con.flags.items()), key=lambda kv: kv[1]))
        return FlagsNode(name, path, doc, base, flags)
    if isinstance(con, cs.Enum):
        base = _int(con.subcon, name, path, doc)
        mapping = tuple(sorted(((str(k), int(v)) for k, v in con.encmapping.items()), key=lambda kv: kv[1]))
        return EnumNode(name, path, doc, base, mapping)
    if isinstance(con, cs.Bytes):
        if isinstance(con.length, int):
            return BytesNode(name, path, doc, con.length)
        return VarBytesNode(name, path, doc, _expr(con.length, path))
    if con is cs.GreedyBytes:
        return GreedyBytesNode(name, path, doc)
    if isinstance(con, cs.StringEncoded):
        inner = con.subcon
        if (
            isinstance(inner, cs.FixedSized)
            and isinstance(inner.length, int)
            and isinstance(inner.subcon, cs.NullStripped)
            and inner.subcon.subcon is cs.GreedyBytes
        ):
            return StringNode(name, path, doc, "padded", inner.length, con.encoding)
        if isinstance(inner, cs.NullTerminated) and inner.subcon is cs.GreedyBytes:
            return StringNode(name, path, doc, "cstring", None, con.encoding)
        raise UnsupportedConstruct(path, f"string of {inner!r}")
    if _is_prefixed_array(con):
        count = _int(con.subcons[0].subcon, "count", _join(path, "count"), "")
        element = walk(con.subcons[1].subcon.subcon, name, path)
        return PrefixedArrayNode(name, path, doc, count, element)
    if isinstance(con, cs.Array):
        return ArrayNode(name, path, doc, _expr(con.count, path), walk(con.subcon, name, path))
    if isinstance(con, cs.GreedyRange):
        return GreedyRangeNode(name, path, doc, walk(con.subcon, name, path))
    if isinstance(con, cs.Padded) and con.subcon is cs.Pass:
        if not isinstance(con.length, int):
            raise UnsupportedConstruct(path, "Padding with a computed length")
        return PaddingNode(name, path, doc, con.length)
    if isinstance(con, cs.Computed):
        return ComputedNode(name, path, doc, _expr(con.func, path))
    if isinstance(con, cs.IfThenElse):
        if con.elsesubcon is not cs.Pass:
            raise UnsupportedConstruct(path, "IfThenElse with an else branch")
        return IfNode(name, path, doc, _expr(con.condfunc, path), walk(con.thensubcon, name, path))
    if isinstance(con, cs.Switch):
        cases = tuple((key, walk(sub, name, path)) for key, sub in con.cases.items())
        default = None if con.default is cs.Pass else walk(con.default, name, path)
        return SwitchNode(name, path, doc, _expr(con.keyfunc, path), cases, default)
    if isinstance(con, cs.Transformed) and isinstance(con.subcon, cs.Struct) and con.decodefunc is cs.bytes2bits:
        fields, size = _bit_fields(con.subcon, path)
        return BitStructNode(name, path, doc, tuple(fields), size)
    raise UnsupportedConstruct(path, type(con).__name__)


def fixed_size(node: Node) -> int | None:
    """Bytes the node always takes, or None when its size depends on the data."""
    if isinstance(node, Int):
        return node.size
    if isinstance(node, ConstNode):
        return fixed_size(node.base)
    if isinstance(node, (EnumNode, FlagsNode)):
        return node.base.size
    if isinstance(node, (BytesNode, PaddingNode)):
        return node.length
    if isinstance(node, StringNode):
        return node.length if node.kind == "padded" else None
    if isinstance(node, BitStructNode):
        return node.size
    if isinstance(node, ComputedNode):
        return 0
    if isinstance(node, StructNode):
        total = 0
        for child in node.fields:
            size = fixed_size(child)
            if size is None:
                return None
            total += size
        return total
    if isinstance(node, ArrayNode) and node.count.op == "const":
        size = fixed_size(node.element)
        return None if size is None else size * node.count.args[0]
    return None


def signature(node: Node) -> str:
    """A canonical text of everything about `node` that affects the wire (not docs)."""
    if isinstance(node, Int):
        return f"{node.name}:int{node.size * 8}{'s' if node.signed else 'u'}{node.byteorder[0]}/{node.semantic}"
    if isinstance(node, ConstNode):
        return f"{node.name}:const({node.value!r},{signature(node.base)})"
    if isinstance(node, EnumNode):
        return f"{node.name}:enum({signature(node.base)},{node.mapping})"
    if isinstance(node, FlagsNode):
        return f"{node.name}:flags({signature(node.base)},{node.flags})"
    if isinstance(node, BytesNode):
        return f"{node.name}:bytes{node.length}"
    if isinstance(node, VarBytesNode):
        return f"{node.name}:bytes[{node.length}]"
    if isinstance(node, GreedyBytesNode):
        return f"{node.name}:greedybytes"
    if isinstance(node, StringNode):
        return f"{node.name}:string({node.kind},{node.length},{node.encoding})"
    if isinstance(node, StructNode):
        return f"{node.name}:struct{{{';'.join(signature(f) for f in node.fields)}}}"
    if isinstance(node, SwitchNode):
        cases = ";".join(f"{k!r}=>{signature(v)}" for k, v in node.cases)
        default = signature(node.default) if node.default else "pass"
        return f"{node.name}:switch({node.key}){{{cases};default=>{default}}}"
    if isinstance(node, ArrayNode):
        return f"{node.name}:array[{node.count}]({signature(node.element)})"
    if isinstance(node, PrefixedArrayNode):
        return f"{node.name}:prefixedarray({signature(node.count)},{signature(node.element)})"
    if isinstance(node, GreedyRangeNode):
        return f"{node.name}:greedyrange({signature(node.element)})"
    if isinstance(node, PaddingNode):
        return f"padding{node.length}"
    if isinstance(node, ComputedNode):
        return f"{node.name}:computed({node.value})"
    if isinstance(node, IfNode):
        return f"{node.name}:if({node.condition},{signature(node.then)})"
    if isinstance(node, BitStructNode):
        bits = ";".join(f"{b.name}:{b.bits}{'s' if b.signed else 'u'}{b.mapping}{'p' if b.padding else ''}" for b in node.fields)
        return f"{node.name}:bitstruct{{{bits}}}"
    raise UnsupportedConstruct(node.path, type(node).__name__)
