"""The multicast doctor: why is a feed not arriving, and what command fixes it.

Each check returns findings (OK, WARN or FAIL, what was seen, the fix). Receivers are
checked for the causes users of multicast systems lose the most time on: the interface
(missing, down), reverse-path filtering, a receive buffer capped by `net.core.rmem_max`,
a firewall rule dropping the group, the join itself (on the right interface, with
IP_MULTICAST_ALL off), and finally whether datagrams arrive, of our schema, within a
timeout. Publishers are checked for interface, address, TTL and loopback. Links,
addresses and routes are read from the kernel over rtnetlink (`pyroute2`), the same
view `ip link`, `ip addr` and `ip route get` give.
"""

from __future__ import annotations

import selectors
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from decoders import SCHEMA_TAG
from decoders.moldudp64 import HEADER_SIZE

from .mcast_recv_io import IP_MULTICAST_ALL, open_receiver
from .validate_io import interfaces, rmem_max

__all__ = ["Finding", "check_interface_state", "check_rp_filter", "check_source_routes", "check_rmem", "check_firewall", "check_receive", "check_sender",
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


def _link(ipr: IPRoute, name: str):
    """The rtnetlink link message of `name`, or None."""
    index = ipr.link_lookup(ifname=name)
    return ipr.get_links(index[0])[0] if index else None


def _ipv4_addresses(ipr: IPRoute, index: int) -> list[str]:
    return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=socket.AF_INET, index=index)]


def check_interface_state(name: str, what: str) -> list[Finding]:
    """The interface exists, is up (administratively and with carrier), takes multicast, and has an IPv4 address."""
    with IPRoute() as ipr:
        link = _link(ipr, name)
        if link is None:
            return [Finding(FAIL, f"{what} interface", f"{name!r} does not exist; interfaces here: {', '.join(interfaces())}",
                            f"set {what}.interface to one of them")]
        flags, operstate = link["flags"], link.get_attr("IFLA_OPERSTATE")
        addresses = _ipv4_addresses(ipr, link["index"])
    out = []
    if not flags & IFF_UP:
        out.append(Finding(FAIL, f"{what} interface", f"{name} is down", f"ip link set {name} up"))
    elif operstate == "DOWN":
        out.append(Finding(FAIL, f"{what} interface", f"{name} is up but has no carrier (operstate DOWN): no cable or no peer",
                           f"check the cable and the switch port of {name}; ip link show {name}"))
    else:
        out.append(Finding(OK, f"{what} interface", f"{name} exists and is up (operstate {operstate}), "
                           f"IPv4 {', '.join(addresses) or 'none'}"))
    if name != "lo" and not flags & IFF_MULTICAST:
        out.append(Finding(WARN, f"{what} interface", f"{name} has no MULTICAST flag", f"ip link set {name} multicast on"))
    return out


def check_source_routes(name: str, sources: list[str] | tuple[str, ...], what: str) -> list[Finding]:
    """Each accepted sender must be routed back through the interface its feed arrives on.

    With strict reverse-path filtering (rp_filter=1) the kernel drops a datagram whose source
    it would not route out of the receiving interface, silently: the commonest reason a feed
    that `tcpdump` shows never reaches the socket.
    """
    if not sources:
        return []
    out = []
    strict = _rp_filter(name)
    with IPRoute() as ipr:
        link = _link(ipr, name)
        if link is None:
            return []
        for source in sources:
            try:
                route = ipr.route("get", dst=source)[0]
            except Exception as exc:  # pyroute2 raises NetlinkError for an unroutable address
                out.append(Finding(WARN, f"{what} route", f"no route back to sender {source}: {exc}",
                                   f"ip route add {source}/32 dev {name}"))
                continue
            oif = route.get_attr("RTA_OIF")
            via = (ipr.get_links(oif)[0].get_attr("IFLA_IFNAME") if oif else "?")
            if oif == link["index"]:
                out.append(Finding(OK, f"{what} route", f"sender {source} is routed back through {name}"))
            elif strict != 1:
                out.append(Finding(OK, f"{what} route", f"sender {source} is routed back through {via}, not {name}; "
                                   f"rp_filter={strict} on {name} accepts it"))
            else:
                out.append(Finding(WARN, f"{what} route", f"sender {source} is routed back through {via}, not {name}: with "
                                   f"rp_filter=1 its datagrams are dropped silently",
                                   f"ip route add {source}/32 dev {name}   # or: sysctl -w net.ipv4.conf.{name}.rp_filter=2"))
    return out


def _rp_filter(name: str) -> int:
    """The effective reverse-path filter mode on `name`: the larger of `all` and the interface's own."""
    values = [_sysfs(f"/proc/sys/net/ipv4/conf/{n}/rp_filter") for n in ("all", name)]
    return max((int(v) for v in values if v is not None), default=0)


def check_rp_filter(name: str, what: str) -> list[Finding]:
    effective = _rp_filter(name)
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
    with IPRoute() as ipr:
        link = _link(ipr, iface)
        return link is not None and bool(_ipv4_addresses(ipr, link["index"]))


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{f.level:4}  {f.check}: {f.detail}")
        if f.fix and f.level != OK:
            lines.append(f"      fix: {f.fix}")
    return "\n".join(lines)
