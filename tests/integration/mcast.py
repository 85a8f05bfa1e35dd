"""Loopback multicast helpers for tests: unique groups/ports, and receivers joined on lo."""

from __future__ import annotations

import random
import selectors
import socket
import struct
import time

IP_MULTICAST_ALL = 49


def unique_feeds() -> tuple[tuple[str, int], tuple[str, int]]:
    """Two (group, port) pairs unlikely to collide with another test running at the same time."""
    rng = random.SystemRandom()
    x = rng.randrange(1, 250)
    port = rng.randrange(20000, 60000, 2)
    return (f"239.195.{x}.1", port), (f"239.195.{x}.2", port + 1)


def receiver(group: str, port: int, interface: str = "lo") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((group, port))
    mreqn = struct.pack("=4s4si", socket.inet_aton(group), b"\0" * 4, socket.if_nametoindex(interface))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
    s.setblocking(False)
    return s


def collect(socks: dict[str, socket.socket], until: callable, timeout_s: float) -> dict[str, list[bytes]]:
    """Drain every socket until `until(got)` is true or the time runs out."""
    sel = selectors.DefaultSelector()
    for name, s in socks.items():
        sel.register(s, selectors.EVENT_READ, name)
    got: dict[str, list[bytes]] = {name: [] for name in socks}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(got):
            for key, _ in sel.select(timeout=0.05):
                while True:
                    try:
                        got[key.data].append(key.fileobj.recv(65536))
                    except BlockingIOError:
                        break
    finally:
        sel.close()
    return got
