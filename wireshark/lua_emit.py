"""IR node → Lua statements that dissect it at a runtime offset: the generator's one walker of the IR.

The emitted code keeps a running `off` and the message's end `lim`; every read is preceded
by a bounds check that raises an expert item and stops the message instead of throwing.
Field values are recorded in a context table so that `this.x` expressions (array counts,
Switch keys, If conditions, Computed values, Bytes lengths) can be evaluated; 64-bit
values stay UInt64/Int64 userdata and are converted only where an expression needs a
number. Bit fields and flags wider than 32 bits are extracted by hand with UInt64 methods,
never through ProtoField masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from decoders import ir

__all__ = ["Emitter", "lua_str"]


def lua_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _bytes_lua(value: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in value) + '"'


_BINOPS = {"==": "==", "!=": "~=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "+": "+", "-": "-", "*": "*", "%": "%"}
_BITOPS = {"&": "bit.band", "|": "bit.bor", "^": "bit.bxor", "<<": "bit.lshift", ">>": "bit.rshift"}


@dataclass
class Emitter:
    proto: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # (abbr, ProtoField declaration)
    _seen: set[str] = field(default_factory=set)
    counter: int = 0
    enum_values: dict[str, dict[str, int]] = field(default_factory=dict)  # field name -> enum name -> value

    # -- fields -----------------------------------------------------------------

    def declare(self, abbr: str, decl: str) -> str:
        if abbr not in self._seen:
            self._seen.add(abbr)
            self.fields.append((abbr, decl))
        return f"f[{lua_str(abbr)}]"

    def _var(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    # -- expressions ---------------------------------------------------------------

    def expr(self, e: ir.Expr, ctx: str) -> str:
        if e.op == "ref":
            return f"num(lookup({ctx}, {lua_str(e.args[0])}))"
        if e.op == "const":
            v = e.args[0]
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, bytes):
                return _bytes_lua(v)
            if isinstance(v, str):
                return lua_str(v)
            return repr(v)
        if len(e.args) == 1:
            a = self.expr(e.args[0], ctx)
            return {"not": f"(not {a})", "-": f"(-{a})", "~": f"bit.bnot({a})"}[e.op]
        a, b = self.expr(e.args[0], ctx), self.expr(e.args[1], ctx)
        if e.op in _BINOPS:
            return f"({a} {_BINOPS[e.op]} {b})"
        if e.op in _BITOPS:
            return f"{_BITOPS[e.op]}({a}, {b})"
        if e.op in ("//", "/"):
            return f"math.floor({a} / {b})"
        raise ir.UnsupportedConstruct("", f"operator {e.op} in an expression")

    # -- nodes ---------------------------------------------------------------------

    def _need(self, n: str, tree: str, what: str, ind: str) -> list[str]:
        return [f"{ind}if off + {n} > lim then {tree}:add_proto_expert_info(ef_length, {lua_str(what + ' runs past the end of the block')}) return nil end"]

    def _int_decl(self, abbr: str, label: str, node: ir.Int, doc: str, mapping: tuple = ()) -> str:
        width = {1: 8, 2: 16, 3: 24, 4: 32}.get(node.size, 64)
        kind = "int" if node.signed else "uint"
        vs = "{" + ", ".join(f"[{v}]={lua_str(n)}" for n, v in mapping) + "}" if mapping else "nil"
        return f"ProtoField.{kind}{width}({lua_str(abbr)}, {lua_str(label)}, base.DEC, {vs}, nil, {lua_str(doc) if doc else 'nil'})"

    @staticmethod
    def _int_reader(node: ir.Int, rng: str) -> str:
        le = "le_" if node.byteorder == "little" else ""
        if node.size <= 4:
            return f"{rng}:{le}{'int' if node.signed else 'uint'}()"
        return f"{rng}:{le}{'int64' if node.signed else 'uint64'}()"

    def node(self, n: ir.Node, base: str, tree: str, ctx: str, ind: str) -> list[str]:
        """Lines dissecting `n` at `off` into `tree`; `base` is the filter-name prefix of its parent."""
        abbr = f"{base}.{n.name}" if n.name else base
        label = n.name or base.rsplit(".", 1)[-1]
        doc = n.doc
        out: list[str] = []
        if isinstance(n, ir.Int):
            fref = self.declare(abbr, self._int_decl(abbr, label, n, doc))
            rng = f"tvb(off, {n.size})"
            out += self._need(str(n.size), tree, label, ind)
            out.append(f"{ind}local v = {self._int_reader(n, rng)}")
            out.append(f"{ind}{tree}:add({fref}, {rng}, v)")
            if n.semantic == "timestamp_ns":
                t = self.declare(abbr + ".time", f"ProtoField.absolute_time({lua_str(abbr + '.time')}, {lua_str(label + ' (UTC)')}, base.UTC)")
                out.append(f"{ind}{tree}:add({t}, {rng}, ns_time(v))")
            elif n.semantic == "price":
                sc = self.declare(abbr + ".scaled", f"ProtoField.string({lua_str(abbr + '.scaled')}, {lua_str(label + ' (scaled)')}, base.ASCII)")
                out.append(f"{ind}{tree}:add({sc}, {rng}, scaled(v, price_exponent(lookup({ctx}, \"instrument_id\"))))")
            if n.name:
                out.append(f"{ind}{ctx}[{lua_str(n.name)}] = v")
            out.append(f"{ind}off = off + {n.size}")
            return [f"{ind}do", *[ln.replace(ind, ind + "  ", 1) for ln in out], f"{ind}end"]
        if isinstance(n, ir.EnumNode):
            self.enum_values[n.name] = dict(n.mapping)
            b = n.base
            fref = self.declare(abbr, self._int_decl(abbr, label, b, doc, n.mapping))
            rng = f"tvb(off, {b.size})"
            return [f"{ind}do", *self._need(str(b.size), tree, label, ind + "  "),
                    f"{ind}  local v = {self._int_reader(b, rng)}", f"{ind}  {tree}:add({fref}, {rng}, v)",
                    *([f"{ind}  {ctx}[{lua_str(n.name)}] = v"] if n.name else []), f"{ind}  off = off + {b.size}", f"{ind}end"]
        if isinstance(n, ir.ConstNode):
            size = ir.fixed_size(n)
            if isinstance(n.base, ir.BytesNode):
                want = n.value
                if n.base.length == 1:
                    fref = self.declare(abbr, f"ProtoField.string({lua_str(abbr)}, {lua_str(label)}, base.ASCII, {lua_str(doc) if doc else 'nil'})")
                    add = f"{tree}:add({fref}, r, r:string())"
                else:
                    fref = self.declare(abbr, f"ProtoField.bytes({lua_str(abbr)}, {lua_str(label)}, base.NONE, {lua_str(doc) if doc else 'nil'})")
                    add = f"{tree}:add({fref}, r)"
            elif isinstance(n.base, ir.Int):
                want = int(n.value).to_bytes(n.base.size, n.base.byteorder, signed=n.base.signed)
                fref = self.declare(abbr, self._int_decl(abbr, label, n.base, doc))
                add = f"{tree}:add({fref}, r, {self._int_reader(n.base, 'r')})"
            else:
                raise ir.UnsupportedConstruct(n.path, "Const of a non-integer, non-bytes construct")
            return [f"{ind}do", *self._need(str(size), tree, label, ind + "  "), f"{ind}  local r = tvb(off, {size})",
                    f"{ind}  local item = {add}",
                    f"{ind}  if r:raw() ~= {_bytes_lua(want)} then item:add_proto_expert_info(ef_const, {lua_str(label + ' is not its constant')}) end",
                    f"{ind}  off = off + {size}", f"{ind}end"]
        if isinstance(n, ir.FlagsNode):
            b = n.base
            fref = self.declare(abbr, self._int_decl(abbr, label, b, doc))
            lines = [f"{ind}do", *self._need(str(b.size), tree, label, ind + "  "), f"{ind}  local r = tvb(off, {b.size})",
                     f"{ind}  local v = UInt64(0)", f"{ind}  if {b.size} <= 4 then v = UInt64(r:{'le_' if b.byteorder == 'little' else ''}uint()) "
                     f"else v = r:{'le_' if b.byteorder == 'little' else ''}uint64() end",
                     f"{ind}  local item = {tree}:add({fref}, r, {self._int_reader(b, 'r')})"]
            for fname, mask in n.flags:
                fa = self.declare(f"{abbr}.{fname}", f"ProtoField.bool({lua_str(f'{abbr}.{fname}')}, {lua_str(fname)})")
                lines.append(f"{ind}  item:add({fa}, r, v:band(UInt64({mask & 0xFFFFFFFF}, {mask >> 32})) ~= UInt64(0))")
            lines += [f"{ind}  {ctx}[{lua_str(n.name)}] = v", f"{ind}  off = off + {b.size}", f"{ind}end"]
            return lines
        if isinstance(n, ir.BitStructNode):
            fref = self.declare(abbr, f"ProtoField.none({lua_str(abbr)}, {lua_str(label)}, {lua_str(doc) if doc else 'nil'})")
            lines = [f"{ind}do", *self._need(str(n.size), tree, label, ind + "  "), f"{ind}  local r = tvb(off, {n.size})",
                     f"{ind}  local v = r:uint64()", f"{ind}  local bt = {tree}:add({fref}, r)", f"{ind}  local sub = {{}}",
                     f"{ind}  {ctx}[{lua_str(n.name)}] = sub"]
            total = n.size * 8
            for bf in n.fields:
                if bf.padding:
                    continue
                shift = total - bf.offset_bits - bf.bits
                width = 8 if bf.bits <= 8 else 16 if bf.bits <= 16 else 32 if bf.bits <= 32 else 64
                vs = "{" + ", ".join(f"[{v}]={lua_str(nm)}" for nm, v in bf.mapping) + "}" if bf.mapping else "nil"
                fa = self.declare(f"{abbr}.{bf.name}", f"ProtoField.uint{width}({lua_str(f'{abbr}.{bf.name}')}, {lua_str(bf.name)}, base.DEC, {vs})")
                mask = (1 << bf.bits) - 1
                extract = f"v:rshift({shift}):band(UInt64({mask & 0xFFFFFFFF}, {mask >> 32}))"
                val = extract if width == 64 else f"({extract}):tonumber()"
                lines += [f"{ind}  local b{bf.offset_bits} = {val}", f"{ind}  bt:add({fa}, r, b{bf.offset_bits})",
                          f"{ind}  sub[{lua_str(bf.name)}] = b{bf.offset_bits}"]
            lines += [f"{ind}  off = off + {n.size}", f"{ind}end"]
            return lines
        if isinstance(n, (ir.BytesNode, ir.VarBytesNode, ir.GreedyBytesNode)):
            fref = self.declare(abbr, f"ProtoField.bytes({lua_str(abbr)}, {lua_str(label)}, base.NONE, {lua_str(doc) if doc else 'nil'})")
            if isinstance(n, ir.BytesNode):
                size = str(n.length)
            elif isinstance(n, ir.VarBytesNode):
                size = self.expr(n.length, ctx)
            else:
                size = "(lim - off)"
            return [f"{ind}do", f"{ind}  local n = {size}", *self._need("n", tree, label, ind + "  "),
                    f"{ind}  if n > 0 then {tree}:add({fref}, tvb(off, n)) end", f"{ind}  off = off + n", f"{ind}end"]
        if isinstance(n, ir.StringNode):
            fref = self.declare(abbr, f"ProtoField.string({lua_str(abbr)}, {lua_str(label)}, base.ASCII, {lua_str(doc) if doc else 'nil'})")
            if n.kind == "padded":
                return [f"{ind}do", *self._need(str(n.length), tree, label, ind + "  "), f"{ind}  local r = tvb(off, {n.length})",
                        f"{ind}  local s = strip_nul(r:string())", f"{ind}  {tree}:add({fref}, r, s)",
                        *([f"{ind}  {ctx}[{lua_str(n.name)}] = s"] if n.name else []), f"{ind}  off = off + {n.length}", f"{ind}end"]
            return [f"{ind}do", f"{ind}  local z = off", f"{ind}  while z < lim and tvb(z, 1):uint() ~= 0 do z = z + 1 end",
                    f"{ind}  if z >= lim then {tree}:add_proto_expert_info(ef_length, {lua_str(label + ' has no terminating NUL')}) return nil end",
                    f"{ind}  local s = z > off and tvb(off, z - off):string() or \"\"", f"{ind}  {tree}:add({fref}, tvb(off, z - off + 1), s)",
                    *([f"{ind}  {ctx}[{lua_str(n.name)}] = s"] if n.name else []), f"{ind}  off = z + 1", f"{ind}end"]
        if isinstance(n, ir.PaddingNode):
            return [*self._need(str(n.length), tree, "padding", ind), f"{ind}off = off + {n.length}"]
        if isinstance(n, ir.StructNode):
            fref = self.declare(abbr, f"ProtoField.none({lua_str(abbr)}, {lua_str(label)}, {lua_str(doc) if doc else 'nil'})")
            sub, sctx = self._var("s"), self._var("c")
            lines = [f"{ind}do", f"{ind}  local start = off", f"{ind}  local {sub} = {tree}:add({fref}, tvb(off, 0))",
                     f"{ind}  local {sctx} = {{_ = {ctx}}}", f"{ind}  {ctx}[{lua_str(n.name)}] = {sctx}"]
            for child in n.fields:
                lines += self.node(child, abbr, sub, sctx, ind + "  ")
            lines += [f"{ind}  {sub}:set_len(off - start)", f"{ind}end"]
            return lines
        if isinstance(n, ir.SwitchNode):
            key = self.expr(n.key, ctx)
            lines = [f"{ind}do", f"{ind}  local k = {key}"]
            first = True
            for case_key, case in n.cases:
                if isinstance(case_key, int):
                    value = case_key
                else:  # an enum name: its value, from the enum field the key refers to
                    ref = n.key.args[0].rsplit(".", 1)[-1] if n.key.op == "ref" else ""
                    if ref not in self.enum_values or str(case_key) not in self.enum_values[ref]:
                        raise ir.UnsupportedConstruct(n.path, f"Switch case {case_key!r} is not a value of an enum field {ref!r}")
                    value = self.enum_values[ref][str(case_key)]
                cond = f"k == {value}"
                lines.append(f"{ind}  {'if' if first else 'elseif'} {cond} then")
                lines += self.node(case, base, tree, ctx, ind + "    ")
                first = False
            if n.default is not None:
                lines.append(f"{ind}  {'if true' if first else 'else'}{' then' if first else ''}")
                lines += self.node(n.default, base, tree, ctx, ind + "    ")
                lines.append(f"{ind}  end")
            elif not first:
                lines.append(f"{ind}  end")
            lines.append(f"{ind}end")
            return lines
        if isinstance(n, (ir.ArrayNode, ir.PrefixedArrayNode, ir.GreedyRangeNode)):
            fref = self.declare(abbr, f"ProtoField.none({lua_str(abbr)}, {lua_str(label)}, {lua_str(doc) if doc else 'nil'})")
            lines = [f"{ind}do"]
            if isinstance(n, ir.ArrayNode):
                lines.append(f"{ind}  local count = {self.expr(n.count, ctx)}")
            elif isinstance(n, ir.PrefixedArrayNode):
                cref = self.declare(abbr + ".count", self._int_decl(abbr + ".count", "count", n.count, "number of items"))
                lines += [*self._need(str(n.count.size), tree, label + " count", ind + "  "),
                          f"{ind}  local count = num({self._int_reader(n.count, f'tvb(off, {n.count.size})')})",
                          f"{ind}  {tree}:add({cref}, tvb(off, {n.count.size}), count)", f"{ind}  off = off + {n.count.size}"]
            else:
                lines.append(f"{ind}  local count = 1000000000")
            item_ctx = self._var("c")
            loop = f"{ind}  for i = 1, count do" if not isinstance(n, ir.GreedyRangeNode) else f"{ind}  for i = 1, count do if off >= lim then break end"
            lines += [f"{ind}  local items = {{}}", f"{ind}  {ctx}[{lua_str(n.name)}] = items", loop,
                      f"{ind}    local start = off", f"{ind}    local item = {tree}:add({fref}, tvb(off, 0))",
                      f"{ind}    local {item_ctx} = {{_ = {ctx}}}", f"{ind}    items[i] = {item_ctx}"]
            element = n.element
            if isinstance(element, ir.StructNode):
                for child in element.fields:
                    lines += self.node(child, abbr, "item", item_ctx, ind + "    ")
            else:
                lines += self.node(element, abbr, "item", item_ctx, ind + "    ")
            lines += [f"{ind}    item:set_len(off - start)", f"{ind}  end", f"{ind}end"]
            return lines
        if isinstance(n, ir.ComputedNode):
            fref = self.declare(abbr, f"ProtoField.string({lua_str(abbr)}, {lua_str(label)}, base.ASCII, {lua_str(doc) if doc else 'nil'})")
            return [f"{ind}do", f"{ind}  local v = {self.expr(n.value, ctx)}", f"{ind}  {ctx}[{lua_str(n.name)}] = v",
                    f"{ind}  {tree}:add({fref}, tostring(v)):set_generated()", f"{ind}end"]
        if isinstance(n, ir.IfNode):
            return [f"{ind}if {self.expr(n.condition, ctx)} then", *self.node(n.then, base, tree, ctx, ind + "  "), f"{ind}end"]
        raise ir.UnsupportedConstruct(n.path, f"{type(n).__name__} in the Lua generator")
