"""Multicast sender sockets, one per NIC, so feed A leaves only through NIC A (docs/architecture.md, "Multicast on Linux").

IP_MULTICAST_IF is set by interface index (struct ip_mreqn), so the choice does not
depend on routes; the socket is non-blocking, so one feed's full queue never delays the
other feed: the send error is returned to the caller to count, never raised.
"""

from __future__ import annotations

import errno
import socket
import struct

__all__ = ["open_sender", "send_datagram", "set_multicast_out", "SEND_OK"]

SEND_OK = 0


def set_multicast_out(s: socket.socket, interface: str, ttl: int, loop: bool = True) -> None:
    """Multicast sent on `s` leaves through `interface` (by index) with `ttl`; `loop`: this host's own members hear it."""
    ifindex = socket.if_nametoindex(interface)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack("=4s4si", b"\0" * 4, b"\0" * 4, ifindex))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if loop else 0)


def open_sender(interface: str, ttl: int = 0, loop: bool = True, source_address: str = "", sndbuf_bytes: int = 4 << 20) -> socket.socket:
    """A UDP socket whose multicast leaves through `interface` with `ttl`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        set_multicast_out(s, interface, ttl, loop)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf_bytes)
        if source_address:
            s.bind((source_address, 0))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def send_datagram(sock: socket.socket, data: bytes | memoryview, address: tuple[str, int]) -> int:
    """Send; return SEND_OK or the errno of a refused send (the caller counts it and goes on)."""
    try:
        sock.sendto(data, address)
    except BlockingIOError:
        return errno.EWOULDBLOCK
    except OSError as exc:
        return exc.errno or errno.EIO
    return SEND_OK
