"""Interop with code nobody here wrote: Wireshark's built-in `moldudp64` dissector reads our datagrams.

Needs tshark (Debian package). Skipped locally without it; fails in CI (MD_REQUIRE_ALL=1).
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import decode_datagram, encode_datagram, encode_end_of_session, encode_heartbeat
from tests.conftest import need_tool

PORT = 31001
SAMPLES = [
    (b"S", 1, ord("S"), SCHEMA_FINGERPRINT),
    (b"R", 2, 7, "ACME", -4),
    (b"Q", 3, 7, 1_234_500, 100, 1_234_600, 200),
    (b"T", 4, 7, 1_234_500, 50, ord("S"), 99),
    (b"F", 5, 7, 16, 2, -1_000),
    (b"I", 6, 7, "ACME", -4, ((1, 2, 1_234_500), (7, 1, 900))),
    (b"G", 7, 1_000, 1),
    (b"J", 8, ord("O"), 1, 10, 0, 500, 2_000),
]


def build_datagrams() -> list[bytes]:
    rng = random.Random(5)
    out: list[bytes] = []
    seq = 1
    for instance in (1, 2):
        session = make_session(SCHEMA_FINGERPRINT, instance)
        for _ in range(150):
            kind = rng.random()
            if kind < 0.08:
                out.append(encode_heartbeat(session, seq))
            else:
                msgs = [rng.choice(SAMPLES) for _ in range(rng.randint(1, 25))]
                out.append(encode_datagram(session, seq, [CODECS.encode(m) for m in msgs]))
                seq += len(msgs)
        out.append(encode_end_of_session(session, seq))
    return out


def write_pcap(path: Path, payloads: list[bytes]) -> None:
    from scapy.all import IP, UDP, Ether, wrpcap

    wrpcap(str(path), [Ether() / IP(src="127.0.0.1", dst="239.194.1.1") / UDP(sport=40000, dport=PORT) / p for p in payloads])


def test_wireshark_moldudp64_dissector_agrees(tmp_path: Path) -> None:
    tshark = need_tool("tshark")
    datagrams = build_datagrams()
    pcap = tmp_path / "ours.pcap"
    write_pcap(pcap, datagrams)
    fields = ["moldudp64.session", "moldudp64.sequence", "moldudp64.count", "moldudp64.msglen",
              "moldudp64.msgseq", "moldudp64.msgdata", "_ws.malformed", "_ws.expert"]
    cmd = [tshark, "-r", str(pcap), "-d", f"udp.port=={PORT},moldudp64", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]
    for f in fields:
        cmd += ["-e", f]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    rows = [line.split("|") for line in result.stdout.splitlines()]
    assert len(rows) == len(datagrams)
    for row, datagram in zip(rows, datagrams):
        session, seq, count, msgs = decode_datagram(datagram, CODECS)
        t_session, t_seq, t_count, t_lens, t_seqs, t_data, malformed, expert = row
        assert (t_session, int(t_seq), int(t_count)) == (session.decode("ascii"), seq, count)
        blocks = [CODECS.encode(m) for m in msgs]
        assert [int(x) for x in t_lens.split(",") if x] == [len(b) for b in blocks]
        assert [int(x) for x in t_seqs.split(",") if x] == list(range(seq, seq + len(blocks)))
        assert [bytes.fromhex(x.replace(":", "")) for x in t_data.split(",") if x] == blocks
        assert malformed == "", f"Wireshark found packet {seq} malformed: {malformed}"
        if count == 0xFFFF:
            # Wireshark's dissector notes every 20-byte packet with a non-zero count as a
            # request ("Number of Requested Messages", severity Comment); end of session is
            # 20 bytes with count 0xFFFF by the spec, so that note, and only it, is expected.
            assert expert in ("", "Expert Info (Comment/Comment): Number of Requested Messages"), expert
        else:
            assert expert == "", f"Wireshark flagged packet {seq}: {expert}"
