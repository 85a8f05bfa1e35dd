"""The generated Lua dissector, checked with real tshark: it loads, registers exactly the generator's
fields, decodes every message type to the same values as the fast codec (itself proven equal to
construct), and raises expert items on bad packets and on nothing else.

Needs tshark and luac5.2 (Debian packages); skipped locally without them, a failure in CI.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from decoders import CODECS, MESSAGES, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import HEADER, encode_datagram, encode_heartbeat
from tests.conftest import need_tool
from tests.wireshark.test_moldudp64_interop import write_pcap
from wireshark.__main__ import DEFAULT_PLUGIN, render_default
from wireshark.luagen import LuaOptions, field_names

PORT = 31001
S = make_session(SCHEMA_FINGERPRINT, 7)


def tshark(*args: str) -> subprocess.CompletedProcess:
    exe = need_tool("tshark")
    lead = list(args[:2]) if args and args[0] == "-G" else []  # -G must come first
    rest = list(args[2:]) if lead else list(args)
    r = subprocess.run([exe, *lead, "-X", f"lua_script:{DEFAULT_PLUGIN}", *rest], capture_output=True, text=True, timeout=120)
    assert "Lua:" not in r.stderr and "doesn't exist" not in r.stderr, r.stderr
    if not lead:  # the field registry itself lists _ws.lua.error; dissections must never show it
        assert "_ws.lua.error" not in r.stdout and "Lua Error" not in r.stdout
    return r


def samples(rng: random.Random) -> list[tuple]:
    big = 2**63 - 1
    return [
        (b"S", 1_700_000_000_123_456_789, ord("S"), SCHEMA_FINGERPRINT),
        (b"R", 2, 7, "ACME", -2),
        (b"Q", 3, 7, -big, 2**64 - 1, big, 0),
        (b"T", 4, 7, 12345, 10, ord("B"), rng.getrandbits(64)),
        (b"T", 5, 8, -1, 1, ord(" "), 0),
        (b"F", 6, 7, 16, 2, -123456789),
        (b"I", 7, 7, "ACME", -2, ((1, 2, 100), (7, 1, 9), (15, 4, 1))),
        (b"I", 8, 9, "", 0, ()),
        (b"G", 9, 2**64 - 1, 3),
        (b"J", 10, ord("L"), 5, 6, 7, 8, 9),
    ]


def expected(msg: tuple) -> dict[str, str]:
    """What tshark shows for a message: construct's values, as the fast codec gives them, as strings."""
    codec = CODECS.codec_for(msg)
    out = {}
    for leaf, value in zip(codec.leaves, msg):
        if codec._is_type_leaf(leaf):
            continue
        out[f"mdmold.{codec.name}.{leaf.name}"] = str(value)
    return out


def test_plugin_in_the_tree_is_current() -> None:
    assert DEFAULT_PLUGIN.read_text() == render_default(), "run: python -m wireshark"


def test_luac_and_load() -> None:
    for version in ("5.2", "5.4"):  # Wireshark 4.0-4.2 embed Lua 5.2, 4.4 and later 5.4
        luac = need_tool(f"luac{version}")
        r = subprocess.run([luac, "-p", str(DEFAULT_PLUGIN)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (version, r.stderr)
    fields = tshark("-G", "fields").stdout
    registered = {line.split("\t")[2] for line in fields.splitlines() if line.startswith("F\t") and line.split("\t")[2].startswith("mdmold.")}
    assert registered == set(field_names(MESSAGES, LuaOptions()))
    assert "udp\tmdmold\tT" in tshark("-G", "heuristic-decodes").stdout  # heuristic registered and enabled


def blocks_of(layer: dict) -> list[dict]:
    b = layer.get("mdmold.block", [])
    return b if isinstance(b, list) else [b]


def test_every_message_type_decodes_like_the_codec(tmp_path: Path) -> None:
    rng = random.Random(3)
    msgs = samples(rng)
    datagrams = [encode_datagram(S, 100, [CODECS.encode(m) for m in msgs])]
    datagrams += [encode_datagram(S, 200 + i, [CODECS.encode(m)]) for i, m in enumerate(msgs)]
    pcap = tmp_path / "all.pcap"
    write_pcap(pcap, datagrams)
    out = json.loads(tshark("-r", str(pcap), "-T", "json", "--no-duplicate-keys", "-J", "mdmold").stdout)
    got = [blocks_of(pkt["_source"]["layers"]["mdmold"]) for pkt in out]
    assert [len(g) for g in got] == [len(msgs)] + [1] * len(msgs)
    for block, msg in zip(got[0], msgs):
        codec = CODECS.codec_for(msg)
        tree = block[f"mdmold.{codec.name}"]
        for key, value in expected(msg).items():
            shown = tree[key]
            node = next(leaf.node for leaf in codec.leaves if f"mdmold.{codec.name}.{leaf.name}" == key)
            if hasattr(node, "mapping") and node.mapping:  # enums show their name with the value
                name = next(n for n, v in node.mapping if str(v) == value)
                assert shown.startswith(name) or shown == value or f"({value})" in shown, (key, shown)
            else:
                assert shown == value, (key, shown, value)
        if codec.name == "record_image":
            items = tree.get("mdmold.record_image.fields", [])
            items = items if isinstance(items, list) else [items]
            assert [(i["mdmold.record_image.fields.field_id"], i["mdmold.record_image.fields.value"]) for i in items] == \
                [(str(a), str(c)) for a, _, c in msg[5]]
    quote = got[0][2]["mdmold.quote"]
    assert quote["mdmold.quote.bid_price.scaled"] == "-92233720368547758.07"  # exponent -2 from the directory entry for 7
    assert quote["mdmold.quote.timestamp_ns.time"].endswith("UTC")
    assert [b["mdmold.msgseq"] for b in got[0]] == [str(100 + i) for i in range(len(msgs))]


def expert_messages(pkt: dict) -> str:
    return json.dumps(pkt["_source"]["layers"].get("mdmold", {}))


def test_expert_items_on_bad_packets_and_nothing_else(tmp_path: Path) -> None:
    q = CODECS.encode((b"Q", 1, 2, 3, 4, 5, 6))
    good = [encode_datagram(S, 1, [q, q]), encode_heartbeat(S, 3)]
    bad = {
        "truncated": HEADER.pack(S, 1, 1)[:15],
        "block_past_end": HEADER.pack(S, 1, 1) + b"\x00\x2d" + q[:10],
        "count_mismatch": HEADER.pack(S, 1, 3) + b"\x00\x2d" + q,
        "unknown_type": HEADER.pack(S, 1, 1) + b"\x00\x03Zab",
        "length_mismatch": HEADER.pack(S, 1, 1) + b"\x00\x2c" + q[:44],
        "schema_mismatch": encode_datagram(b"ZZZZ000001", 1, [q]),
    }
    pcap = tmp_path / "bad.pcap"
    write_pcap(pcap, good + list(bad.values()))
    out = json.loads(tshark("-r", str(pcap), "-T", "json", "--no-duplicate-keys").stdout)
    assert len(out) == len(good) + len(bad)
    for pkt in out[: len(good)]:
        assert "_ws.expert" not in expert_messages(pkt), expert_messages(pkt)
    for (kind, _), pkt in zip(bad.items(), out[len(good):]):
        text = expert_messages(pkt)
        assert f"mdmold.{kind}" in text, (kind, text)
    r = tshark("-r", str(pcap), "-Y", "mdmold.unknown_type || mdmold.schema_mismatch", "-T", "fields", "-e", "frame.number")
    assert r.stdout.split() == [str(len(good) + 4), str(len(good) + 6)]


def test_fuzzed_capture_raises_no_lua_error(tmp_path: Path) -> None:
    editcap = need_tool("editcap")
    rng = random.Random(9)
    datagrams = [encode_datagram(S, 1 + 10 * i, [CODECS.encode(m) for m in samples(rng)]) for i in range(200)]
    pcap, fuzz = tmp_path / "ok.pcap", tmp_path / "fuzz.pcap"
    write_pcap(pcap, datagrams)
    subprocess.run([editcap, "-E", "0.05", "-o", "60", str(pcap), str(fuzz)], check=True, capture_output=True, timeout=60)
    r = tshark("-r", str(fuzz), "-Y", "_ws.lua.error", "-T", "fields", "-e", "frame.number")
    assert r.stdout.strip() == ""


@pytest.mark.parametrize("flag", ["--no-heuristic"])
def test_generator_options(tmp_path: Path, flag: str) -> None:
    from wireshark.__main__ import main

    out = tmp_path / "x.lua"
    assert main(["--out", str(out), "--proto", "xmd", "--ports", "40000", flag]) == 0
    text = out.read_text()
    assert 'Proto("xmd"' in text and "register_heuristic" not in text and '"40000"' in text


def test_gaps_per_feed_and_ab_copies_across_packets(tmp_path: Path) -> None:
    from scapy.all import IP, UDP, Ether, wrpcap

    q = CODECS.encode((b"Q", 1, 2, 3, 4, 5, 6))
    datagrams = [encode_datagram(S, 1 + 2 * i, [q, q]) for i in range(5)]
    packets = []
    for i, d in enumerate(datagrams):
        if i != 2:  # A loses the third datagram (sequences 5..6)
            packets.append(Ether() / IP(src="10.0.0.1", dst="239.194.1.1") / UDP(sport=1, dport=31001) / d)
        packets.append(Ether() / IP(src="10.0.0.2", dst="239.194.2.1") / UDP(sport=1, dport=31002) / d)
    pcap = tmp_path / "ab.pcap"
    wrpcap(str(pcap), packets)
    rows = tshark("-r", str(pcap), "-T", "fields", "-E", "separator=|", "-e", "frame.number", "-e", "mdmold.gap_first",
                  "-e", "mdmold.gap_last", "-e", "mdmold.copy_of").stdout.split()
    assert rows == ["1|||", "2|||1", "3|||", "4|||3", "5|||", "6|5|6|", "7|||6", "8|||", "9|||8"]
