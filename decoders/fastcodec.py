"""Hot-path codecs derived at import time from the construct declarations, via `ir`.

A message is a plain tuple in declaration order (padding left out): for a quote,
`(b"Q", timestamp_ns, instrument_id, bid_price, bid_size, ask_price, ask_size)`.
Enums stay raw integers and prices raw fixed-point integers; `to_dict` turns a tuple
into the same shape construct's `parse` gives, for printing and tests. Tuples, not
namedtuples or dicts, because allocation per message is the main cost (docs/architecture.md, "The hot path");
use `codec.index["field"]` (resolved once, at import) to read a field.

What the fast path supports: integers (odd sizes such as ITCH's 6-byte times too, read as bytes and
converted), `Const`, `Enum`, fixed `Bytes`, `PaddedString`,
`Padding` and nested fixed `Struct`s, optionally followed by one trailing
`PrefixedArray` of a fixed-size element or one trailing `GreedyBytes`. Anything else
raises `UnsupportedConstruct` naming its path when the codec is built, so a new
declaration cannot silently fall off the fast path.

Invariants:
1. `decode` returns a complete tuple or raises `DecodeError`; it never returns a
   partially decoded message and never raises anything else.
2. `encode(decode(b)) == b` and both agree with construct (tests/unit/test_agreement).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import ir
from .errors import DecodeError, DecodeErrorKind, EncodeError

__all__ = ["MessageCodec", "CodecTable", "build_codec", "build_table", "VARIABLE", "UNKNOWN"]

Message = tuple
VARIABLE = -1  # CodecTable.sizes: decode through decoders[t]
UNKNOWN = -2  # CodecTable.sizes: no such message type


@dataclass(frozen=True)
class _Leaf:
    """One tuple slot: its dotted name, struct code and how to post-process it."""

    name: str
    code: str  # struct code without byte order, e.g. "Q", "16s"
    node: ir.Node


def _flatten(node: ir.Node, prefix: str, leaves: list[_Leaf], fmt: list[str], order: list[str]) -> None:
    """Append struct codes for a fixed-size node; reject anything that is not fixed."""

    def byteorder(code_order: str) -> None:
        if order and order[0] != code_order:
            raise ir.UnsupportedConstruct(node.path, "mixed byte orders in one message")
        if not order:
            order.append(code_order)

    name = f"{prefix}.{node.name}" if prefix else node.name
    if isinstance(node, ir.StructNode):
        for child in node.fields:
            _flatten(child, name if prefix or node.name != "" else "", leaves, fmt, order)
        return
    if isinstance(node, ir.ConstNode):
        base = node.base
        if isinstance(base, ir.BytesNode):
            code = "c" if base.length == 1 else f"{base.length}s"
        elif isinstance(base, ir.Int) and base.fmt:
            if base.size > 1:
                byteorder(base.fmt[0])
            code = base.fmt[1:]
        else:
            raise ir.UnsupportedConstruct(node.path, f"Const of {type(base).__name__}")
        fmt.append(code)
        leaves.append(_Leaf(name, code, node))
        return
    if isinstance(node, (ir.EnumNode, ir.Int)):
        base = node.base if isinstance(node, ir.EnumNode) else node
        if base.fmt is None:  # an odd size (ITCH's 6-byte timestamps): raw bytes, converted after unpacking
            if isinstance(node, ir.EnumNode):
                raise ir.UnsupportedConstruct(node.path, f"Enum of a {base.size}-byte integer")
            code = f"{base.size}s"
            fmt.append(code)
            leaves.append(_Leaf(name, code, node))
            return
        if base.size > 1:
            byteorder(base.fmt[0])
        fmt.append(base.fmt[1:])
        leaves.append(_Leaf(name, base.fmt[1:], node))
        return
    if isinstance(node, ir.BytesNode):
        code = f"{node.length}s"
        fmt.append(code)
        leaves.append(_Leaf(name, code, node))
        return
    if isinstance(node, ir.StringNode) and node.kind == "padded":
        code = f"{node.length}s"
        fmt.append(code)
        leaves.append(_Leaf(name, code, node))
        return
    if isinstance(node, ir.PaddingNode):
        fmt.append(f"{node.length}x")
        return
    raise ir.UnsupportedConstruct(node.path, f"{type(node).__name__} on the fast path")


class MessageCodec:
    """Encoder and decoder of one message type, built from its IR.

    `names` are the tuple slots, `index[name]` a slot's position, `type_byte` the value
    of the dispatching one-byte `Const` (the first one in the message), `size` the
    fixed length in bytes or None when a trailing array/bytes makes it variable.
    """

    def __init__(self, name: str, node: ir.StructNode) -> None:
        self.name = name
        self.node = node
        fields = list(node.fields)
        tail: ir.Node | None = None
        if fields and isinstance(fields[-1], (ir.PrefixedArrayNode, ir.GreedyBytesNode)):
            tail = fields.pop()
        leaves: list[_Leaf] = []
        fmt: list[str] = []
        order: list[str] = []
        for child in fields:
            _flatten(child, "", leaves, fmt, order)
        self._order = order[0] if order else ">"
        self.prefix = struct.Struct(self._order + "".join(fmt))
        self.leaves = tuple(leaves)
        self.tail = tail
        self.names: tuple[str, ...] = tuple(leaf.name for leaf in leaves) + ((tail.name,) if tail else ())
        self.index = {n: i for i, n in enumerate(self.names)}
        self.type_byte: bytes | None = None
        self.type_offset = 0
        offset = 0
        for leaf in leaves:
            if isinstance(leaf.node, ir.ConstNode) and leaf.code == "c":
                self.type_byte = leaf.node.value
                self.type_offset = offset
                break
            offset += struct.calcsize(self._order + leaf.code)
        self._element: struct.Struct | None = None
        self._element_leaves: tuple[_Leaf, ...] = ()
        self._count: struct.Struct | None = None
        if isinstance(tail, ir.PrefixedArrayNode):
            if tail.count.fmt is None:
                raise ir.UnsupportedConstruct(tail.path, "odd-sized array count")
            el_leaves: list[_Leaf] = []
            el_fmt: list[str] = []
            el_order: list[str] = list(order)
            element = tail.element
            if isinstance(element, ir.StructNode):
                for child in element.fields:
                    _flatten(child, "", el_leaves, el_fmt, el_order)
            else:
                _flatten(element, "", el_leaves, el_fmt, el_order)
            self._element = struct.Struct((el_order[0] if el_order else ">") + "".join(el_fmt))
            self._element_leaves = tuple(el_leaves)
            self._count = struct.Struct(tail.count.fmt)
        elif tail is not None and not isinstance(tail, ir.GreedyBytesNode):
            raise ir.UnsupportedConstruct(tail.path, type(tail).__name__)
        self.size: int | None = self.prefix.size if tail is None else None
        self._checks = self._post_checks(self.leaves)
        self._el_checks = self._post_checks(self._element_leaves)
        self._needs = bool(self._checks) or any(
            not isinstance(leaf.node, (ir.Int, ir.EnumNode)) and not self._is_type_leaf(leaf)
            for leaf in self.leaves + self._element_leaves
        )
        self.decode: Callable[[Any, int, int], Message] = self._make_decoder()

    # -- decoding ---------------------------------------------------------

    def _post_checks(self, leaves: Iterable[_Leaf]) -> tuple[tuple[int, str, Any], ...]:
        """(slot, action, arg) for slots that need more than struct: consts and strings."""
        checks = []
        for i, leaf in enumerate(leaves):
            node = leaf.node
            if isinstance(node, ir.ConstNode) and not self._is_type_leaf(leaf):
                checks.append((i, "const", node.value))
            elif isinstance(node, ir.StringNode):
                checks.append((i, "string", node.encoding))
            elif isinstance(node, ir.Int) and node.fmt is None:
                checks.append((i, "int", (node.byteorder, node.signed)))
        return tuple(checks)

    @staticmethod
    def _apply(values: tuple, checks: tuple, offset: int) -> tuple:
        if not checks:
            return values
        out = list(values)
        for i, action, arg in checks:
            if action == "const":
                if out[i] != arg:
                    raise DecodeError(DecodeErrorKind.BAD_CONST, offset, f"expected {arg!r}, got {out[i]!r}")
            elif action == "int":
                out[i] = int.from_bytes(out[i], arg[0], signed=arg[1])
            else:
                try:
                    out[i] = out[i].rstrip(b"\x00").decode(arg)
                except UnicodeDecodeError as exc:
                    raise DecodeError(DecodeErrorKind.BAD_STRING, offset, str(exc)) from None
        return tuple(out)

    def _make_decoder(self) -> Callable[[Any, int, int], Message]:
        prefix = self.prefix
        size = prefix.size
        checks = self._checks
        apply = self._apply
        name = self.name
        if self.tail is None:
            unpack = prefix.unpack_from

            def decode_fixed(buf: Any, off: int, length: int) -> Message:
                if length != size:
                    raise DecodeError(DecodeErrorKind.LENGTH_MISMATCH, off, f"{name} is {size} bytes, block is {length}")
                return apply(unpack(buf, off), checks, off)

            return decode_fixed
        if isinstance(self.tail, ir.GreedyBytesNode):

            def decode_greedy(buf: Any, off: int, length: int) -> Message:
                if length < size:
                    raise DecodeError(DecodeErrorKind.TRUNCATED, off, f"{name} needs at least {size} bytes")
                values = apply(prefix.unpack_from(buf, off), checks, off)
                return values + (bytes(buf[off + size : off + length]),)

            return decode_greedy
        count_st = self._count
        element = self._element
        assert count_st is not None and element is not None
        el_checks = self._el_checks
        head = size + count_st.size

        def decode_array(buf: Any, off: int, length: int) -> Message:
            if length < head:
                raise DecodeError(DecodeErrorKind.TRUNCATED, off, f"{name} needs at least {head} bytes")
            values = apply(prefix.unpack_from(buf, off), checks, off)
            (count,) = count_st.unpack_from(buf, off + size)
            if length != head + count * element.size:
                raise DecodeError(
                    DecodeErrorKind.LENGTH_MISMATCH,
                    off,
                    f"{name} with {count} items is {head + count * element.size} bytes, block is {length}",
                )
            start = off + head
            items = tuple(
                apply(element.unpack_from(buf, start + k * element.size), el_checks, start)
                for k in range(count)
            )
            return values + (items,)

        return decode_array

    # -- encoding ---------------------------------------------------------

    def _check_encode(self, msg: Message, leaves: tuple[_Leaf, ...]) -> list:
        values = list(msg)
        if len(values) != len(leaves):
            raise EncodeError(f"{self.name}: {len(leaves)} fields expected, got {len(values)}: {msg!r}")
        for i, leaf in enumerate(leaves):
            node = leaf.node
            v = values[i]
            if isinstance(node, ir.Int) and node.fmt is None:
                try:
                    values[i] = v.to_bytes(node.size, node.byteorder, signed=node.signed)  # type: ignore[union-attr]
                except (AttributeError, OverflowError, TypeError) as exc:
                    raise EncodeError(f"{self.name}.{leaf.name}: {exc}") from None
            elif isinstance(node, ir.StringNode):
                try:
                    raw = v.encode(node.encoding)
                except (AttributeError, UnicodeEncodeError) as exc:
                    raise EncodeError(f"{self.name}.{leaf.name}: {exc}") from None
                if len(raw) > (node.length or 0):
                    raise EncodeError(f"{self.name}.{leaf.name}: {len(raw)} bytes do not fit in {node.length}")
                values[i] = raw
            elif isinstance(node, (ir.BytesNode,)) or (isinstance(node, ir.ConstNode) and leaf.code.endswith(("s", "c"))):
                want = node.length if isinstance(node, ir.BytesNode) else len(node.value)
                if not isinstance(v, (bytes, bytearray)) or len(v) != want:
                    raise EncodeError(f"{self.name}.{leaf.name}: need {want} bytes, got {v!r}")
            if isinstance(node, ir.ConstNode) and v != node.value:
                raise EncodeError(f"{self.name}.{leaf.name}: constant {node.value!r}, got {v!r}")
        return values

    def _is_type_leaf(self, leaf: _Leaf) -> bool:
        """The dispatching type byte: right by construction, and struct's "c" checks its length."""
        return isinstance(leaf.node, ir.ConstNode) and leaf.code == "c" and leaf.node.value == self.type_byte

    def pack_into(self, buf: bytearray | memoryview, off: int, msg: Message) -> int:
        """Write `msg` at `off`; return the bytes written. Raises EncodeError if a value does not fit."""
        n_fixed = len(self.leaves)
        try:
            if self.tail is None and not self._needs:
                self.prefix.pack_into(buf, off, *msg)
                return self.prefix.size
            values = self._check_encode(msg[:n_fixed], self.leaves)
            self.prefix.pack_into(buf, off, *values)
            written = self.prefix.size
            if self.tail is None:
                return written
            tail = msg[n_fixed]
            if isinstance(self.tail, ir.GreedyBytesNode):
                buf[off + written : off + written + len(tail)] = tail
                return written + len(tail)
            assert self._count is not None and self._element is not None
            self._count.pack_into(buf, off + written, len(tail))
            written += self._count.size
            for item in tail:
                self._element.pack_into(buf, off + written, *self._check_encode(item, self._element_leaves))
                written += self._element.size
            return written
        except struct.error as exc:
            raise EncodeError(f"{self.name}: {exc}") from None

    def encoded_size(self, msg: Message) -> int:
        if self.tail is None:
            return self.prefix.size
        tail = msg[len(self.leaves)]
        if isinstance(self.tail, ir.GreedyBytesNode):
            return self.prefix.size + len(tail)
        assert self._count is not None and self._element is not None
        return self.prefix.size + self._count.size + len(tail) * self._element.size

    def encode(self, msg: Message) -> bytes:
        buf = bytearray(self.encoded_size(msg))
        self.pack_into(buf, 0, msg)
        return bytes(buf)

    # -- presentation -----------------------------------------------------

    def to_dict(self, msg: Message) -> dict[str, Any]:
        """The message as construct's `parse` shapes it: nested dicts, enum names, decoded strings."""
        out: dict[str, Any] = {}
        for leaf, value in zip(self.leaves, msg):
            _put(out, leaf.name, _present(leaf.node, value))
        if self.tail is not None:
            tail = msg[len(self.leaves)]
            if isinstance(self.tail, ir.GreedyBytesNode):
                out[self.tail.name] = tail
            else:
                items = []
                for item in tail:
                    d: dict[str, Any] = {}
                    for leaf, value in zip(self._element_leaves, item):
                        _put(d, leaf.name, _present(leaf.node, value))
                    items.append(d)
                out[self.tail.name] = items
        return out

    def slots(self, *names: str) -> tuple[int, ...]:
        """The tuple positions of fields `names`, so readers name a field instead of counting to it."""
        return tuple(self.index[n] for n in names)

    def from_dict(self, d: dict[str, Any]) -> Message:
        """Inverse of `to_dict` (enum names or ints accepted; missing consts filled in)."""
        values: list[Any] = [_absorb(leaf.node, _get(d, leaf.name)) for leaf in self.leaves]
        if self.tail is not None:
            tail = d[self.tail.name]
            if isinstance(self.tail, ir.PrefixedArrayNode):
                tail = tuple(tuple(_absorb(leaf.node, _get(item, leaf.name)) for leaf in self._element_leaves) for item in tail)
            values.append(tail)
        return tuple(values)


def _put(d: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[last] = value


def _get(d: dict[str, Any], dotted: str) -> Any:
    cur: Any = d
    for p in dotted.split("."):
        if p not in cur:
            return None
        cur = cur[p]
    return cur


def _present(node: ir.Node, value: Any) -> Any:
    if isinstance(node, ir.EnumNode):
        for name, v in node.mapping:
            if v == value:
                return name
        return value
    return value


def _absorb(node: ir.Node, value: Any) -> Any:
    if isinstance(node, ir.ConstNode):
        return node.value if value is None else value
    if isinstance(node, ir.EnumNode) and isinstance(value, str):
        for name, v in node.mapping:
            if name == value:
                return v
        raise EncodeError(f"{node.path}: {value!r} is not one of {[n for n, _ in node.mapping]}")
    return value


def build_codec(name: str, con: Any) -> MessageCodec:
    """Walk one construct `Struct` and derive its codec; raises UnsupportedConstruct by path."""
    node = ir.walk(con, name, name)
    if not isinstance(node, ir.StructNode):
        raise ir.UnsupportedConstruct(name, f"top level {type(node).__name__} (a Struct is needed)")
    return MessageCodec(name, node)


class CodecTable:
    """Every message codec of a schema, with the 256-entry dispatch tables the decoders index."""

    native: Any = None  # the generated C backend of this table's schema, when loaded (decoders/native.py)

    def __init__(self, messages: dict[str, Any]) -> None:
        self.by_name: dict[str, MessageCodec] = {}
        self.by_type: dict[bytes, MessageCodec] = {}
        self.decoders: list[Callable[[Any, int, int], Message] | None] = [None] * 256
        # Hot-path tables: for a fixed-size message that needs no post-processing,
        # `sizes[t]` is its size and `unpackers[t]` the raw `unpack_from`; else sizes[t]
        # is VARIABLE (use `decoders[t]`, which checks the length itself) or UNKNOWN,
        # a value no block length can equal.
        self.sizes: list[int] = [UNKNOWN] * 256
        self.unpackers: list[Callable[[Any, int], Message] | None] = [None] * 256
        # `block_packers[type_byte] = (size, pack_into)` writes length prefix + message
        # in one call, for the same fixed, unchecked messages.
        self.block_packers: dict[bytes, tuple[int, Callable[..., None]]] = {}
        for name, con in messages.items():
            codec = build_codec(name, con)
            if codec.type_byte is None or codec.type_offset != 0:
                raise ir.UnsupportedConstruct(name, "message without a leading one-byte type Const")
            if codec.type_byte in self.by_type:
                raise ir.UnsupportedConstruct(name, f"type {codec.type_byte!r} already used by {self.by_type[codec.type_byte].name}")
            self.by_name[name] = codec
            self.by_type[codec.type_byte] = codec
            self.decoders[codec.type_byte[0]] = codec.decode
            t = codec.type_byte[0]
            if codec.size is not None and not codec._needs:
                self.sizes[t] = codec.size
                self.unpackers[t] = codec.prefix.unpack_from
                if codec.prefix.format[0] == ">":  # the block length is big-endian: fold only then
                    block = struct.Struct(">H" + codec.prefix.format[1:])
                    self.block_packers[codec.type_byte] = (codec.size, block.pack_into)
            else:
                self.sizes[t] = VARIABLE

    def codec_for(self, msg: Message) -> MessageCodec:
        try:
            return self.by_type[msg[0]]
        except (KeyError, IndexError, TypeError):
            raise EncodeError(f"no message type {msg[:1]!r}") from None

    def encode(self, msg: Message) -> bytes:
        native = self.native
        if native is not None:
            out = native.encode_message(msg)
            if out is not None:
                return out  # else the struct codecs encode it, or raise the precise EncodeError
        return self.codec_for(msg).encode(msg)

    def decode(self, data: bytes | memoryview) -> Message:
        """Decode one message that fills `data` exactly."""
        native = self.native
        if native is not None:
            out = native.decode_message(data)
            if out is not None:
                return out  # else a defect: the struct codecs below raise the precise DecodeError
        if not data:
            raise DecodeError(DecodeErrorKind.ZERO_LENGTH, 0, "empty message")
        dec = self.decoders[data[0]]
        if dec is None:
            raise DecodeError(DecodeErrorKind.UNKNOWN_TYPE, 0, f"type byte 0x{data[0]:02x}")
        return dec(data, 0, len(data))

    def to_dict(self, msg: Message) -> dict[str, Any]:
        codec = self.codec_for(msg)
        return {"type": codec.name, **codec.to_dict(msg)}


def build_table(messages: dict[str, Any]) -> CodecTable:
    return CodecTable(messages)
