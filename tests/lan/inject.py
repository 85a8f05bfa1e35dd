"""Hostile datagrams onto a feed's group, crafted with scapy: every way a MoldUDP64 datagram can be bad.

    python -m tests.lan.inject --interface lana --group 239.194.1.1 --port 31001 --repeat 20

Learns the live session first, so that body faults arrive with the real session and are
refused for their body, not their header. Body faults carry a sequence number far ahead
of the stream, so a receiver that trusted them would show it (a gap or a wrong message)
and one that checks them refuses each exactly once. Prints the counts it sent, per kind
and per counter the receiver should move (`malformed`, `schema_mismatch`, `old_session`).
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys

from scapy.all import IP, UDP, Ether, Raw, conf, get_if_addr, get_if_hwaddr, sendp

from decoders import SCHEMA_FINGERPRINT, make_session, parse_session
from decoders.moldudp64 import encode_datagram, encode_heartbeat

from .bad_apple import learn_session

AHEAD = 1_000_000


def payloads(session: bytes, head: int, rng: random.Random) -> list[tuple[str, str, bytes]]:
    """(kind, counter the receiver should move, payload)."""
    seq = head + AHEAD
    header = struct.Struct(">10sQH")
    _, instance = parse_session(session)
    assert instance is not None
    older = make_session(SCHEMA_FINGERPRINT, max(0, instance - 1))
    return [
        ("runt", "malformed", b"\x01\x02\x03\x04\x05"),
        ("truncated_header", "malformed", session + b"\x00" * 9),
        ("count_without_blocks", "malformed", header.pack(session, seq, 3)),
        ("block_past_end", "malformed", header.pack(session, seq, 1) + struct.pack(">H", 500) + b"Q" * 10),
        ("unknown_type", "malformed", header.pack(session, seq, 1) + struct.pack(">H", 5) + b"\xee\x00\x00\x00\x00"),
        ("wrong_length_for_type", "malformed", header.pack(session, seq, 1) + struct.pack(">H", 9) + b"Q" + bytes(8)),
        ("trailing_bytes", "malformed", header.pack(session, seq, 0) + b"\x00\x01"),
        ("not_ascii_session", "malformed", bytes(rng.randrange(128, 256) for _ in range(10)) + bytes(10)),
        ("other_schema", "schema_mismatch", encode_datagram(b"ZZZZ000001", seq, [struct.pack(">H", 1) + b"S"])),
        ("older_instance", "old_session", encode_heartbeat(older, seq)),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lan.inject")
    ap.add_argument("--interface", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    _, session, head = learn_session(args.interface, args.group, args.port)
    rng = random.Random(args.seed)
    conf.verb = 0
    octets = [int(x) for x in args.group.split(".")]
    mac = f"01:00:5e:{octets[1] & 0x7F:02x}:{octets[2]:02x}:{octets[3]:02x}"
    base = Ether(src=get_if_hwaddr(args.interface), dst=mac) / IP(src=get_if_addr(args.interface), dst=args.group, ttl=1)
    frames, counts = [], {}
    for _ in range(args.repeat):
        for kind, counter, payload in payloads(session, head, rng):
            frames.append(base / UDP(sport=40000, dport=args.port) / Raw(payload))
            counts[counter] = counts.get(counter, 0) + 1
            counts[kind] = counts.get(kind, 0) + 1
    sendp(frames, iface=args.interface, inter=0.001)
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
