"""The generator on someone else's schema: every supported construct, decoded by tshark as construct parses it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from decoders import fingerprint, schema_tag
from decoders.ir import UnsupportedConstruct
from decoders.moldudp64 import encode_datagram
from tests.conftest import need_tool
from tests.wireshark.general_schema import MESSAGES, Everything
from tests.wireshark.test_moldudp64_interop import write_pcap
from wireshark.luagen import LuaOptions, generate


def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "general.lua"
    fp = fingerprint(MESSAGES)
    path.write_text(generate(MESSAGES, schema_tag(fp), fp, LuaOptions(proto="gen", description="General schema", ports=(31005,))))
    return path


def test_unsupported_constructs_are_refused_by_path() -> None:
    from construct import Float32b, Struct

    from decoders import ir
    from wireshark.lua_emit import Emitter

    with pytest.raises(UnsupportedConstruct, match="m.f"):
        Emitter("x").node(ir.walk(Struct("f" / Float32b), "m", "m").fields[0], "x.m", "t", "ctx", "")


def test_every_construct_decodes_like_construct(tmp_path: Path) -> None:
    tshark = need_tool("tshark")
    values = [
        dict(stamp=2**47 + 5, little=-7, flags=dict(low=True, mid=False, high=True), bits=dict(wide=2**39 + 3, narrow=100, on=True),
             name="hello", label="lbl", kind="large", body=dict(a=513, b=7), n=2, points=[dict(x=1, y=2), dict(x=3, y=4)],
             extra=99, tail=[9, 8, 7]),
        dict(stamp=1, little=5, flags=dict(low=False, mid=True, high=False), bits=dict(wide=1, narrow=0, on=False), name="",
             label="", kind="small", body=dict(a=3), n=1, points=[dict(x=65535, y=0)], extra=None, tail=[]),
    ]
    blobs = [Everything.build(v) for v in values]
    path = plugin(tmp_path)
    luac = need_tool("luac5.2")
    assert subprocess.run([luac, "-p", str(path)], capture_output=True).returncode == 0
    pcap = tmp_path / "g.pcap"
    write_pcap(pcap, [encode_datagram(b"ZZZZ000001", 1 + i, [b]) for i, b in enumerate(blobs)])
    r = subprocess.run([tshark, "-X", f"lua_script:{path}", "-r", str(pcap), "-d", "udp.port==31001,gen", "-T", "json",
                        "--no-duplicate-keys", "-J", "gen"], capture_output=True, text=True, timeout=60)
    assert "Lua:" not in r.stderr and "_ws.lua.error" not in r.stdout, r.stderr + r.stdout[:2000]
    packets = json.loads(r.stdout)
    for pkt, blob in zip(packets, blobs):
        parsed = Everything.parse(blob)
        e = pkt["_source"]["layers"]["gen"]["gen.block"]["gen.everything"]
        p = "gen.everything."
        assert e[p + "stamp"] == str(parsed.stamp)
        assert e[p + "little"] == str(parsed.little)
        flags = e[p + "flags_tree"]  # a valued item with children: its subtree is <field>_tree
        for name in ("low", "mid", "high"):
            assert flags[f"{p}flags.{name}"] == ("1" if parsed.flags[name] else "0"), name
        bits = e[p + "bits"]  # a subtree anchor: its children under the field itself
        assert bits[p + "bits.wide"] == str(parsed.bits.wide) and bits[p + "bits.narrow"] == str(parsed.bits.narrow)
        assert bits[p + "bits.on"] == str(int(parsed.bits.on))
        assert e[p + "name"] == parsed.name and e[p + "label"] == parsed.label
        assert e[p + "kind"] == str(int(parsed.kind))
        assert {k.rsplit(".", 1)[1]: int(v) for k, v in e[p + "body"].items()} == {k: v for k, v in parsed.body.items() if k != "_io"}
        points = e[p + "points"]
        points = points if isinstance(points, list) else [points]
        assert [(q[p + "points.x"], q[p + "points.y"]) for q in points] == [(str(q.x), str(q.y)) for q in parsed.points]
        assert e[p + "double_n"] == str(parsed.double_n)
        assert e.get(p + "extra") == (str(parsed.extra) if parsed.extra is not None else None)
        tail = e.get(p + "tail", [])
        tail = tail if isinstance(tail, list) else [tail]
        assert [t[p + "tail.tail"] for t in tail] == [str(x) for x in parsed.tail]
        assert "gen.length_mismatch" not in json.dumps(e) and "gen.bad_const" not in json.dumps(e)
