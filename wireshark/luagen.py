"""Construct schema → Wireshark Lua dissector, through the same IR the fast codecs use.

The message layouts come from `decoders.fastcodec.MessageCodec` (built by `decoders.ir`),
so a field's offset, width, signedness and meaning are exactly the fast codec's. The
plugin dissects MoldUDP64 framing with each message as a subtree and raises expert
items for truncation, block lengths past the end, count mismatch, unknown types, a
length that is not the layout's, and a session whose schema tag is not the plugin's.

Lua rules kept (research/wireshark-anchors.md): every length is checked before a
TvbRange is built; 64-bit values stay UInt64/Int64 userdata; no masks wider than 32
bits; the `bit` library rather than native operators; runs on Lua 5.2 and 5.4.
"""

from __future__ import annotations

from dataclasses import dataclass

from decoders import ir
from decoders.fastcodec import CodecTable, MessageCodec

__all__ = ["generate", "LuaOptions", "field_names"]


@dataclass
class LuaOptions:
    proto: str = "mdmold"
    description: str = "Market data over MoldUDP64"
    ports: tuple[int, ...] = (31001, 31002)
    heuristic: bool = True
    default_price_exponent: int = -4


def _lua_str(text: str) -> str:
    return '"' + text.replace("\\\\", "\\\\\\\\").replace('"', '\\\\"').replace("\\n", " ") + '"'


def _leaf_kind(node: ir.Node) -> tuple[str, int, bool]:
    """(kind, size, signed) of a leaf: kind in uint, int, ts, price, char, bytes, string."""
    if isinstance(node, ir.ConstNode):
        base = node.base
        if isinstance(base, ir.BytesNode):
            return ("char", 1, False) if base.length == 1 else ("bytes", base.length, False)
        return ("uint", base.size, False)
    if isinstance(node, ir.EnumNode):
        return ("int" if node.base.signed else "uint", node.base.size, node.base.signed)
    if isinstance(node, ir.Int):
        if node.semantic == "timestamp_ns":
            return ("ts", 8, False)
        if node.semantic == "price":
            return ("price", 8, True)
        return ("int" if node.signed else "uint", node.size, node.signed)
    if isinstance(node, ir.StringNode):
        return ("string", node.length or 0, False)
    if isinstance(node, ir.BytesNode):
        return ("bytes", node.length, False)
    raise ir.UnsupportedConstruct(node.path, f"{type(node).__name__} in the Lua generator")


def _protofield(abbr: str, label: str, node: ir.Node, doc: str) -> str:
    kind, size, signed = _leaf_kind(node)
    d = _lua_str(doc) if doc else "nil"
    if kind == "char":
        return f"ProtoField.string({_lua_str(abbr)}, {_lua_str(label)}, base.ASCII, {d})"
    if kind in ("uint", "int"):
        width = {1: 8, 2: 16, 3: 24, 4: 32, 8: 64}[size]
        vs = "nil"
        if isinstance(node, ir.EnumNode):
            vs = "{" + ", ".join(f"[{v}]={_lua_str(n)}" for n, v in node.mapping) + "}"
        return f"ProtoField.{kind}{width}({_lua_str(abbr)}, {_lua_str(label)}, base.DEC, {vs}, nil, {d})"
    if kind == "ts":
        return f"ProtoField.uint64({_lua_str(abbr)}, {_lua_str(label)}, base.DEC, nil, nil, {d})"
    if kind == "price":
        return f"ProtoField.int64({_lua_str(abbr)}, {_lua_str(label)}, base.DEC, nil, nil, {d})"
    if kind == "string":
        return f"ProtoField.string({_lua_str(abbr)}, {_lua_str(label)}, base.ASCII, {d})"
    return f"ProtoField.bytes({_lua_str(abbr)}, {_lua_str(label)}, base.NONE, {d})"


def _reader(kind: str, size: int, signed: bool, rng: str) -> str:
    """Lua expression reading a leaf's value from a TvbRange (for tree:add with a value)."""
    if kind in ("ts", "price") or size == 8:
        return f"{rng}:{'int64' if signed else 'uint64'}()"
    if kind == "char":
        return f"{rng}:string()"
    if kind == "string":
        return f"strip_nul({rng}:string())"  # fixed width, NUL padded (construct PaddedString); never stringz
    if kind == "bytes":
        return f"{rng}:bytes()"
    return f"{rng}:{'int' if signed else 'uint'}()"


# (variable, name, description, group, severity): declared once, for the plugin and for field_names
EXPERTS = [
    ("ef_truncated", "truncated", "Truncated datagram", "MALFORMED", "ERROR"),
    ("ef_past_end", "block_past_end", "Message block runs past the end", "MALFORMED", "ERROR"),
    ("ef_count", "count_mismatch", "Message count does not match the blocks", "MALFORMED", "ERROR"),
    ("ef_unknown", "unknown_type", "Unknown message type", "MALFORMED", "WARN"),
    ("ef_length", "length_mismatch", "Message length differs from its layout", "MALFORMED", "ERROR"),
    ("ef_schema", "schema_mismatch", "Session of another schema version", "PROTOCOL", "ERROR"),
    ("ef_gap", "gap", "Sequence gap on this feed since its previous datagram", "SEQUENCE", "WARN"),
    ("ef_copy", "ab_copy", "A/B copy of a datagram already seen on the other feed", "SEQUENCE", "NOTE"),
]


def field_names(table: CodecTable, opts: LuaOptions | None = None) -> list[str]:
    """Every filter name the plugin registers, expert items included (for the test against `tshark -G fields`)."""
    o = opts or LuaOptions()
    return [abbr for abbr, _ in _fields(table, o)] + [f"{o.proto}.{name}" for _, name, _, _, _ in EXPERTS]


def _fields(table: CodecTable, o: LuaOptions) -> list[tuple[str, str]]:
    p = o.proto
    out = [
        (f"{p}.session", f"ProtoField.string({_lua_str(p + '.session')}, \"Session\", base.ASCII, \"schema tag (4) + instance (6)\")"),
        (f"{p}.sequence", f"ProtoField.uint64({_lua_str(p + '.sequence')}, \"Sequence Number\", base.DEC)"),
        (f"{p}.count", f"ProtoField.uint16({_lua_str(p + '.count')}, \"Message Count\", base.DEC, {{[0]=\"heartbeat\", [65535]=\"end of session\"}})"),
        (f"{p}.block", f"ProtoField.none({_lua_str(p + '.block')}, \"Message Block\")"),
        (f"{p}.length", f"ProtoField.uint16({_lua_str(p + '.length')}, \"Message Length\", base.DEC)"),
        (f"{p}.msgseq", f"ProtoField.uint64({_lua_str(p + '.msgseq')}, \"Message Sequence\", base.DEC)"),
        (f"{p}.type", f"ProtoField.string({_lua_str(p + '.type')}, \"Message Type\", base.ASCII)"),
        (f"{p}.feed", f"ProtoField.string({_lua_str(p + '.feed')}, \"Feed\", base.ASCII, \"destination group:port\")"),
        (f"{p}.gap_first", f"ProtoField.uint64({_lua_str(p + '.gap_first')}, \"Missing From\", base.DEC, nil, nil, \"first sequence missing on this feed\")"),
        (f"{p}.gap_last", f"ProtoField.uint64({_lua_str(p + '.gap_last')}, \"Missing To\", base.DEC, nil, nil, \"last sequence missing on this feed\")"),
        (f"{p}.copy_of", f"ProtoField.framenum({_lua_str(p + '.copy_of')}, \"A/B Copy Of\", base.NONE, frametype.DUP_ACK)"),
    ]
    for name, codec in table.by_name.items():
        out.append((f"{p}.{name}", f"ProtoField.none({_lua_str(f'{p}.{name}')}, {_lua_str(name)}, {_lua_str(codec.node.doc or name)})"))
        for leaf in codec.leaves:
            if codec._is_type_leaf(leaf):
                continue
            abbr = f"{p}.{name}.{leaf.name}"
            out.append((abbr, _protofield(abbr, leaf.name, leaf.node, leaf.node.doc)))
            kind = _leaf_kind(leaf.node)[0]
            if kind == "ts":
                out.append((abbr + ".time", f"ProtoField.absolute_time({_lua_str(abbr + '.time')}, {_lua_str(leaf.name + ' (UTC)')}, base.UTC)"))
            elif kind == "price":
                out.append((abbr + ".scaled", f"ProtoField.string({_lua_str(abbr + '.scaled')}, {_lua_str(leaf.name + ' (scaled)')}, base.ASCII)"))
        if isinstance(codec.tail, ir.PrefixedArrayNode):
            tail = codec.tail
            out.append((f"{p}.{name}.{tail.name}", f"ProtoField.none({_lua_str(f'{p}.{name}.{tail.name}')}, {_lua_str(tail.name)})"))
            for leaf in codec._element_leaves:
                abbr = f"{p}.{name}.{tail.name}.{leaf.name}"
                out.append((abbr, _protofield(abbr, leaf.name, leaf.node, leaf.node.doc)))
        elif isinstance(codec.tail, ir.GreedyBytesNode):
            abbr = f"{p}.{name}.{codec.tail.name}"
            out.append((abbr, f"ProtoField.bytes({_lua_str(abbr)}, {_lua_str(codec.tail.name)})"))
    return out


def _message_function(p: str, name: str, codec: MessageCodec) -> list[str]:
    """`local function dissect_<name>(tvb, off, len, tree, pinfo)` adding every field."""
    lines = [f"local function dissect_{name}(tvb, off, len, tree, pinfo)"]
    size = codec.prefix.size
    lines.append(f"  local t = tree:add(f[{_lua_str(f'{p}.{name}')}], tvb(off, len))")
    if codec.tail is None:
        lines.append(f"  if len ~= {size} then t:add_proto_expert_info(ef_length, \"{name} is {size} bytes, block is \" .. len) return end")
    else:
        lines.append(f"  if len < {size} then t:add_proto_expert_info(ef_length, \"{name} needs at least {size} bytes, block is \" .. len) return end")
    o = 0
    for leaf in codec.leaves:
        kind, lsize, signed = _leaf_kind(leaf.node)
        if not codec._is_type_leaf(leaf):
            abbr = f"{p}.{name}.{leaf.name}"
            rng = f"tvb(off + {o}, {lsize})"
            lines.append(f"  t:add(f[{_lua_str(abbr)}], {rng}, {_reader(kind, lsize, signed, rng)})")
            if kind == "ts":
                lines.append(f"  t:add(f[{_lua_str(abbr + '.time')}], {rng}, ns_time({rng}:uint64()))")
            elif kind == "price":
                lines.append(f"  t:add(f[{_lua_str(abbr + '.scaled')}], {rng}, scaled({rng}:int64(), exponent_of(tvb, off)))")
            if name == "instrument_directory" and leaf.name == "price_exponent":
                lines.append(f"  exponents[tvb(off + 9, 4):uint()] = {rng}:int()")
        o += lsize if kind != "string" else (leaf.node.length or 0)
    tail = codec.tail
    if isinstance(tail, ir.PrefixedArrayNode):
        assert codec._count is not None and codec._element is not None
        csize, esize = codec._count.size, codec._element.size
        lines += [
            f"  if len < {size + csize} then t:add_proto_expert_info(ef_length, \"{name} cut before its item count\") return end",
            f"  local n = tvb(off + {size}, {csize}):uint()",
            f"  if len ~= {size + csize} + n * {esize} then t:add_proto_expert_info(ef_length, \"{name} with \" .. n .. \" items is \" .. ({size + csize} + n * {esize}) .. \" bytes, block is \" .. len) return end",
            "  for i = 0, n - 1 do",
            f"    local eo = off + {size + csize} + i * {esize}",
            f"    local item = t:add(f[{_lua_str(f'{p}.{name}.{tail.name}')}], tvb(eo, {esize}))",
        ]
        eo = 0
        for leaf in codec._element_leaves:
            kind, lsize, signed = _leaf_kind(leaf.node)
            rng = f"tvb(eo + {eo}, {lsize})"
            lines.append(f"    item:add(f[{_lua_str(f'{p}.{name}.{tail.name}.{leaf.name}')}], {rng}, {_reader(kind, lsize, signed, rng)})")
            eo += lsize
        lines.append("  end")
    elif isinstance(tail, ir.GreedyBytesNode):
        lines.append(f"  if len > {size} then t:add(f[{_lua_str(f'{p}.{name}.{tail.name}')}], tvb(off + {size}, len - {size})) end")
    lines.append(f"  return {_lua_str(name)}")
    lines.append("end")
    return lines


def generate(table: CodecTable, schema_tag: bytes, fingerprint: int, opts: LuaOptions | None = None) -> str:
    o = opts or LuaOptions()
    p = o.proto
    fields = _fields(table, o)
    out = [
        f"-- Wireshark dissector for {o.description}, generated by `python -m wireshark` from the construct schema.",
        f"-- Schema fingerprint {fingerprint:016x}, session tag {schema_tag.decode()}. Do not edit: regenerate.",
        "-- Runs on Wireshark 4.0 (Lua 5.2) and 4.4+ (Lua 5.4): bit library, UInt64/Int64 userdata, lengths checked first.",
        "",
        f"local p = Proto({_lua_str(p)}, {_lua_str(o.description)})",
        f"local SCHEMA_TAG = {_lua_str(schema_tag.decode())}",
        "local f = {}",
    ]
    for abbr, decl in fields:
        out.append(f"f[{_lua_str(abbr)}] = {decl}")
    out += [
        "local list = {}",
        "for _, v in pairs(f) do list[#list + 1] = v end",
        "p.fields = list",
        *[f"local {var} = ProtoExpert.new({_lua_str(p + '.' + name)}, {_lua_str(desc)}, expert.group.{group}, expert.severity.{sev})"
          for var, name, desc, group, sev in EXPERTS],
        "p.experts = {" + ", ".join(var for var, *_ in EXPERTS) + "}",
        f"p.prefs.price_decimals = Pref.uint(\"Default price decimals\", {-o.default_price_exponent}, \"prices are raw / 10^decimals until an instrument directory message is seen\")",
        "",
        "local exponents = {}  -- instrument id -> price exponent, from directory messages in this capture",
        "local function exponent_of(tvb, off)",
        "  local e = exponents[tvb(off + 9, 4):uint()]",
        "  if e == nil then return -p.prefs.price_decimals end",
        "  return e",
        "end",
        "local function scaled(raw, exponent)",
        "  local neg = raw < Int64(0)",
        "  local mag = neg and -raw or raw",
        "  local s = tostring(mag)",
        "  if exponent >= 0 then return (neg and \"-\" or \"\") .. s .. string.rep(\"0\", exponent) end",
        "  local d = -exponent",
        "  if #s <= d then s = string.rep(\"0\", d - #s + 1) .. s end",
        "  return (neg and \"-\" or \"\") .. s:sub(1, #s - d) .. \".\" .. s:sub(#s - d + 1)",
        "end",
        "local function strip_nul(s)",
        "  return (s:gsub(\"%z+$\", \"\"))",
        "end",
        "local function ns_time(ns)",
        "  local billion = UInt64(1000000000)",
        "  return NSTime.new((ns / billion):tonumber(), (ns % billion):tonumber())",
        "end",
        "",
    ]
    dispatch = []
    for name, codec in table.by_name.items():
        out += _message_function(p, name, codec)
        out.append("")
        dispatch.append(f"  [{codec.type_byte[0]}] = dissect_{name},")
    out += ["local DISSECT = {", *dispatch, "}", ""]
    out += [
        "-- across packets, per session and feed (destination group:port): gaps, and A/B copies.",
        "-- Worked out on the first pass and remembered per frame: Wireshark re-dissects in any order.",
        "local next_by_feed, first_copy, frame_info = {}, {}, {}",
        "local function sequence_analysis(tvb, pinfo, t, session, seq, count)",
        "  local feed = tostring(pinfo.dst) .. \":\" .. tostring(pinfo.dst_port)",
        "  if not pinfo.visited then",
        "    local info = {}",
        "    local key = session .. \"|\" .. feed",
        "    local expected = next_by_feed[key]",
        "    if expected ~= nil and seq > expected then info.gap = {expected, seq - UInt64(1)} end",
        "    local nxt = seq",
        "    if count ~= 0 and count ~= 65535 then nxt = seq + UInt64(count) end",
        "    if expected == nil or nxt > expected then next_by_feed[key] = nxt end",
        "    if count ~= 0 and count ~= 65535 then",
        "      local dk = session .. \"|\" .. tostring(seq) .. \"|\" .. count",
        "      local prev = first_copy[dk]",
        "      if prev == nil then first_copy[dk] = {frame = pinfo.number, feed = feed}",
        "      elseif prev.feed ~= feed then info.copy_of = prev.frame end",
        "    end",
        "    frame_info[pinfo.number] = info",
        "  end",
        f"  t:add(f[{_lua_str(p + '.feed')}], feed)",
        "  local info = frame_info[pinfo.number]",
        "  if info == nil then return end",
        "  if info.gap ~= nil then",
        f"    local g = t:add(f[{_lua_str(p + '.gap_first')}], tvb(10, 8), info.gap[1])",
        f"    t:add(f[{_lua_str(p + '.gap_last')}], tvb(10, 8), info.gap[2])",
        "    g:add_proto_expert_info(ef_gap, \"missing \" .. tostring(info.gap[1]) .. \"..\" .. tostring(info.gap[2]) .. \" on \" .. feed)",
        "  end",
        "  if info.copy_of ~= nil then",
        f"    local c = t:add(f[{_lua_str(p + '.copy_of')}], info.copy_of)",
        "    c:add_proto_expert_info(ef_copy, \"A/B copy of frame \" .. info.copy_of)",
        "  end",
        "end",
        "",
        "local function dissect(tvb, pinfo, tree)",
        "  local n = tvb:len()",
        "  local t = tree:add(p, tvb())",
        f"  pinfo.cols.protocol = {_lua_str(p.upper())}",
        "  if n < 20 then t:add_proto_expert_info(ef_truncated, \"MoldUDP64 header needs 20 bytes, datagram has \" .. n) return n end",
        f"  t:add(f[{_lua_str(p + '.session')}], tvb(0, 10))",
        f"  local seq_item = t:add(f[{_lua_str(p + '.sequence')}], tvb(10, 8))",
        f"  t:add(f[{_lua_str(p + '.count')}], tvb(18, 2))",
        "  local session = tvb(0, 10):string()",
        "  if session:sub(1, 4) ~= SCHEMA_TAG then",
        "    t:add_proto_expert_info(ef_schema, \"schema tag \" .. session:sub(1, 4) .. \", this plugin decodes \" .. SCHEMA_TAG)",
        "  end",
        "  local seq = tvb(10, 8):uint64()",
        "  local count = tvb(18, 2):uint()",
        "  sequence_analysis(tvb, pinfo, t, session, seq, count)",
        "  if count == 0 or count == 65535 then",
        "    if n ~= 20 then t:add_proto_expert_info(ef_count, (n - 20) .. \" bytes after a \" .. (count == 0 and \"heartbeat\" or \"end of session\")) end",
        "    pinfo.cols.info = (count == 0 and \"Heartbeat\" or \"End of session\") .. \" next=\" .. tostring(seq) .. \" session=\" .. session",
        "    return n",
        "  end",
        "  local off = 20",
        "  local names = {}",
        "  for i = 0, count - 1 do",
        "    if off + 2 > n then t:add_proto_expert_info(ef_count, \"count says \" .. count .. \", only \" .. i .. \" blocks present\") break end",
        "    local len = tvb(off, 2):uint()",
        "    if len == 0 or off + 2 + len > n then t:add_proto_expert_info(ef_past_end, \"block \" .. i .. \" of \" .. len .. \" bytes, \" .. (n - off - 2) .. \" left\") break end",
        f"    local b = t:add(f[{_lua_str(p + '.block')}], tvb(off, 2 + len))",
        f"    b:add(f[{_lua_str(p + '.length')}], tvb(off, 2))",
        f"    if seq ~= UInt64(0) then b:add(f[{_lua_str(p + '.msgseq')}], tvb(10, 8), seq + i) end",
        f"    b:add(f[{_lua_str(p + '.type')}], tvb(off + 2, 1))",
        "    local fn = DISSECT[tvb(off + 2, 1):uint()]",
        "    if fn == nil then",
        "      b:add_proto_expert_info(ef_unknown, \"type byte \" .. tvb(off + 2, 1):uint())",
        "    else",
        "      names[#names + 1] = fn(tvb, off + 2, len, b, pinfo)",
        "    end",
        "    off = off + 2 + len",
        "  end",
        "  if off < n then t:add_proto_expert_info(ef_count, (n - off) .. \" bytes after \" .. count .. \" messages\") end",
        "  pinfo.cols.info = \"seq=\" .. tostring(seq) .. \" count=\" .. count .. \" \" .. table.concat(names, \",\")",
        "  return n",
        "end",
        "",
        "p.dissector = dissect",
        "",
        "-- a heuristic that checks more than the length: ASCII session, and blocks that exactly fill the datagram",
        "local function heuristic(tvb, pinfo, tree)",
        "  local n = tvb:len()",
        "  if n < 20 then return false end",
        "  for i = 0, 9 do",
        "    local c = tvb(i, 1):uint()",
        "    if c < 32 or c > 126 then return false end",
        "  end",
        "  local count = tvb(18, 2):uint()",
        "  if count == 0 or count == 65535 then",
        "    if n ~= 20 then return false end",
        "  else",
        "    local off = 20",
        "    for i = 1, count do",
        "      if off + 2 > n then return false end",
        "      local len = tvb(off, 2):uint()",
        "      if len == 0 or off + 2 + len > n then return false end",
        "      off = off + 2 + len",
        "    end",
        "    if off ~= n then return false end",
        "  end",
        "  dissect(tvb, pinfo, tree)",
        "  return true",
        "end",
        "",
        "local udp = DissectorTable.get(\"udp.port\")",
        f"p.prefs.ports = Pref.range(\"UDP ports\", {_lua_str(','.join(str(x) for x in o.ports))}, \"feeds and retransmissions\", 65535)",
        "local registered = {}",
        "local function register_ports()",
        "  for _, port in ipairs(registered) do udp:remove(port, p) end",
        "  registered = {}",
        "  for lo, hi in tostring(p.prefs.ports):gmatch(\"(%d+)%-?(%d*)\") do",
        "    local a = tonumber(lo)",
        "    local b = tonumber(hi) or a",
        "    for port = a, b do udp:add(port, p); registered[#registered + 1] = port end",
        "  end",
        "end",
        "register_ports()",
        "function p.prefs_changed() register_ports() end",
        "udp:add_for_decode_as(p)",
    ]
    if o.heuristic:
        out.append("p:register_heuristic(\"udp\", heuristic)")
    return "\n".join(out) + "\n"
