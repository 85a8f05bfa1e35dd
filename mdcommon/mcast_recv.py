"""Multicast receiver sockets, one per feed, so feed A is only what arrives on NIC A (DESIGN §6).

IP_MULTICAST_ALL (option 49, missing from Python's socket module) is switched off,
because its default of 1 makes a socket bound to a group receive every group any socket
on the host joined; the socket is bound to the group address and joined on the feed's
interface by index.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["open_receiver", "IP_MULTICAST_ALL"]

IP_MULTICAST_ALL = 49


def open_receiver(interface: str, group: str, port: int, rcvbuf_bytes: int = 4 << 20) -> tuple[socket.socket, int]:
    """(non-blocking socket, receive buffer the kernel granted)."""
    ifindex = socket.if_nametoindex(interface)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        s.bind((group, port))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("=4s4si", socket.inet_aton(group), b"\0" * 4, ifindex))
        s.setblocking(False)
        granted = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        s.close()
        raise
    return s, granted
