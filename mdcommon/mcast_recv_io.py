"""Multicast receiver sockets, one per feed, so feed A is only what arrives on NIC A (docs/architecture.md, "Multicast on Linux").

IP_MULTICAST_ALL (option 49, missing from Python's socket module) is switched off,
because its default of 1 makes a socket bound to a group receive every group any socket
on the host joined; the socket is bound to the group address and joined on the feed's
interface by index.

With `sources`, the join is source-specific (MCAST_JOIN_SOURCE_GROUP, RFC 3678, one per
sender): the kernel delivers only those senders' datagrams, so another host on the LAN
cannot inject well-formed datagrams of our session, and the switch can prune by source
(IGMPv3).
"""

from __future__ import annotations

import socket
import struct

__all__ = ["open_receiver", "group_source_req", "IP_MULTICAST_ALL", "MCAST_JOIN_SOURCE_GROUP"]

IP_MULTICAST_ALL = 49
MCAST_JOIN_SOURCE_GROUP = getattr(socket, "MCAST_JOIN_SOURCE_GROUP", 46)  # linux/in.h


def _sockaddr_storage_in(address: str) -> bytes:
    """A sockaddr_in (family, port 0, address) padded to a sockaddr_storage (128 bytes)."""
    return struct.pack("=H2s4s", socket.AF_INET, b"\0\0", socket.inet_aton(address)).ljust(128, b"\0")


def group_source_req(ifindex: int, group: str, source: str) -> bytes:
    """struct group_source_req: the interface index, then two sockaddr_storage (8-byte aligned: 4 bytes of padding)."""
    return struct.pack("=I4x", ifindex) + _sockaddr_storage_in(group) + _sockaddr_storage_in(source)


def open_receiver(interface: str, group: str, port: int, rcvbuf_bytes: int = 4 << 20,
                  sources: list[str] | tuple[str, ...] = ()) -> tuple[socket.socket, int]:
    """(non-blocking socket, receive buffer the kernel granted); with `sources`, only their datagrams arrive."""
    ifindex = socket.if_nametoindex(interface)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        s.bind((group, port))
        if sources:
            for source in sources:
                s.setsockopt(socket.IPPROTO_IP, MCAST_JOIN_SOURCE_GROUP, group_source_req(ifindex, group, source))
        else:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("=4s4si", socket.inet_aton(group), b"\0" * 4, ifindex))
        s.setblocking(False)
        granted = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        s.close()
        raise
    return s, granted
