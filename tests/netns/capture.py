"""Run inside a namespace: count UDP datagrams per (interface, destination group:port) with AF_PACKET.

    python -m tests.netns.capture SECONDS IFACE [IFACE ...]   -> JSON on stdout

Packet sockets see exactly what crossed each NIC, independent of any group membership,
so a datagram of feed B on NIC A cannot hide.
"""

from __future__ import annotations

import json
import selectors
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003


def main() -> int:
    seconds = float(sys.argv[1])
    socks = {}
    sel = selectors.DefaultSelector()
    for iface in sys.argv[2:]:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((iface, 0))
        s.setblocking(False)
        socks[iface] = s
        sel.register(s, selectors.EVENT_READ, iface)
    seen: dict[str, dict[str, list[list[int]]]] = {i: {} for i in socks}  # iface -> "group:port" -> [[sequence, count]]
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in sel.select(0.1):
            while True:
                try:
                    frame, addr = key.fileobj.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] == socket.PACKET_OUTGOING or len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                    continue
                ihl = (frame[14] & 0x0F) * 4
                dst = socket.inet_ntoa(frame[30:34])
                udp = 14 + ihl
                port = struct.unpack_from(">H", frame, udp + 2)[0]
                payload = frame[udp + 8 :]
                if len(payload) >= 20:
                    seq, count = struct.unpack_from(">QH", payload, 10)
                    seen[key.data].setdefault(f"{dst}:{port}", []).append([seq, count])
    print(json.dumps(seen), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
