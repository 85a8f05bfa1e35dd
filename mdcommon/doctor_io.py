"""The multicast doctor: why is a feed not arriving, and what command fixes it.

Each check returns findings (OK, WARN or FAIL, what was seen, the fix). Receivers are
checked for the causes users of multicast systems lose the most time on: the interface
(missing, down), reverse-path filtering, a receive buffer capped by `net.core.rmem_max`,
a firewall rule dropping the group, the join itself (on the right interface, with
IP_MULTICAST_ALL off), and finally whether datagrams arrive, of our schema, within a
timeout. Publishers are checked for interface, TTL and loopback.
"""

from __future__ import annotations

import selectors
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from decoders import SCHEMA_TAG
from decoders.moldudp64 import HEADER_SIZE

from .mcast_recv import IP_MULTICAST_ALL, open_receiver
from .validate import interfaces, rmem_max

__all__ = ["Finding", "check_interface_state", "check_rp_filter", "check_rmem", "check_firewall", "check_receive", "check_sender",
           "render"]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
IFF_UP, IFF_MULTICAST = 0x1, 0x1000


@dataclass(frozen=True)
class Finding:
    level: str
    check: str
    detail: str
    fix: str = ""


def _sysfs(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def check_interface_state(name: str, what: str) -> list[Finding]:
    flags = _sysfs(f"/sys/class/net/{name}/flags")
    if flags is None:
        return [Finding(FAIL, f"{what} interface", f"{name!r} does not exist; interfaces here: {', '.join(interfaces())}",
                        f"set {what}.interface to one of them")]
    value = int(flags, 16)
    out = []
    if not value & IFF_UP:
        out.append(Finding(FAIL, f"{what} interface", f"{name} is down", f"ip link set {name} up"))
    else:
        out.append(Finding(OK, f"{what} interface", f"{name} exists and is up"))
    if name != "lo" and not value & IFF_MULTICAST:
        out.append(Finding(WARN, f"{what} interface", f"{name} has no MULTICAST flag", f"ip link set {name} multicast on"))
    return out


def check_rp_filter(name: str, what: str) -> list[Finding]:
    values = [_sysfs(f"/proc/sys/net/ipv4/conf/{n}/rp_filter") for n in ("all", name)]
    effective = max(int(v) for v in values if v is not None) if any(v is not None for v in values) else 0
    if effective == 1:
        return [Finding(WARN, f"{what} rp_filter", f"strict reverse-path filtering on {name}: multicast from a source not routed "
                        f"back through {name} is dropped silently",
                        f"sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{name}.rp_filter=2")]
    return [Finding(OK, f"{what} rp_filter", f"rp_filter={effective} on {name}")]


def check_rmem(requested_bytes: int) -> list[Finding]:
    cap = rmem_max()
    if cap is not None and cap < requested_bytes:
        return [Finding(WARN, "receive buffer", f"net.core.rmem_max={cap} caps the {requested_bytes}-byte buffer asked for: "
                        "bursts will be lost", f"sysctl -w net.core.rmem_max={requested_bytes}")]
    return [Finding(OK, "receive buffer", f"net.core.rmem_max={cap} allows {requested_bytes} bytes")]


def check_firewall(group: str, port: int, what: str) -> list[Finding]:
    nft = shutil.which("nft")
    if nft is None:
        return [Finding(OK, f"{what} firewall", "nft not installed: no nftables ruleset to check")]
    r = subprocess.run([nft, "list", "ruleset"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return [Finding(WARN, f"{what} firewall", f"cannot read the nftables ruleset: {r.stderr.strip()}", "run the doctor as root")]
    def may_drop(ln: str) -> bool:
        if "drop" not in ln:
            return False
        if group in ln or f"dport {port}" in ln:
            return True
        return "daddr" not in ln and "dport" not in ln and ("udp" in ln or "policy drop" in ln or ln.strip() == "drop")

    hits = [ln.strip() for ln in r.stdout.splitlines() if may_drop(ln)]
    if hits:
        return [Finding(WARN, f"{what} firewall", f"nftables rules that may drop {group}:{port}: {' | '.join(hits[:3])}",
                        "nft -a list ruleset   # then: nft delete rule <family> <table> <chain> handle <n>")]
    return [Finding(OK, f"{what} firewall", f"no nftables drop rule mentions {group}:{port} or udp")]


def check_receive(feeds: dict[str, tuple[str, str, int]], rcvbuf_bytes: int, timeout_s: float) -> list[Finding]:
    """Join every feed as the handler does, then listen for `timeout_s`."""
    out: list[Finding] = []
    socks = {}
    for what, (iface, group, port) in feeds.items():
        try:
            sock, granted = open_receiver(iface, group, port, rcvbuf_bytes)
        except OSError as exc:
            out.append(Finding(FAIL, f"{what} join", f"joining {group}:{port} on {iface} failed: {exc}",
                               f"check {what}.interface and that nothing else holds the port exclusively"))
            continue
        all_off = sock.getsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL) == 0
        out.append(Finding(OK if all_off else FAIL, f"{what} join", f"joined {group}:{port} on {iface}, IP_MULTICAST_ALL "
                           f"{'off' if all_off else 'still on: other groups would leak in'}, buffer {granted} bytes"))
        socks[what] = sock
    seen = {w: 0 for w in socks}
    foreign: dict[str, set[bytes]] = {w: set() for w in socks}
    sel = selectors.DefaultSelector()
    for w, s in socks.items():
        sel.register(s, selectors.EVENT_READ, w)
    deadline = time.monotonic() + timeout_s
    while socks and time.monotonic() < deadline and not all(seen.values()):
        for key, _ in sel.select(timeout=0.1):
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            if len(data) >= HEADER_SIZE and data[:4] != SCHEMA_TAG:
                foreign[key.data].add(bytes(data[:10]))
            else:
                seen[key.data] += 1
    sel.close()
    for w, s in socks.items():
        s.close()
        iface, group, port = feeds[w]
        if seen[w]:
            out.append(Finding(OK, f"{w} traffic", f"datagrams arrive on {group}:{port}"))
        elif foreign[w]:
            out.append(Finding(FAIL, f"{w} traffic", f"datagrams arrive but of another schema version (sessions "
                               f"{', '.join(sorted(x.decode('ascii', 'replace') for x in foreign[w]))}; ours start with {SCHEMA_TAG.decode()})",
                               "run the publisher and the handler on the same release"))
        else:
            out.append(Finding(FAIL, f"{w} traffic", f"no datagram on {group}:{port} via {iface} in {timeout_s:g} s",
                               "check the publisher runs with this group and port, its TTL reaches this host, and the findings above"))
    return out


def check_sender(feeds: dict[str, tuple[str, str, int, int]]) -> list[Finding]:
    """Publisher side: interface, TTL and loopback for each feed (iface, group, port, ttl)."""
    out: list[Finding] = []
    for what, (iface, group, port, ttl) in feeds.items():
        out += check_interface_state(iface, what)
        if iface != "lo" and ttl == 0:
            out.append(Finding(WARN, f"{what} ttl", f"TTL 0 on {iface}: {group}:{port} never leaves this host", f"--{what.replace('_', '-')}-ttl 1"))
        else:
            out.append(Finding(OK, f"{what} ttl", f"TTL {ttl}"))
        if iface != "lo" and not _has_ipv4(iface):
            out.append(Finding(WARN, f"{what} route", f"{iface} has no IPv4 address: datagrams leave with a source that receivers' "
                               "rp_filter may drop", f"ip addr add <address>/<prefix> dev {iface}"))
        else:
            out.append(Finding(OK, f"{what} route", f"{iface} can source {group}:{port}"))
    out.append(Finding(OK, "loopback", "IP_MULTICAST_LOOP is on: handlers on this host receive the feeds too"))
    ifaces = {f[0] for f in feeds.values()}
    if len(ifaces) < len(feeds) and "lo" not in ifaces:
        out.append(Finding(WARN, "feed independence", "both feeds leave through the same NIC: one failure takes both",
                           "give feed_a and feed_b their own interfaces"))
    return out


def _has_ipv4(iface: str) -> bool:
    """Whether `iface` has an IPv4 address (SIOCGIFADDR)."""
    import fcntl
    import struct as _struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s.fileno(), 0x8915, _struct.pack("256s", iface.encode()[:15]))
            return True
        except OSError:
            return False


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{f.level:4}  {f.check}: {f.detail}")
        if f.fix and f.level != OK:
            lines.append(f"      fix: {f.fix}")
    return "\n".join(lines)
