"""A bad receiver: learns the session from feed A, then floods re-request servers (or a request group) with NACKs.

    python -m tests.lan.bad_apple --interface lana --group 239.194.1.1 --port 31001 \
        --server 10.202.1.21:31101 --server 10.202.1.22:31101 --seconds 5

Each request asks for the largest range the servers accept at a random point of the
history seen so far, at `--rate` per server or as fast as the socket allows, answers unread. Prints how many it sent.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time

from decoders.moldudp64 import decode_header, encode_request
from mdcommon.mcast_recv_io import open_receiver
from mdcommon.mcast_send_io import set_multicast_out


def learn_session(interface: str, group: str, port: int) -> tuple[socket.socket, bytes, int]:
    """Join the feed; (non-blocking socket, session, next sequence) once a data datagram has been seen."""
    feed, _ = open_receiver(interface, group, port, 1 << 20)
    feed.settimeout(10)
    session, head = b"", 1
    while not session or head < 2:
        session, seq, count = decode_header(feed.recv(2048))
        if count < 0xFFFE:
            head = max(head, seq + count)
    feed.setblocking(False)
    return feed, session, head


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lan.bad_apple")
    ap.add_argument("--interface", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server", action="append", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=0.0, help="requests/s to each server; 0 = as fast as the socket allows")
    ap.add_argument("--multicast-if", default="", help="send through this NIC (a --server that is a request group)")
    args = ap.parse_args(argv)
    feed, session, head = learn_session(args.interface, args.group, args.port)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if args.multicast_if:
        set_multicast_out(out, args.multicast_if, 1)
    out.setblocking(False)
    servers = [(h, int(p)) for h, _, p in (s.rpartition(":") for s in args.server)]
    rng = random.Random(5)
    sent = errors = 0
    start = time.monotonic()
    deadline = start + args.seconds
    while time.monotonic() < deadline:
        if args.rate and sent >= (time.monotonic() - start) * args.rate * len(servers):
            time.sleep(0.0005)
            continue
        try:
            while True:
                _, seq, count = decode_header(feed.recv(2048))
                head = max(head, seq + count)
        except (BlockingIOError, ValueError):
            pass
        for server in servers:
            first = rng.randrange(1, max(2, head - args.count))
            try:
                out.sendto(encode_request(session, first, args.count), server)
                sent += 1
            except OSError:
                errors += 1
    print(json.dumps({"sent": sent, "send_errors": errors, "head": head}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
