"""Capture files: our writer, the formats users bring, damaged files, and offline replay verdicts."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import encode_datagram
from decoders.pcap import PcapError, PcapWriter, ReadCounters, read_udp
from linehandler.replay import replay
from tests.unit.handler_harness import Published

A, B = ("239.194.1.1", 31001), ("239.194.2.1", 31002)


def udp_frame(payload: bytes, dst: str = A[0], dport: int = A[1], vlan: bool = False, frag: bool = False, proto: int = 17) -> bytes:
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0x2000 if frag else 0x4000, 1, proto, 0,
                     bytes([127, 0, 0, 1]), bytes(int(x) for x in dst.split(".")))
    udp = struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0)
    eth = b"\x01\x00\x5e\x42\x01\x01" + b"\x02" * 6 + ((b"\x81\x00\x00\x07") if vlan else b"") + b"\x08\x00"
    return eth + ip + udp + payload


def pcap_bytes(frames: list[bytes], order: str = "<", ns: bool = False, link: int = 1, snaplen: int = 65535) -> bytes:
    out = struct.pack(order + "IHHiIII", 0xA1B23C4D if ns else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, link)
    for i, f in enumerate(frames):
        cut = f[:snaplen]
        out += struct.pack(order + "IIII", 1_700_000_000 + i, 5, len(cut), len(f)) + cut
    return out


def test_writer_round_trip_and_rotation(tmp_path: Path) -> None:
    w = PcapWriter(tmp_path / "c.pcap", max_bytes=2000)
    for i in range(40):
        w.write(1_700_000_000_000_000_000 + i, "10.1.1.1", 5000, A[0], A[1], bytes([i]) * 60)
    w.close()
    assert len(w.files) > 2 and all(p.stat().st_size <= 2000 for p in w.files)
    got = [d for p in w.files for d in read_udp(p)]
    assert [d[5] for d in got] == [bytes([i]) * 60 for i in range(40)]
    assert got[3][:5] == (1_700_000_000_000_000_003, "10.1.1.1", 5000, A[0], A[1])


def test_formats_users_bring(tmp_path: Path) -> None:
    payloads = [bytes([i]) * 30 for i in range(3)]
    cases = {
        "little-endian µs": pcap_bytes([udp_frame(p) for p in payloads]),
        "big-endian ns": pcap_bytes([udp_frame(p) for p in payloads], ">", ns=True),
        "vlan tagged": pcap_bytes([udp_frame(p, vlan=True) for p in payloads]),
        "linux cooked": pcap_bytes([b"\x00\x00\x03\x04\x00\x06" + b"\x02" * 6 + b"\x00\x00\x08\x00" + udp_frame(p)[14:] for p in payloads], link=113),
        "raw ip": pcap_bytes([udp_frame(p)[14:] for p in payloads], link=101),
    }
    for name, data in cases.items():
        f = tmp_path / "x.pcap"
        f.write_bytes(data)
        got = list(read_udp(f))
        assert [d[5] for d in got] == payloads, name
        assert got[0][0] == 1_700_000_000 * 10**9 + (5 if "ns" in name else 5000), name


def test_pcapng_from_scapy(tmp_path: Path) -> None:
    from scapy.all import IP, UDP, Ether
    from scapy.utils import PcapNgWriter

    path = tmp_path / "x.pcapng"
    w = PcapNgWriter(str(path))
    for i in range(3):
        pkt = Ether() / IP(src="127.0.0.1", dst=A[0]) / UDP(sport=1, dport=A[1]) / (bytes([i]) * 20)
        pkt.time = 1_700_000_000 + i
        w.write(pkt)
    w.close()
    got = list(read_udp(path))
    assert [d[5] for d in got] == [bytes([i]) * 20 for i in range(3)] and got[1][0] // 10**9 == 1_700_000_001


def test_what_is_not_a_whole_udp_datagram_is_skipped_and_counted(tmp_path: Path) -> None:
    frames = [udp_frame(b"x" * 30), udp_frame(b"y" * 30, proto=6), udp_frame(b"z" * 30, frag=True), udp_frame(b"w" * 300),
              b"\x01" * 12 + b"\x86\xdd" + b"\x00" * 40]
    f = tmp_path / "x.pcap"
    f.write_bytes(pcap_bytes(frames, snaplen=200))
    c = ReadCounters()
    assert [d[5] for d in read_udp(f, c)] == [b"x" * 30]
    assert (c.packets, c.udp, c.non_udp, c.fragments, c.truncated, c.non_ip) == (5, 1, 1, 1, 1, 1)


def test_damaged_files_give_the_offset(tmp_path: Path) -> None:
    good = pcap_bytes([udp_frame(b"x" * 30)] * 3)
    for name, data, offset in [("not a capture", b"hello world!", 0), ("cut header", good[:20], 20),
                               ("cut record", good[:-10], 24 + 2 * (16 + 72)), ("huge length", good[:24] + struct.pack("<IIII", 0, 0, 10**6, 10**6), 24)]:
        f = tmp_path / "bad.pcap"
        f.write_bytes(data)
        with pytest.raises(PcapError) as err:
            list(read_udp(f))
        assert err.value.offset == offset, name
    f = tmp_path / "bad.pcap"
    f.write_bytes(good[:-10])
    got = []
    with pytest.raises(PcapError):
        for d in read_udp(f):
            got.append(d)
    assert len(got) == 2  # everything before the damage is still delivered


def test_offline_replay_reports_exactly_the_crafted_losses(tmp_path: Path) -> None:
    pub = Published(60)  # 20 datagrams of 3 messages
    lost_a, lost_b = {2, 5, 6, 11}, {5, 9, 11, 12}  # 5 and 11 are lost on both feeds
    w = PcapWriter(tmp_path / "c.pcap")
    t = 1_700_000_000_000_000_000
    for i, d in enumerate(pub.datagrams):
        if i not in lost_a:
            w.write(t + i * 1_000_000, "10.1.1.1", 1, A[0], A[1], d)
        if i not in lost_b:
            w.write(t + i * 1_000_000 + 20_000, "10.1.2.1", 1, B[0], B[1], d)  # B 20 µs behind A
    w.close()
    delivered: list[int] = []
    report = replay(str(tmp_path / "c.pcap"), on_message=lambda seq, msg: delivered.append(seq))
    seqs = {i: (pub.first_seq(i), pub.first_seq(i) + 2) for i in (5, 11)}
    assert [(a, b) for a, b, _ in report.lost_on_both_feeds] == [seqs[5], seqs[11]]
    assert delivered == [s for s in range(1, 61) if not any(a <= s <= b for a, b in seqs.values())]
    assert report.datagrams == {"A": 16, "B": 16}
    # A leads whenever it has the datagram (16); B is first only for 2 and 6, lost on A alone
    assert report.feeds["A"]["first_arrivals"] == 16 * 3 and report.feeds["B"]["first_arrivals"] == 2 * 3
    assert report.lead_lag_a_minus_b["-100..-10us"] == 14  # on the 20 - 6 datagrams seen on both feeds, A led by 20 µs
    again = replay(str(tmp_path / "c.pcap"))
    assert again.as_dict() == report.as_dict()  # same capture, same output


def test_schema_session_in_capture_is_ours() -> None:
    d = encode_datagram(make_session(SCHEMA_FINGERPRINT, 1), 1, [CODECS.encode((b"Q", 1, 2, 3, 4, 5, 6))])
    assert d[:4] == make_session(SCHEMA_FINGERPRINT, 9)[:4]


def test_damaged_pcapng_gives_the_offset(tmp_path: Path) -> None:
    from scapy.all import IP, UDP, Ether
    from scapy.utils import PcapNgWriter

    path = tmp_path / "x.pcapng"
    w = PcapNgWriter(str(path))
    for i in range(3):
        w.write(Ether() / IP(src="127.0.0.1", dst=A[0]) / UDP(sport=1, dport=A[1]) / (bytes([i]) * 20))
    w.close()
    data = path.read_bytes()
    path.write_bytes(data[:-6])  # the last block cut
    got = []
    with pytest.raises(PcapError) as err:
        for d in read_udp(path):
            got.append(d)
    assert len(got) == 2 and 0 < err.value.offset < len(data)
    bad = bytearray(data)
    bad[8:12] = b"\x00\x00\x00\x00"  # byte-order magic of the section header
    path.write_bytes(bytes(bad))
    with pytest.raises(PcapError, match="byte-order magic") as err:
        list(read_udp(path))
    assert err.value.offset == 8


def test_pcap_cli_filters_and_summary(tmp_path: Path, capsys) -> None:
    import json

    from decoders.__main__ import main

    s = make_session(SCHEMA_FINGERPRINT, 1)
    w = PcapWriter(tmp_path / "c.pcap")
    msgs = [(b"R", 1, 7, "ACME", -2), (b"Q", 2, 7, 100, 1, 101, 1), (b"T", 3, 8, 100, 5, 66, 1), (b"T", 4, 7, 101, 5, 83, 2)]
    for i, m in enumerate(msgs):
        d = encode_datagram(s, i + 1, [CODECS.encode(m)])
        w.write(1_700_000_000_000_000_000 + i, "10.1.1.1", 1, A[0], A[1], d)
        if i != 1:  # B misses sequence 2
            w.write(1_700_000_000_000_000_000 + i, "10.1.2.1", 1, B[0], B[1], d)
    w.close()
    assert main(["pcap", str(tmp_path / "c.pcap"), "--type", "trade", "--instrument", "7", "--group", f"{A[0]}:{A[1]}"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["sequence"], x["feed"], x["instrument_id"], x["aggressor"]) for x in lines] == [(4, "A", 7, "sell")]
    assert main(["pcap", str(tmp_path / "c.pcap"), "--summary"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["feeds"]["A"] == {"datagrams": 4, "messages": 4, "gaps": 0, "missing": 0, "duplicates": 0}
    assert summary["feeds"]["B"] == {"datagrams": 3, "messages": 3, "gaps": 1, "missing": 1, "duplicates": 0}
    assert summary["message_types"] == {"trade": 4, "instrument_directory": 2, "quote": 1}


def test_paced_replay_follows_the_capture_clock(tmp_path: Path) -> None:
    import time

    pub = Published(6)
    w = PcapWriter(tmp_path / "c.pcap")
    for i, d in enumerate(pub.datagrams):
        w.write(1_700_000_000_000_000_000 + i * 100_000_000, "10.1.1.1", 1, A[0], A[1], d)  # 100 ms apart
    w.close()
    waits: list[int] = []
    t0 = time.monotonic()

    def pace(ts_ns: int) -> None:
        waits.append(ts_ns)
        delay = t0 + (ts_ns - waits[0]) / 1e9 / 2 - time.monotonic()  # speed 2
        if delay > 0:
            time.sleep(delay)

    report = replay(str(tmp_path / "c.pcap"), pace=pace)
    assert report.delivered == 6 and len(waits) == 2
    assert time.monotonic() - t0 >= 0.05


def test_wire_replay_routes_each_destination_and_counts_what_it_cannot_send(tmp_path: Path) -> None:
    """Mapped groups go to their target, other groups to the same group on `lo`, unicast is skipped,
    and a send the kernel refuses (port 0 here) is counted while the replay goes on."""
    import socket

    from mdcommon.replay_io import ReplayTarget, wire_replay

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx_port = rx.getsockname()[1]
    rx.settimeout(2)
    w = PcapWriter(tmp_path / "c.pcap")
    for i in range(5):
        w.write(1_700_000_000_000_000_000 + i, "10.1.1.1", 5000, A[0], A[1], b"mapped%d" % i)
        w.write(1_700_000_000_000_000_000 + i, "10.1.1.1", 5000, "10.9.9.9", 4000, b"unicast")
        w.write(1_700_000_000_000_000_000 + i, "10.1.1.1", 5000, B[0], B[1], b"refused")
    w.close()
    # A is mapped to a unicast port on this host (readable without a multicast join); B to port 0: refused
    mapping = {A: ReplayTarget("lo", "127.0.0.1", rx_port), B: ReplayTarget("lo", B[0], 0)}
    try:
        r = wire_replay(tmp_path / "c.pcap", mapping, speed=0)
        got = [rx.recv(100) for _ in range(5)]
    finally:
        rx.close()
    assert got == [b"mapped%d" % i for i in range(5)]
    assert (r.sent, r.skipped_unmapped, r.send_errors) == (5, 5, 5)


def test_reader_names_every_address_right_past_its_name_cache(tmp_path: Path) -> None:
    w = PcapWriter(tmp_path / "c.pcap")
    sources = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(6000)]  # more than the cache keeps
    for i, src in enumerate(sources):
        w.write(i, src, 5000, A[0], A[1], b"x")
    w.close()
    assert [d[1] for d in read_udp(tmp_path / "c.pcap")] == sources
