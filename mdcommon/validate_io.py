"""Start-up checks of a daemon's network configuration, with errors that say how to fix them.

Where users of multicast systems lose the most time: a wrong interface name, a group
that is not multicast, a port already taken, a receive buffer silently capped by
`net.core.rmem_max`, a sender bound to an address its NIC does not have. Each check
raises `ConfigError` with the fix in its text. The host is read through `netifaces`
(interfaces and their addresses) and by binding (ports), so this is an I/O module.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import netifaces

__all__ = ["ConfigError", "check_feed", "check_interface", "check_interface_address", "check_multicast_group", "check_port",
           "check_unicast_port_free", "interface_addresses", "rmem_max", "check_rcvbuf"]


class ConfigError(ValueError):
    """A configuration that cannot work; the message says what to change."""


def interfaces() -> list[str]:
    return sorted(netifaces.interfaces())


def interface_addresses(name: str) -> list[str]:
    """The IPv4 addresses of interface `name` (none if it has none or does not exist)."""
    try:
        return [a["addr"] for a in netifaces.ifaddresses(name).get(netifaces.AF_INET, []) if "addr" in a]
    except ValueError:
        return []


def check_interface(name: str, what: str = "interface") -> None:
    """ConfigError listing the interfaces that exist, if `name` is not one of them."""
    if name not in netifaces.interfaces():
        raise ConfigError(f"{what} {name!r} does not exist on this host; interfaces here: {', '.join(interfaces())}")


def check_interface_address(interface: str, address: str, what: str) -> None:
    """A sender bound to `address` must own it on `interface`, or its datagrams leave another NIC or not at all."""
    if not address:
        return
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise ConfigError(f"{what} {address!r} is not an IPv4 address") from None
    owned = interface_addresses(interface)
    if address not in owned:
        raise ConfigError(f"{what} {address} is not an address of {interface} (its IPv4 addresses: {', '.join(owned) or 'none'}); "
                          f"use one of them, or leave it empty to let the kernel pick")


def check_multicast_group(group: str, what: str = "group") -> str:
    try:
        addr = ipaddress.IPv4Address(group)
    except ValueError:
        raise ConfigError(f"{what} {group!r} is not an IPv4 address") from None
    if not addr.is_multicast:
        raise ConfigError(f"{what} {group} is not a multicast address (224.0.0.0/4; use 239.0.0.0/8 on a LAN)")
    return group


def check_feed(interface: str, group: str, port: int, what: str, sources: list | tuple = ()) -> None:
    """One feed's interface, multicast group, port and accepted senders (`what` prefixes the keys in the messages)."""
    check_interface(interface, f"{what}.interface")
    check_multicast_group(group, f"{what}.group")
    check_port(port, f"{what}.port")
    for source in sources:
        try:
            addr = ipaddress.IPv4Address(source)
        except (ValueError, TypeError):
            raise ConfigError(f"{what}.sources: {source!r} is not an IPv4 address") from None
        if addr.is_multicast or addr.is_unspecified or addr == ipaddress.IPv4Address("255.255.255.255"):
            raise ConfigError(f"{what}.sources: {source} is not a sender's (unicast) address")
    if len(set(sources)) != len(sources):
        raise ConfigError(f"{what}.sources lists an address twice")


def check_port(port: int, what: str = "port") -> int:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{what} {port!r} is not a port number (1..65535)")
    return port


def check_unicast_port_free(address: str, port: int, kind: int = socket.SOCK_DGRAM, what: str = "port") -> None:
    """Raise if `address:port` cannot be bound (already in use, or not an address of this host)."""
    s = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
    except OSError as exc:
        raise ConfigError(f"{what} {address}:{port} cannot be bound: {exc.strerror} (another process using it, or not an address of this host)") from None
    finally:
        s.close()


def rmem_max(proc: Path = Path("/proc/sys/net/core/rmem_max")) -> int | None:
    try:
        return int(proc.read_text().strip())
    except (OSError, ValueError):
        return None


def check_rcvbuf(requested_bytes: int, granted_bytes: int) -> str | None:
    """A warning text when the kernel granted less receive buffer than asked (Linux reports double)."""
    if granted_bytes >= requested_bytes * 2 or granted_bytes >= requested_bytes:
        return None
    cap = rmem_max()
    return (
        f"receive buffer capped at {granted_bytes} bytes (asked {requested_bytes}; net.core.rmem_max={cap}): "
        f"bursts will be lost. Raise it: sysctl -w net.core.rmem_max={requested_bytes}"
    )
