"""Generates `decoders/_native.c`: the schema's codecs as a C extension on the CPython API.

    python -m decoders.native_gen            # rewrite decoders/_native.c from the schema
    python -m decoders.native_gen --check    # exit 1 if the committed file is not current

One schema, one more backend: the C is written from the same `MessageCodec`s (and so the
same `ir` walk) as the struct codecs and the Wireshark dissector, never by hand, and a test
checks the committed file is what this generator writes. `pip install` compiles it when a
compiler is there (setup.py; a failure is a warning, not a failed install), and
`decoders/native.py` loads it only if its schema fingerprint is this schema's.

What the C does, and nothing more:
- `decode_messages(data, count)`: every message block of a datagram whose header was
  already accepted, as the same tuples the struct codecs return. On any defect it returns
  None and the Python path decodes the datagram again to raise the precise `DecodeError`:
  errors are never worded twice.
- `pack_blocks(buf, off, count, max_bytes, max_count, msgs, start, offsets)`: the
  publisher's `DatagramWriter.add_many` for the fixed-size messages; it stops at the first
  message it does not handle (a variable one, or a value that does not fit) and the Python
  path packs that one, raising the precise `EncodeError` if it must.
- `soup_messages(buf, off)`: an image stream's SoupBinTCP sequenced-data packets, decoded
  while each holds one message the decoders take exactly; it stops at anything else and the
  image client's Python path takes that packet, with its precise error if there is one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import ir
from .fastcodec import CodecTable, MessageCodec
from .schema.framing import MAX_MESSAGES_PER_PACKET

__all__ = ["generate", "main", "TARGET"]

TARGET = Path(__file__).with_name("_native.c")
_INT_CODES = {"b": ("int8_t", 1, True), "B": ("uint8_t", 1, False), "h": ("int16_t", 2, True), "H": ("uint16_t", 2, False),
              "i": ("int32_t", 4, True), "I": ("uint32_t", 4, False), "l": ("int32_t", 4, True), "L": ("uint32_t", 4, False), "q": ("int64_t", 8, True), "Q": ("uint64_t", 8, False)}
_RANGES = {code: ((-(1 << (8 * n - 1)), (1 << (8 * n - 1)) - 1) if signed else (0, (1 << (8 * n)) - 1))
           for code, (_, n, signed) in _INT_CODES.items()}


def _parse_format(fmt: str) -> tuple[str, list[tuple[str, int]]]:
    """('>', [(code, count)]) of a struct format, 'Ns' and 'Nx' kept as one item."""
    order, body = fmt[0], fmt[1:]
    items, num = [], ""
    for ch in body:
        if ch.isdigit():
            num += ch
            continue
        items.append((ch, int(num) if num else 1))
        num = ""
    return order, items


def _c_bytes(value: bytes) -> str:
    return '"' + "".join(f"\\x{b:02x}" for b in value) + '"'


class _Emitter:
    def __init__(self, table: CodecTable, fingerprint: int) -> None:
        self.table = table
        self.fingerprint = fingerprint
        self.consts: list[bytes] = []  # cached bytes objects: type bytes and other constants
        self.lines: list[str] = []

    def const_index(self, value: bytes) -> int:
        if value not in self.consts:
            self.consts.append(value)
        return self.consts.index(value)

    # -- reading ------------------------------------------------------------

    @staticmethod
    def _read(code: str, order: str, at: str) -> str:
        ctype, size, signed = _INT_CODES[code]
        if size == 1:
            return f"({ctype})p[{at}]"
        fn = {2: "16", 4: "32", 8: "64"}[size]
        return f"({ctype})rd{'be' if order in '>!' else 'le'}{fn}(p + {at})"

    @staticmethod
    def _put_int(code: str, expr: str, tup: str, slot: int) -> str:
        """The statement setting a pooled tuple's int item (see pooled_tuple in pyobj_reuse.h)."""
        ctype, size, signed = _INT_CODES[code]
        if not signed and size > 1:
            return f"put_uint({tup}, {slot}, (uint64_t)({expr}));"
        if not signed:
            return f"put_u64({tup}, {slot}, (uint64_t)({expr}));"
        return f"put_i64({tup}, {slot}, (int64_t)({expr}));"

    @staticmethod
    def _new_int(code: str, expr: str) -> str:
        ctype, size, signed = _INT_CODES[code]
        if not signed and size > 1:  # sizes, ids, counts: mostly small, and then shared (SMALL_INTS below)
            return f"small_uint((uint64_t)({expr}))"
        if code == "Q":
            return f"PyLong_FromUnsignedLongLong({expr})"
        if code == "q":
            return f"PyLong_FromLongLong({expr})"
        return f"PyLong_FromLong((long){expr})"

    def _decode_leaves(self, codec: MessageCodec, leaves, fmt: str, base: str, tup: str, slot0: int, out: list[str],
                       pooled: bool = False) -> int:
        """C statements filling `tup` from `p + base`; returns the size read. `pooled`: `tup` may be a pooled
        tuple being reused, whose items are replaced (put_*) rather than set into empty slots."""
        def put(obj: str) -> str:
            return f"put_obj({tup}, {slot}, {obj});" if pooled else f"PyTuple_SET_ITEM({tup}, {slot}, {obj});"

        order, items = _parse_format(fmt)
        off = 0
        slot = slot0
        leaf_iter = iter(leaves)
        for code, n in items:
            if code == "x":
                off += n
                continue
            leaf = next(leaf_iter)
            node = leaf.node
            at = f"{base} + {off}" if base != "0" else str(off)
            if code in ("c", "s"):
                length = 1 if code == "c" else n
                if isinstance(node, ir.ConstNode):
                    k = self.const_index(node.value)
                    if not (slot0 == 0 and base == "0" and off == 0 and node.value == codec.type_byte):  # dispatched on already
                        out.append(f"    if (memcmp(p + {at}, {_c_bytes(node.value)}, {length}) != 0) goto defect;")
                    if pooled:
                        out.append(f"    put_ref({tup}, {slot}, CONSTS[{k}]);")
                    else:
                        out.append(f"    Py_INCREF(CONSTS[{k}]); PyTuple_SET_ITEM({tup}, {slot}, CONSTS[{k}]);")
                elif isinstance(node, ir.StringNode):
                    if node.encoding not in ("ascii", "utf8", "utf-8"):
                        raise ir.UnsupportedConstruct(node.path, f"native: encoding {node.encoding}")
                    decoder = "PyUnicode_DecodeASCII" if node.encoding == "ascii" else "PyUnicode_DecodeUTF8"
                    out.append(f"    {{ Py_ssize_t n = {length}; while (n > 0 && p[{at} + n - 1] == 0) n--;")
                    out.append(f"      PyObject *s = {decoder}((const char *)p + {at}, n, \"strict\");")
                    out.append("      if (s == NULL) { PyErr_Clear(); goto defect; }")
                    out.append(f"      {put('s')} }}")
                else:
                    out.append(f"    {put(f'PyBytes_FromStringAndSize((const char *)p + {at}, {length})')}")
                off += length
            elif code in _INT_CODES:
                expr = self._read(code, order, at)
                if isinstance(node, ir.ConstNode):
                    out.append(f"    if ({expr} != {node.value}) goto defect;")
                if pooled:
                    out.append(f"    {self._put_int(code, expr, tup, slot)}")
                else:
                    out.append(f"    PyTuple_SET_ITEM({tup}, {slot}, {self._new_int(code, expr)});")
                off += _INT_CODES[code][1]
            else:
                raise ir.UnsupportedConstruct(codec.name, f"native: struct code {code!r}")
            slot += 1
        return off

    def decoder(self, codec: MessageCodec) -> str:
        name = codec.name
        n_fixed = len(codec.leaves)
        size = codec.prefix.size
        out = [f"static PyObject *dec_{name}(const unsigned char *p, Py_ssize_t len)", "{"]
        has_tail = codec.tail is not None
        if not has_tail:
            out.append(f"    if (len != {size}) return NULL;")
        elif isinstance(codec.tail, ir.GreedyBytesNode):
            out.append(f"    if (len < {size}) return NULL;")
        else:
            count_size = codec._count.size
            out.append(f"    if (len < {size + count_size}) return NULL;")
        pooled = not has_tail  # a message of fixed fields takes its tuple from a pool (pooled_tuple in pyobj_reuse.h)
        if pooled:
            out.insert(0, f"static PyObject *POOL_{name}[POOL_SIZE];\nstatic unsigned POOL_AT_{name};\n")
            out.append("    PyObject **pool_slot;")
            out.append(f"    PyObject *t = pooled_tuple(POOL_{name}, POOL_SIZE, &POOL_AT_{name}, {n_fixed}, &pool_slot);")
        else:
            out.append(f"    PyObject *t = PyTuple_New({n_fixed + (1 if has_tail else 0)});")
        out.append("    if (t == NULL) return NULL;")
        self._decode_leaves(codec, codec.leaves, codec.prefix.format, "0", "t", 0, out, pooled)
        if isinstance(codec.tail, ir.GreedyBytesNode):
            out.append(f"    PyTuple_SET_ITEM(t, {n_fixed}, PyBytes_FromStringAndSize((const char *)p + {size}, len - {size}));")
        elif codec.tail is not None:
            count_code = _parse_format(codec._count.format)[1][0][0]
            el = codec._element
            el_n = len(codec._element_leaves)
            out.append(f"    Py_ssize_t count = (Py_ssize_t){self._read(count_code, codec._count.format[0], str(size))};")
            out.append(f"    if (len != {size + codec._count.size} + count * {el.size}) goto defect;")
            out.append("    PyObject *items = PyTuple_New(count);")
            out.append("    if (items == NULL) goto error;")
            out.append(f"    PyTuple_SET_ITEM(t, {n_fixed}, items);")
            out.append("    for (Py_ssize_t k = 0; k < count; k++) {")
            out.append(f"        Py_ssize_t e = {size + codec._count.size} + k * {el.size};")
            out.append(f"        PyObject *item = PyTuple_New({el_n});")
            out.append("        if (item == NULL) goto error;")
            out.append("        PyTuple_SET_ITEM(items, k, item);")
            body: list[str] = []
            self._decode_leaves(codec, codec._element_leaves, el.format, "e", "item", 0, body)
            out += ["    " + line for line in body]
            out.append(f"        for (Py_ssize_t j = 0; j < {el_n}; j++) if (PyTuple_GET_ITEM(item, j) == NULL) goto error;")
            out.append("    }")
        out.append(f"    for (Py_ssize_t j = 0; j < {n_fixed}; j++) if (PyTuple_GET_ITEM(t, j) == NULL) goto error;")
        out.append("    return t;")
        drop = ["    pooled_drop(t, pool_slot);" if pooled else "    Py_DECREF(t);"]
        if any("goto defect" in line for line in out):
            out += ["defect:", *drop, "    return NULL;"]
        out.append("error:")
        out += drop
        out.append("    if (!PyErr_Occurred()) PyErr_NoMemory();")
        out.append("    return NULL;")
        out.append("}")
        return "\n".join(out)

    def rows(self, codec: MessageCodec) -> str | None:
        """rows_<name>: a message whose group holds integers only (none wider than int64), its fixed fields as a
        tuple (as dec_<name> makes them) and its group as int64 rows, for a consumer in C that keeps no tuples
        (the compact replica, through the API capsule). None for any other message."""
        if codec.tail is None or isinstance(codec.tail, ir.GreedyBytesNode):
            return None
        _, el_items = _parse_format(codec._element.format)
        count_items = _parse_format(codec._count.format)[1]
        if (any(c != "x" and (c not in _INT_CODES or c == "Q" or n != 1) for c, n in el_items)
                or any(isinstance(leaf.node, ir.ConstNode) for leaf in codec._element_leaves)
                or len(count_items) != 1 or count_items[0][0] not in "BHI"):  # a count that cannot overflow the sizes
            return None
        name, n_fixed, size = codec.name, len(codec.leaves), codec.prefix.size
        width = len(codec._element_leaves)
        count_code = count_items[0][0]
        out = [f"static Py_ssize_t rows_{name}(const unsigned char *p, Py_ssize_t len, PyObject **head, int64_t **rows, Py_ssize_t *cap)",
               "{",
               f"    if (len < {size + codec._count.size}) return -1;",
               f"    Py_ssize_t count = (Py_ssize_t){self._read(count_code, codec._count.format[0], str(size))};",
               f"    if (len != {size + codec._count.size} + count * {codec._element.size}) return -1;",
               f"    if (count * {width} > *cap) {{",
               f"        int64_t *grown = PyMem_Realloc(*rows, (size_t)(count * {width}) * sizeof(int64_t));",
               "        if (grown == NULL) { PyErr_NoMemory(); return -2; }",
               f"        *rows = grown; *cap = count * {width};",
               "    }",
               f"    PyObject *t = PyTuple_New({n_fixed});",
               "    if (t == NULL) return -2;"]
        self._decode_leaves(codec, codec.leaves, codec.prefix.format, "0", "t", 0, out)
        out.append(f"    for (Py_ssize_t j = 0; j < {n_fixed}; j++) if (PyTuple_GET_ITEM(t, j) == NULL) goto error;")
        out.append("    for (Py_ssize_t k = 0; k < count; k++) {")
        out.append(f"        Py_ssize_t e = {size + codec._count.size} + k * {codec._element.size};")
        order = codec._element.format[0]
        off, j = 0, 0
        for code, n in el_items:
            if code == "x":
                off += n
                continue
            out.append(f"        (*rows)[k * {width} + {j}] = (int64_t){self._read(code, order, f'e + {off}')};")
            off += _INT_CODES[code][1]
            j += 1
        out.append("    }")
        out.append("    *head = t;")
        out.append("    return count;")
        if any("goto defect" in line for line in out):
            out += ["defect:", "    Py_DECREF(t);", "    return -1;"]
        out += ["error:", "    Py_DECREF(t);", "    if (!PyErr_Occurred()) PyErr_NoMemory();", "    return -2;", "}"]
        return "\n".join(out)

    # -- packing ------------------------------------------------------------

    def packer(self, codec: MessageCodec) -> str:
        """Length prefix + message for a fixed message with no checks; 1 = done, 0 = let Python do it."""
        out = [f"static int pack_{codec.name}(unsigned char *w, PyObject *m)", "{",
               f"    if (!PyTuple_CheckExact(m) || PyTuple_GET_SIZE(m) != {len(codec.leaves)}) return 0;",
               f"    wrbe16(w, {codec.size});"]
        self._write_leaves(codec.leaves, codec.prefix.format, "m", "2", out, dispatched=codec.type_byte)
        out += ["    return 1;", "fallback:", "    return 0;", "}"]
        return "\n".join(out)

    # -- encoding any message ---------------------------------------------------

    def _write_leaves(self, leaves, fmt: str, tup: str, base: str, out: list[str], indent: str = "    ",
                      dispatched: bytes | None = None) -> int:
        """C statements writing tuple `tup`'s fields at `w + base`; `goto fallback` where Python must decide.
        `dispatched`: the type byte the caller chose this writer by, so slot 0 need not be compared again."""
        order, items = _parse_format(fmt)
        off, slot = 0, 0
        leaf_iter = iter(leaves)
        for code, n in items:
            at = f"{base} + {off}"
            if code == "x":
                out.append(f"{indent}memset(w + {at}, 0, {n});")
                off += n
                continue
            leaf = next(leaf_iter)
            node = leaf.node
            v = f"PyTuple_GET_ITEM({tup}, {slot})"
            if code in ("c", "s"):
                length = 1 if code == "c" else n
                if isinstance(node, ir.StringNode):
                    if node.encoding != "ascii":
                        raise ir.UnsupportedConstruct(node.path, f"native: encoding {node.encoding}")
                    out.append(f"{indent}{{ PyObject *o = {v}; if (!PyUnicode_CheckExact(o) || !PyUnicode_IS_ASCII(o) || "
                               f"PyUnicode_GET_LENGTH(o) > {length}) goto fallback;")
                    out.append(f"{indent}  Py_ssize_t n = PyUnicode_GET_LENGTH(o); memcpy(w + {at}, PyUnicode_DATA(o), n); "
                               f"memset(w + {at} + n, 0, {length} - n); }}")
                else:
                    out.append(f"{indent}{{ PyObject *b = {v}; if (!PyBytes_CheckExact(b) || PyBytes_GET_SIZE(b) != {length}) goto fallback;")
                    if isinstance(node, ir.ConstNode) and not (slot == 0 and node.value == dispatched):
                        out.append(f"{indent}  if (memcmp(PyBytes_AS_STRING(b), {_c_bytes(node.value)}, {length}) != 0) goto fallback;")
                    out.append(f"{indent}  memcpy(w + {at}, PyBytes_AS_STRING(b), {length}); }}")
                off += length
            elif code in _INT_CODES:
                ctype, size, signed = _INT_CODES[code]
                lo, hi = _RANGES[code]
                out.append(f"{indent}{{ PyObject *o = {v}; if (!PyLong_Check(o)) goto fallback;")
                if code == "Q":
                    out.append(f"{indent}  unsigned long long x = AS_U64(o);")
                    out.append(f"{indent}  if (x == (unsigned long long)-1 && PyErr_Occurred()) {{ PyErr_Clear(); goto fallback; }}")
                else:
                    out.append(f"{indent}  long long x = AS_I64(o);")
                    out.append(f"{indent}  if (x == -1 && PyErr_Occurred()) {{ PyErr_Clear(); goto fallback; }}")
                    if code != "q":
                        out.append(f"{indent}  if (x < {lo}LL || x > {hi}LL) goto fallback;")
                if isinstance(node, ir.ConstNode):
                    out.append(f"{indent}  if (x != {node.value}) goto fallback;")
                if size == 1:
                    out.append(f"{indent}  w[{at}] = (unsigned char)x; }}")
                else:
                    out.append(f"{indent}  wr{'be' if order in '>!' else 'le'}{size * 8}(w + {at}, ({ctype})x); }}")
                off += size
            else:
                raise ir.UnsupportedConstruct(leaf.name, f"native: struct code {code!r}")
            slot += 1
        return off

    def encoder(self, codec: MessageCodec) -> str:
        """The message as bytes (no length prefix), or NULL without an exception: the struct codecs decide."""
        n_fixed = len(codec.leaves)
        size = codec.prefix.size
        tail = codec.tail
        if codec.prefix.format[0] not in ">!" or (tail is not None and codec._count is not None and codec._count.format[0] not in ">!"):
            raise ir.UnsupportedConstruct(codec.name, "native: little-endian fields")
        out = [f"static PyObject *enc_{codec.name}(PyObject *m)", "{",
               f"    if (!PyTuple_CheckExact(m) || PyTuple_GET_SIZE(m) != {n_fixed + (1 if tail is not None else 0)}) return NULL;",
               f"    Py_ssize_t size = {size};", "    PyObject *seq = NULL;"]
        if isinstance(tail, ir.GreedyBytesNode):
            out += [f"    PyObject *rest = PyTuple_GET_ITEM(m, {n_fixed});", "    if (!PyBytes_CheckExact(rest)) return NULL;",
                    "    size += PyBytes_GET_SIZE(rest);"]
        elif tail is not None:
            count_code = _parse_format(codec._count.format)[1][0][0]
            out += [f"    seq = PySequence_Fast(PyTuple_GET_ITEM(m, {n_fixed}), \"\");", "    if (seq == NULL) { PyErr_Clear(); return NULL; }",
                    "    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);",
                    f"    if (count > {_RANGES[count_code][1]}LL) {{ Py_DECREF(seq); return NULL; }}",
                    f"    size += {codec._count.size} + count * {codec._element.size};"]
        out += ["    PyObject *out = PyBytes_FromStringAndSize(NULL, size);", "    if (out == NULL) { Py_XDECREF(seq); return NULL; }",
                "    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);"]
        self._write_leaves(codec.leaves, codec.prefix.format, "m", "0", out, dispatched=codec.type_byte)
        if isinstance(tail, ir.GreedyBytesNode):
            out.append(f"    memcpy(w + {size}, PyBytes_AS_STRING(rest), PyBytes_GET_SIZE(rest));")
        elif tail is not None:
            count_size = codec._count.size
            out.append(f"    wrbe{count_size * 8}(w + {size}, (uint{count_size * 8}_t)count);")
            out.append("    for (Py_ssize_t k = 0; k < count; k++) {")
            out.append("        PyObject *item = PySequence_Fast_GET_ITEM(seq, k);")
            out.append(f"        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != {len(codec._element_leaves)}) goto fallback;")
            out.append(f"        Py_ssize_t e = {size + count_size} + k * {codec._element.size};")
            self._write_leaves(codec._element_leaves, codec._element.format, "item", "e", out, indent="        ")
            out.append("    }")
        out += ["    Py_XDECREF(seq);", "    return out;", "fallback:", "    Py_XDECREF(seq);", "    Py_DECREF(out);", "    return NULL;", "}"]
        return "\n".join(out)

    # -- the module -----------------------------------------------------------

    def render(self) -> str:
        decoders, packers, encoders, rows = [], [], [], []
        rows_table, widths = ["NULL"] * 256, ["0"] * 256
        enc_table = ["NULL"] * 256
        dec_table = ["NULL"] * 256
        pack_table = ["NULL"] * 256
        sizes = ["0"] * 256
        for name, codec in self.table.by_name.items():
            t = codec.type_byte[0]
            self.const_index(codec.type_byte)
            decoders.append(self.decoder(codec))
            dec_table[t] = f"dec_{name}"
            row = self.rows(codec)
            if row is not None:
                rows.append(row)
                rows_table[t], widths[t] = f"rows_{name}", str(len(codec._element_leaves))
            encoders.append(self.encoder(codec))
            enc_table[t] = f"enc_{name}"
            if codec.tail is None and codec.prefix.format[0] in ">!":  # fixed size (strings too, which struct cannot pack)
                packers.append(self.packer(codec))
                pack_table[t] = f"pack_{name}"
                sizes[t] = str(codec.size)
        consts = ",\n    ".join(f"{{{_c_bytes(v)}, {len(v)}}}" for v in self.consts)
        text = _TEMPLATE
        for key, value in {
            "@FINGERPRINT@": f"{self.fingerprint}ULL",
            "@N_CONSTS@": str(len(self.consts)),
            "@CONSTS@": consts,
            "@DECODERS@": "\n\n".join(decoders),
            "@PACKERS@": "\n\n".join(packers),
            "@ENCODERS@": "\n\n".join(encoders),
            "@ENC_TABLE@": _table(enc_table),
            "@DEC_TABLE@": _table(dec_table),
            "@ROWS@": "\n\n".join(rows),
            "@ROWS_TABLE@": _table(rows_table),
            "@ROWS_WIDTHS@": _table(widths),
            "@PACK_TABLE@": _table(pack_table),
            "@SIZES@": _table(sizes),
            "@MAX_COUNT@": str(MAX_MESSAGES_PER_PACKET),
            "@SOUP_SEQUENCED@": str(_soup_type("sequenced_data")),
            "@END_OF_IMAGE@": str(self.table.by_name["end_of_image"].type_byte[0]),
        }.items():
            text = text.replace(key, value)
        return text


def _soup_type(name: str) -> int:
    """A SoupBinTCP packet's type byte, from its declaration (decoders/schema/framing.py)."""
    from .soup import SOUP

    return SOUP.by_name[name].type_byte[0]


def _table(entries: list[str]) -> str:
    return ",\n    ".join(", ".join(entries[i : i + 8]) for i in range(0, 256, 8))


_TEMPLATE = r'''/* GENERATED by python -m decoders.native_gen from the construct schema (decoders/schema/).
 * Do not edit: change the schema and regenerate; tests/unit/test_native.py checks this file is current. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "native_api.h"
#include "pyobj_reuse.h"

#define SCHEMA_FINGERPRINT @FINGERPRINT@
#define HEADER_SIZE 20
#define MAX_COUNT @MAX_COUNT@
#define SOUP_SEQUENCED @SOUP_SEQUENCED@  /* SoupBinTCP sequenced data: length (2), this type byte, one message */
#define END_OF_IMAGE @END_OF_IMAGE@

/* On LP64 the `long` conversions walk the digits; CPython 3.11's `long long` ones go through a byte array */
#if LONG_MAX == 9223372036854775807L
#define API_U64(o) ((unsigned long long)PyLong_AsUnsignedLong(o))
#define API_I64(o) ((long long)PyLong_AsLong(o))
#else
#define API_U64(o) PyLong_AsUnsignedLongLong(o)
#define API_I64(o) PyLong_AsLongLong(o)
#endif

/* An exact int of up to three 30-bit digits is read from its digits inline (CPython 3.11's layout, public in
 * cpython/longintrepr.h): the packers' conversions were a fifth of the plant's sealing. Anything else (another
 * version, a subclass, a bool, a bigger value) goes through the API above, whose -1 + exception says "fallback". */
#ifdef DIGITS  /* pyobj_reuse.h: CPython 3.11's layout */
static inline unsigned long long AS_U64(PyObject *o)
{
    if (PyLong_CheckExact(o)) {
        const digit *d = DIGITS(o);
        switch (Py_SIZE(o)) {
        case 0: return 0;
        case 1: return d[0];
        case 2: return d[0] | ((unsigned long long)d[1] << 30);
        case 3: if (d[2] < 16) return d[0] | ((unsigned long long)d[1] << 30) | ((unsigned long long)d[2] << 60); break;
        default: break;
        }
    }
    return API_U64(o);
}
static inline long long AS_I64(PyObject *o)
{
    if (PyLong_CheckExact(o)) {
        const digit *d = DIGITS(o);
        switch (Py_SIZE(o)) {
        case 0: return 0;
        case 1: return (long long)d[0];
        case -1: return -(long long)d[0];
        case 2: return (long long)(d[0] | ((unsigned long long)d[1] << 30));
        case -2: return -(long long)(d[0] | ((unsigned long long)d[1] << 30));
        case 3: if (d[2] < 8) return (long long)(d[0] | ((unsigned long long)d[1] << 30) | ((unsigned long long)d[2] << 60)); break;
        default: break;
        }
    }
    return API_I64(o);
}
#else
#define AS_U64(o) API_U64(o)
#define AS_I64(o) API_I64(o)
#endif

static inline uint16_t rdbe16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rdbe32(const unsigned char *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static inline uint64_t rdbe64(const unsigned char *p) { return ((uint64_t)rdbe32(p) << 32) | rdbe32(p + 4); }
static inline uint16_t rdle16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rdle32(const unsigned char *p) { return p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static inline uint64_t rdle64(const unsigned char *p) { return rdle32(p) | ((uint64_t)rdle32(p + 4) << 32); }
static inline void wrbe16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)(v >> 8); p[1] = (unsigned char)v; }
static inline void wrbe32(unsigned char *p, uint32_t v) { wrbe16(p, (uint16_t)(v >> 16)); wrbe16(p + 2, (uint16_t)v); }
static inline void wrbe64(unsigned char *p, uint64_t v) { wrbe32(p, (uint32_t)(v >> 32)); wrbe32(p + 4, (uint32_t)v); }

static struct { const char *bytes; Py_ssize_t size; } CONST_DEFS[@N_CONSTS@] = {
    @CONSTS@
};
static PyObject *CONSTS[@N_CONSTS@];

/* Each message type of fixed fields decodes into a ring of result tuples (pyobj_reuse.h), 64 each: a tuple the
 * application dropped is filled again in place, and allocation was most of a decode otherwise. */
#define POOL_SIZE 64

/* Each decoder returns a new reference to a tuple, or NULL: with an exception set on a memory error,
 * without one on a defect of the data (the caller returns None and Python says what). */
@DECODERS@

typedef PyObject *(*decoder_fn)(const unsigned char *, Py_ssize_t);
static const decoder_fn DECODERS[256] = {
    @DEC_TABLE@
};

/* Row decoders (native_api.h): the count of rows, -1 on a defect of the data (no exception), -2 on an error. */
@ROWS@

typedef Py_ssize_t (*rows_fn)(const unsigned char *, Py_ssize_t, PyObject **, int64_t **, Py_ssize_t *);
static const rows_fn ROWS[256] = {
    @ROWS_TABLE@
};
static const Py_ssize_t ROWS_WIDTH[256] = {
    @ROWS_WIDTHS@
};

@PACKERS@

/* Each encoder returns the message's bytes, or NULL: with an exception on a memory error, without one when
 * a value is not one the C writes as the struct codecs would (the caller then asks them). */
@ENCODERS@

typedef PyObject *(*encoder_fn)(PyObject *);
static const encoder_fn ENCODERS[256] = {
    @ENC_TABLE@
};

/* decode_message(data) -> tuple, or None: one message filling `data` exactly; on a defect the struct codecs say what */
static PyObject *decode_message(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    (void)self;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = NULL;
    if (view.len > 0) {
        decoder_fn dec = DECODERS[((const unsigned char *)view.buf)[0]];
        if (dec != NULL)
            out = dec((const unsigned char *)view.buf, view.len);
    }
    PyBuffer_Release(&view);
    if (out == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return out;
}

/* encode_message(msg) -> bytes, or None: the struct codecs encode it or raise the precise EncodeError */
static PyObject *encode_message(PyObject *self, PyObject *msg)
{
    (void)self;
    if (!PyTuple_Check(msg) || PyTuple_GET_SIZE(msg) < 1)
        Py_RETURN_NONE;
    PyObject *type = PyTuple_GET_ITEM(msg, 0);
    if (!PyBytes_CheckExact(type) || PyBytes_GET_SIZE(type) != 1)
        Py_RETURN_NONE;
    encoder_fn enc = ENCODERS[(unsigned char)PyBytes_AS_STRING(type)[0]];
    if (enc == NULL)
        Py_RETURN_NONE;
    PyObject *out = enc(msg);
    if (out == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return out;
}

typedef int (*packer_fn)(unsigned char *, PyObject *);
static const packer_fn PACKERS[256] = {
    @PACK_TABLE@
};
static const Py_ssize_t PACK_SIZES[256] = {
    @SIZES@
};

/* The messages of a datagram whose header was checked: a list, or NULL (an exception set: memory; none: a defect). */
static PyObject *decode_blocks(const unsigned char *p, Py_ssize_t end, Py_ssize_t count)
{
    Py_ssize_t off = HEADER_SIZE;
    if (count < 0 || end < HEADER_SIZE)
        return NULL;
    PyObject *list = PyList_New(count);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (off + 2 > end)
            goto defect;
        Py_ssize_t length = rdbe16(p + off);
        off += 2;
        if (length == 0 || off + length > end)
            goto defect;
        decoder_fn dec = DECODERS[p[off]];
        if (dec == NULL)
            goto defect;
        PyObject *item = dec(p + off, length);
        if (item == NULL)
            goto defect;  /* with an exception set on a memory error */
        PyList_SET_ITEM(list, i, item);
        off += length;
    }
    if (off == end)
        return list;
defect:
    Py_DECREF(list);
    return NULL;
}

static PyObject *decode_messages(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t count;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*n", &view, &count))
        return NULL;
    PyObject *list = decode_blocks((const unsigned char *)view.buf, view.len, count);
    PyBuffer_Release(&view);
    if (list == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return list;
}

/* soup_messages(buf, off) -> (next_off, messages): an image stream's SoupBinTCP packets from buf[off:], decoded while
 * each is a whole sequenced-data packet holding one message the decoders take exactly, other than the end of image.
 * It stops, leaving it to Python, at anything else (a partial packet, another packet type, a length of 0, a message
 * the struct codecs must judge, the end of image): next_off is that packet's offset. The line handler's image client
 * reads a 200,000-record image through it in one call per recv instead of four Python calls per record. */
static PyObject *soup_messages(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t off;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*n", &view, &off))
        return NULL;
    PyObject *list = PyList_New(0);
    if (list == NULL || off < 0 || off > view.len) {
        PyBuffer_Release(&view);
        if (list != NULL) {
            Py_DECREF(list);
            PyErr_SetString(PyExc_ValueError, "soup_messages: offset outside the buffer");
        }
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t end = view.len;
    while (off + 3 <= end) {
        Py_ssize_t length = rdbe16(p + off);
        if (length < 2 || off + 2 + length > end || p[off + 2] != SOUP_SEQUENCED)
            break;
        const unsigned char *msg = p + off + 3;
        decoder_fn dec = DECODERS[msg[0]];
        if (dec == NULL || msg[0] == END_OF_IMAGE)
            break;
        PyObject *item = dec(msg, length - 1);
        if (item == NULL) {
            if (PyErr_Occurred())
                goto error;
            break;
        }
        int r = PyList_Append(list, item);
        Py_DECREF(item);
        if (r < 0)
            goto error;
        off += 2 + length;
    }
    PyBuffer_Release(&view);
    PyObject *out = Py_BuildValue("nN", off, list);
    return out;
error:
    PyBuffer_Release(&view);
    Py_DECREF(list);
    return NULL;
}

/* native_api.h: soup_rows. The rows buffer is kept between calls (the GIL is held throughout). */
static int64_t *ROW_BUF;
static Py_ssize_t ROW_CAP;

static Py_ssize_t soup_rows(const unsigned char *buf, Py_ssize_t off, Py_ssize_t end, unsigned char type, md_rows_cb cb, void *ctx)
{
    rows_fn fn = ROWS[type];
    if (fn == NULL)
        return off;
    while (off + 3 <= end) {
        Py_ssize_t length = rdbe16(buf + off);
        if (length < 2 || off + 2 + length > end || buf[off + 2] != SOUP_SEQUENCED || buf[off + 3] != type)
            break;
        PyObject *head = NULL;
        Py_ssize_t count = fn(buf + off + 3, length - 1, &head, &ROW_BUF, &ROW_CAP);
        if (count == -1)
            break;
        if (count < 0)
            return -1;
        int rc = cb(ctx, head, count, ROW_BUF, ROWS_WIDTH[type]);
        Py_DECREF(head);
        if (rc < 0)
            return -1;
        off += 2 + length;
    }
    return off;
}

static MdNativeApi API = {MD_NATIVE_API_VERSION, SCHEMA_FINGERPRINT, soup_rows};

#include "_native_lane.c"

enum { PACK_PYTHON, PACK_DONE, PACK_FULL };

/* Pack message `m` as a length-prefixed block at buf + off in a datagram holding `count` blocks: PACK_DONE
 * (*stop: where the block ends), PACK_FULL (it does not fit, or the datagram holds MAX_COUNT), or PACK_PYTHON
 * (a message the C packers leave to the struct codecs). pack_blocks and seal_datagrams both pack through it. */
static int pack_one(unsigned char *buf, PyObject *m, Py_ssize_t off, Py_ssize_t count, Py_ssize_t max_bytes, Py_ssize_t *stop)
{
    if (!PyTuple_CheckExact(m) || PyTuple_GET_SIZE(m) < 1)
        return PACK_PYTHON;
    PyObject *type = PyTuple_GET_ITEM(m, 0);
    if (!PyBytes_CheckExact(type) || PyBytes_GET_SIZE(type) != 1)
        return PACK_PYTHON;
    unsigned char t = (unsigned char)PyBytes_AS_STRING(type)[0];
    packer_fn pack = PACKERS[t];
    if (pack == NULL)
        return PACK_PYTHON;
    *stop = off + 2 + PACK_SIZES[t];
    if (*stop > max_bytes || count >= MAX_COUNT)
        return PACK_FULL;
    return pack(buf + off, m) ? PACK_DONE : PACK_PYTHON;
}

/* pack_blocks(buf, off, count, max_bytes, msgs, start, offsets) -> (next index, off, count, full)
 * Packs msgs[start:] as length-prefixed blocks into the writable buffer from `off`, until the
 * datagram is full (full = 1) or a message needs the Python path (full = 0, next < len). */
static PyObject *pack_blocks(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t off, count, max_bytes, start;
    PyObject *msgs, *offsets;
    (void)self;
    if (!PyArg_ParseTuple(args, "w*nnnOnO", &view, &off, &count, &max_bytes, &msgs, &start, &offsets))
        return NULL;
    if (max_bytes > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "max_bytes beyond the buffer");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(msgs, "msgs must be a sequence");
    if (seq == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    unsigned char *buf = (unsigned char *)view.buf;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), i = start;
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int full = 0;
    for (; i < n; i++) {
        Py_ssize_t stop;
        int r = pack_one(buf, items[i], off, count, max_bytes, &stop);
        if (r == PACK_FULL) {
            full = count > 0;  /* an empty datagram it never fits in: Python raises */
            break;
        }
        if (r == PACK_PYTHON)
            break;
        if (offsets != Py_None) {
            PyObject *o = PyLong_FromSsize_t(off);
            if (o == NULL || PyList_Append(offsets, o) < 0) {
                Py_XDECREF(o);
                Py_DECREF(seq);
                PyBuffer_Release(&view);
                return NULL;
            }
            Py_DECREF(o);
        }
        off = stop;
        count++;
    }
    Py_DECREF(seq);
    PyBuffer_Release(&view);
    return Py_BuildValue("nnni", i, off, count, full);
}

#include "_native_seal.c"

static PyMethodDef METHODS[] = {
    {"decode_messages", decode_messages, METH_VARARGS, "decode_messages(data, count) -> list of tuples, or None on a defect"},
    {"soup_messages", soup_messages, METH_VARARGS, "soup_messages(buf, off) -> (next_off, messages) of an image stream"},
    {"decode_message", decode_message, METH_O, "decode_message(data) -> tuple, or None: the struct codecs decide"},
    {"encode_message", encode_message, METH_O, "encode_message(msg) -> bytes, or None: the struct codecs decide"},
    {"pack_blocks", pack_blocks, METH_VARARGS, "pack_blocks(buf, off, count, max_bytes, msgs, start, offsets) -> (i, off, count, full)"},
    {"seal_datagrams", (PyCFunction)(void (*)(void))seal_datagrams, METH_FASTCALL, "seal_datagrams(buf, off, count, max_bytes, msgs, start, session, first, starts): the plant's packing"},
    {"admit_run", (PyCFunction)(void (*)(void))admit_run, METH_FASTCALL, "admit_run(buf, slot, lengths, start, feed, now_ns, session, lane): the handler's in-order lane"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_native", "The schema's codecs in C (generated)", -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void)
{
    for (int i = 0; i < @N_CONSTS@; i++) {
        CONSTS[i] = PyBytes_FromStringAndSize(CONST_DEFS[i].bytes, CONST_DEFS[i].size);
        if (CONSTS[i] == NULL)
            return NULL;
    }
    if (lane_init() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&MODULE);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObject(m, "FINGERPRINT", PyLong_FromUnsignedLongLong(SCHEMA_FINGERPRINT)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *api = PyCapsule_New(&API, MD_NATIVE_API_CAPSULE, NULL);
    if (api == NULL || PyModule_AddObject(m, "_API", api) < 0) {
        Py_XDECREF(api);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
'''


def generate(table: CodecTable | None = None, fingerprint: int | None = None) -> str:
    """The C source of the native backend of `table` (default: this schema's)."""
    if table is None or fingerprint is None:
        from . import CODECS, SCHEMA_FINGERPRINT

        table, fingerprint = CODECS, SCHEMA_FINGERPRINT
    return _Emitter(table, fingerprint).render()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = generate()
    if args[:1] == ["--check"]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is not current: run python -m decoders.native_gen", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
