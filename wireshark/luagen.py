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
from typing import Any

from decoders import ir

from .lua_emit import Emitter, lua_str

__all__ = ["generate", "LuaOptions", "field_names"]


@dataclass
class LuaOptions:
    proto: str = "mdmold"
    description: str = "Market data over MoldUDP64"
    ports: tuple[int, ...] = (31001, 31002)
    heuristic: bool = True
    default_price_exponent: int = -4


# (variable, name, description, group, severity): declared once, for the plugin and for field_names
EXPERTS = [
    ("ef_truncated", "truncated", "Truncated datagram", "MALFORMED", "ERROR"),
    ("ef_past_end", "block_past_end", "Message block runs past the end", "MALFORMED", "ERROR"),
    ("ef_count", "count_mismatch", "Message count does not match the blocks", "MALFORMED", "ERROR"),
    ("ef_unknown", "unknown_type", "Unknown message type", "MALFORMED", "WARN"),
    ("ef_length", "length_mismatch", "Message length differs from its layout", "MALFORMED", "ERROR"),
    ("ef_schema", "schema_mismatch", "Session of another schema version", "PROTOCOL", "ERROR"),
    ("ef_const", "bad_const", "A constant field holds another value", "MALFORMED", "ERROR"),
    ("ef_gap", "gap", "Sequence gap on this feed since its previous datagram", "SEQUENCE", "WARN"),
    ("ef_copy", "ab_copy", "A/B copy of a datagram already seen on the other feed", "SEQUENCE", "NOTE"),
]


def field_names(messages: dict[str, Any], opts: LuaOptions | None = None) -> list[str]:
    """Every filter name the plugin registers, expert items included (for the test against `tshark -G fields`)."""
    o = opts or LuaOptions()
    fields, _, _ = _build(messages, o)
    return [abbr for abbr, _ in fields] + [f"{o.proto}.{name}" for _, name, _, _, _ in EXPERTS]


def _type_byte(node: ir.StructNode) -> int:
    """The dispatching one-byte Const that opens every message."""
    first = node.fields[0] if node.fields else None
    if isinstance(first, ir.ConstNode) and isinstance(first.base, ir.BytesNode) and first.base.length == 1:
        return first.value[0]
    raise ir.UnsupportedConstruct(node.path, "a message must open with a one-byte type Const")


def _build(messages: dict[str, Any], o: LuaOptions) -> tuple[list[tuple[str, str]], list[str], list[tuple[int, str]]]:
    """(field declarations, message functions, (type byte, name)): framing fields, then each message's IR."""
    em = Emitter(o.proto)
    for abbr, decl in _framing_fields(o):
        em.declare(abbr, decl)
    p = o.proto
    funcs: list[str] = []
    types: list[tuple[int, str]] = []
    for name, con in messages.items():
        node = ir.walk(con, name, name)
        if not isinstance(node, ir.StructNode):
            raise ir.UnsupportedConstruct(name, "a message must be a Struct")
        types.append((_type_byte(node), name))
        msg = f"{p}.{name}"
        em.declare(msg, f"ProtoField.none({lua_str(msg)}, {lua_str(name)}, {lua_str(node.doc or name)})")
        size = ir.fixed_size(node)
        lines = [f"local function dissect_{name}(tvb, off, len, tree, pinfo)", "  local lim = off + len",
                 f"  local t = tree:add(f[{lua_str(msg)}], tvb(off, len))", "  local ctx = {}"]
        if size is not None:
            lines.append(f"  if len ~= {size} then t:add_proto_expert_info(ef_length, \"{name} is {size} bytes, block is \" .. len) return nil end")
        for child in node.fields:
            lines += em.node(child, msg, "t", "ctx", "  ")
        lines += [
            "  if off ~= lim then t:add_proto_expert_info(ef_length, (lim - off) .. \" bytes after the message\") end",
            "  if ctx.instrument_id ~= nil and ctx.price_exponent ~= nil then exponents[num(ctx.instrument_id)] = num(ctx.price_exponent) end",
            f"  return {lua_str(name)}",
            "end",
            "",
        ]
        funcs += lines
    return em.fields, funcs, types


def _framing_fields(o: LuaOptions) -> list[tuple[str, str]]:
    p = o.proto
    out = [
        (f"{p}.session", f"ProtoField.string({lua_str(p + '.session')}, \"Session\", base.ASCII, \"schema tag (4) + instance (6)\")"),
        (f"{p}.sequence", f"ProtoField.uint64({lua_str(p + '.sequence')}, \"Sequence Number\", base.DEC)"),
        (f"{p}.count", f"ProtoField.uint16({lua_str(p + '.count')}, \"Message Count\", base.DEC, {{[0]=\"heartbeat\", [65535]=\"end of session\"}})"),
        (f"{p}.block", f"ProtoField.none({lua_str(p + '.block')}, \"Message Block\")"),
        (f"{p}.length", f"ProtoField.uint16({lua_str(p + '.length')}, \"Message Length\", base.DEC)"),
        (f"{p}.msgseq", f"ProtoField.uint64({lua_str(p + '.msgseq')}, \"Message Sequence\", base.DEC)"),
        (f"{p}.type", f"ProtoField.string({lua_str(p + '.type')}, \"Message Type\", base.ASCII)"),
        (f"{p}.feed", f"ProtoField.string({lua_str(p + '.feed')}, \"Feed\", base.ASCII, \"destination group:port\")"),
        (f"{p}.gap_first", f"ProtoField.uint64({lua_str(p + '.gap_first')}, \"Missing From\", base.DEC, nil, nil, \"first sequence missing on this feed\")"),
        (f"{p}.gap_last", f"ProtoField.uint64({lua_str(p + '.gap_last')}, \"Missing To\", base.DEC, nil, nil, \"last sequence missing on this feed\")"),
        (f"{p}.copy_of", f"ProtoField.framenum({lua_str(p + '.copy_of')}, \"A/B Copy Of\", base.NONE, frametype.DUP_ACK)"),
    ]
    return out


def generate(messages: dict[str, Any], schema_tag: bytes, fingerprint: int, opts: LuaOptions | None = None) -> str:
    """The plugin for `messages` (name -> construct Struct opening with a one-byte type Const)."""
    o = opts or LuaOptions()
    p = o.proto
    fields, funcs, types = _build(messages, o)
    out = [
        f"-- Wireshark dissector for {o.description}, generated by `python -m wireshark` from the construct schema.",
        f"-- Schema fingerprint {fingerprint:016x}, session tag {schema_tag.decode()}. Do not edit: regenerate.",
        "-- Runs on Wireshark 4.0 (Lua 5.2) and 4.4+ (Lua 5.4): bit library, UInt64/Int64 userdata, lengths checked first.",
        "",
        f"local p = Proto({lua_str(p)}, {lua_str(o.description)})",
        f"local SCHEMA_TAG = {lua_str(schema_tag.decode())}",
        "local f = {}",
    ]
    for abbr, decl in fields:
        out.append(f"f[{lua_str(abbr)}] = {decl}")
    out += [
        "local list = {}",
        "for _, v in pairs(f) do list[#list + 1] = v end",
        "p.fields = list",
        *[f"local {var} = ProtoExpert.new({lua_str(p + '.' + name)}, {lua_str(desc)}, expert.group.{group}, expert.severity.{sev})"
          for var, name, desc, group, sev in EXPERTS],
        "p.experts = {" + ", ".join(var for var, *_ in EXPERTS) + "}",
        f"p.prefs.price_decimals = Pref.uint(\"Default price decimals\", {-o.default_price_exponent}, \"prices are raw / 10^decimals until an instrument directory message is seen\")",
        "",
        "local exponents = {}  -- instrument id -> price exponent, from directory messages in this capture",
        "local function num(v)",
        "  if type(v) == \"userdata\" then return v:tonumber() end",
        "  return v",
        "end",
        "local function lookup(ctx, path)",
        "  local v = ctx",
        "  for part in path:gmatch(\"[^%.]+\") do",
        "    if type(v) ~= \"table\" then return nil end",
        "    v = v[part]",
        "  end",
        "  return v",
        "end",
        "local function price_exponent(iid)",
        "  local e = iid ~= nil and exponents[num(iid)] or nil",
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
    out += funcs
    dispatch = [f"  [{t}] = dissect_{name}," for t, name in types]
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
        f"  t:add(f[{lua_str(p + '.feed')}], feed)",
        "  local info = frame_info[pinfo.number]",
        "  if info == nil then return end",
        "  if info.gap ~= nil then",
        f"    local g = t:add(f[{lua_str(p + '.gap_first')}], tvb(10, 8), info.gap[1])",
        f"    t:add(f[{lua_str(p + '.gap_last')}], tvb(10, 8), info.gap[2])",
        "    g:add_proto_expert_info(ef_gap, \"missing \" .. tostring(info.gap[1]) .. \"..\" .. tostring(info.gap[2]) .. \" on \" .. feed)",
        "  end",
        "  if info.copy_of ~= nil then",
        f"    local c = t:add(f[{lua_str(p + '.copy_of')}], info.copy_of)",
        "    c:add_proto_expert_info(ef_copy, \"A/B copy of frame \" .. info.copy_of)",
        "  end",
        "end",
        "",
        "local function dissect(tvb, pinfo, tree)",
        "  local n = tvb:len()",
        "  local t = tree:add(p, tvb())",
        f"  pinfo.cols.protocol = {lua_str(p.upper())}",
        "  if n < 20 then t:add_proto_expert_info(ef_truncated, \"MoldUDP64 header needs 20 bytes, datagram has \" .. n) return n end",
        f"  t:add(f[{lua_str(p + '.session')}], tvb(0, 10))",
        f"  local seq_item = t:add(f[{lua_str(p + '.sequence')}], tvb(10, 8))",
        f"  t:add(f[{lua_str(p + '.count')}], tvb(18, 2))",
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
        f"    local b = t:add(f[{lua_str(p + '.block')}], tvb(off, 2 + len))",
        f"    b:add(f[{lua_str(p + '.length')}], tvb(off, 2))",
        f"    if seq ~= UInt64(0) then b:add(f[{lua_str(p + '.msgseq')}], tvb(10, 8), seq + i) end",
        f"    b:add(f[{lua_str(p + '.type')}], tvb(off + 2, 1))",
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
        f"p.prefs.ports = Pref.range(\"UDP ports\", {lua_str(','.join(str(x) for x in o.ports))}, \"feeds and retransmissions\", 65535)",
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
