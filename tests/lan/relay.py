"""A seeded userspace wire for delay, jitter, reordering and duplication (this kernel has no netem).

    python -m tests.lan.relay LEFT RIGHT [--delay-ms 2 --jitter-ms 1 --reorder 0.1 --dup 0.05 --loss 0 --seed 7]

Run inside the LAN namespace, it moves Ethernet frames between two interfaces with AF_PACKET
sockets: LEFT faces the publisher, RIGHT the bridge. Frames from LEFT that are IPv4 UDP to a
multicast group are impaired; everything else (ARP, IGMP, unicast NACKs and their answers)
passes unimpaired both ways. Semantics follow netem: each impaired frame is delayed by
`delay ± uniform(jitter)`, so jitter larger than the spacing of frames reorders them; with
probability `reorder` a frame skips the delay queue; with probability `dup` it is sent twice.
One thread, one selector, a heap of frames due; the same seed gives the same decisions.
SIGTERM makes it print its counters as one JSON line and exit.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import selectors
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23


def packet_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # else our own sends come back: a loop
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    return s


def is_multicast_udp(frame: bytes) -> bool:
    return len(frame) >= 34 and frame[12:14] == b"\x08\x00" and frame[23] == 17 and 224 <= frame[30] <= 239


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lan.relay")
    ap.add_argument("left")
    ap.add_argument("right")
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--dup", type=float, default=0.0)
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    left, right = packet_socket(args.left), packet_socket(args.right)
    sel = selectors.DefaultSelector()
    sel.register(left, selectors.EVENT_READ, right)
    sel.register(right, selectors.EVENT_READ, left)
    due: list[tuple[float, int, bytes]] = []
    counts = {"frames": 0, "impaired": 0, "lost": 0, "duplicated": 0, "reordered": 0, "delayed": 0, "passed": 0}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    order = 0
    delay, jitter = args.delay_ms / 1000, args.jitter_ms / 1000
    while not stopping:
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, frame = heapq.heappop(due)
            right.send(frame)
        timeout = max(0.0, due[0][0] - now) if due else 0.2
        for key, _ in sel.select(timeout):
            src, dst = key.fileobj, key.data
            for _ in range(64):
                try:
                    frame = src.recv(65535)
                except BlockingIOError:
                    break
                counts["frames"] += 1
                if src is right or not is_multicast_udp(frame):
                    counts["passed"] += 1
                    dst.send(frame)
                    continue
                counts["impaired"] += 1
                if rng.random() < args.loss:
                    counts["lost"] += 1
                    continue
                copies = 2 if rng.random() < args.dup else 1
                counts["duplicated"] += copies - 1
                for _ in range(copies):
                    if delay <= 0 and jitter <= 0:
                        dst.send(frame)
                    elif rng.random() < args.reorder:
                        counts["reordered"] += 1
                        dst.send(frame)
                    else:
                        counts["delayed"] += 1
                        order += 1
                        heapq.heappush(due, (time.monotonic() + max(0.0, delay + rng.uniform(-jitter, jitter)), order, frame))
    for _, _, frame in sorted(due):
        right.send(frame)
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
