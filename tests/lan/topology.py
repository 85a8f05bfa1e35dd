"""A test LAN of network namespaces: LAN A and LAN B are bridges, every host has a NIC on each.

    lan = Lan(["plant", "rtx1", "rtx2", "h1", "h2"]).build()
    lan.addr("h1", "A")            # 10.202.1.31
    lan.popen("h1", [...])         # a real process inside host h1's namespace
    lan.teardown()

The bridges live in their own namespace (`mdl-<pid>-lan`), so nothing is created in the namespace
the tests run in, and deleting the namespaces removes every device. Each host's NICs are
`lana` and `lanb`; their bridge ports in the LAN namespace are `<host>-a` and `<host>-b`,
which is where per-feed faults are injected (see `impair`). Namespaces are named
`mdl-<pid>-<host>`: concurrent test runs never touch each other's, and those of an aborted
run (its pid gone) are removed first.

Transmit checksum offload is off on every host NIC: a frame that the userspace relay
captures and re-sends would otherwise carry only a partial UDP/TCP checksum, and the
receiver would drop it (research/multicast-netns.md §4.2).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute, netns

PREFIX = "mdl-"
RUN = f"{PREFIX}{os.getpid()}-"  # this run's namespaces: concurrent runs (other pytest processes) never collide
LAN_NS = RUN + "lan"
NETS = {"A": "10.202.1", "B": "10.202.2"}
BRIDGES = {"A": "br-a", "B": "br-b"}
NICS = {"A": "lana", "B": "lanb"}
_HOST_NUMBERS = {"plant": 10, "plant2": 11, "rtx1": 21, "rtx2": 22, "rtx3": 23, "relay1": 41, "relay2": 42, "inject": 99}

_SIOCETHTOOL = 0x8946
_ETHTOOL_STXCSUM = 0x17


def host_number(host: str) -> int:
    if host in _HOST_NUMBERS:
        return _HOST_NUMBERS[host]
    if host.startswith("h") and host[1:].isdigit():
        return 30 + int(host[1:])
    raise ValueError(f"no address plan for host {host!r}")


def _alive(pid: str) -> bool:
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


def remove_leftovers() -> list[str]:
    """Delete this run's namespaces and those of aborted runs (prefix `mdl-<pid>-`, pid gone); return their names."""
    gone = [ns for ns in netns.listnetns()
            if ns.startswith(RUN) or (ns.startswith(PREFIX) and not _alive(ns[len(PREFIX):].split("-", 1)[0]))]
    for ns in gone:
        netns.remove(ns)
    return gone


def _ifindex(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise LookupError(f"no interface {name}")
    return found[0]


def _set_tx_checksum(ns: str, ifname: str, on: bool) -> None:
    s = netns.create_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        value = ctypes.create_string_buffer(struct.pack("=II", _ETHTOOL_STXCSUM, 1 if on else 0))
        ifr = struct.pack("@16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
        fcntl.ioctl(s.fileno(), _SIOCETHTOOL, ifr)
    finally:
        s.close()


@dataclass
class Lan:
    hosts: Sequence[str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    @staticmethod
    def ns(host: str) -> str:
        return RUN + host

    @staticmethod
    def addr(host: str, feed: str) -> str:
        return f"{NETS[feed]}.{host_number(host)}"

    @staticmethod
    def port_name(host: str, feed: str) -> str:
        """The host's port on the bridge of LAN `feed`, in the LAN namespace."""
        return f"{host}-{feed.lower()}"

    def build(self) -> Lan:
        remove_leftovers()
        try:
            netns.create(LAN_NS)
            for host in self.hosts:
                netns.create(self.ns(host))
            with IPRoute(netns=LAN_NS, flags=0) as lan:
                lan.link("set", index=_ifindex(lan, "lo"), state="up")
                for br in BRIDGES.values():
                    lan.link("add", ifname=br, kind="bridge", br_mcast_snooping=0)
                    lan.link("set", index=_ifindex(lan, br), state="up")
                for host in self.hosts:
                    with IPRoute(netns=self.ns(host), flags=0) as h:
                        h.link("set", index=_ifindex(h, "lo"), state="up")
                        for feed, nic in NICS.items():
                            port = self.port_name(host, feed)
                            h.link("add", ifname=nic, kind="veth", peer={"ifname": port, "net_ns_fd": LAN_NS})
                            i = _ifindex(h, nic)
                            h.addr("add", index=i, address=self.addr(host, feed), prefixlen=24)
                            h.link("set", index=i, state="up")
                            lan.link("set", index=_ifindex(lan, port), master=_ifindex(lan, BRIDGES[feed]), state="up")
                            _set_tx_checksum(self.ns(host), nic, False)
            for host in self.hosts:
                # IPv6 link-local traffic (DAD, router solicitations) would only add noise
                self.run(host, ["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"])
        except BaseException:
            self.teardown()
            raise
        return self

    def teardown(self) -> None:
        """Stop every process we started, then remove every namespace (devices go with them)."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        self.procs.clear()
        remove_leftovers()

    # -- processes and commands inside hosts ---------------------------------------

    def popen(self, host: str, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start `argv` inside `host`'s namespace, in its own process group."""
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], start_new_session=True, **kwargs)
        self.procs.append(p)
        return p

    def run(self, host: str, argv: Sequence[str], stdin: str | None = None, cwd: Path | None = None) -> str:
        ns = LAN_NS if host == "lan" else self.ns(host)
        done = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {ns}: {done.stderr.strip()}")
        return done.stdout

    def link(self, host: str, feed: str, up: bool) -> None:
        """Take a host's NIC on LAN `feed` down or up (a cable pulled, a switch port lost)."""
        with IPRoute(netns=self.ns(host), flags=0) as h:
            h.link("set", index=_ifindex(h, NICS[feed]), state="up" if up else "down")

    def switch_port(self, host: str, feed: str, up: bool) -> None:
        """Take `host`'s port on the bridge of LAN `feed` down or up (the switch side of the cable)."""
        with IPRoute(netns=LAN_NS, flags=0) as lan:
            lan.link("set", index=_ifindex(lan, self.port_name(host, feed)), state="up" if up else "down")

    def interface_counters(self, host: str, feed: str) -> dict[str, int]:
        with IPRoute(netns=self.ns(host), flags=0) as h:
            stats = h.link("get", index=_ifindex(h, NICS[feed]))[0].get("stats64")
            return {k: stats[k] for k in ("rx_packets", "tx_packets", "rx_dropped")}

    def wait_udp_port(self, host: str, port: int, timeout_s: float = 10) -> None:
        """Wait until something in `host` has bound UDP `port` (ss inside the namespace)."""
        self._wait_listening(host, ["ss", "-Hlun", f"sport = :{port}"], timeout_s, f"udp {port}")

    def wait_tcp_port(self, host: str, port: int, timeout_s: float = 10) -> None:
        self._wait_listening(host, ["ss", "-Hltn", f"sport = :{port}"], timeout_s, f"tcp {port}")

    def _wait_listening(self, host: str, argv: list[str], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.run(host, argv).strip():
                return
            time.sleep(0.05)
        raise TimeoutError(f"nothing listening on {what} in {host}")


def namespaces() -> Iterable[str]:
    """This run's namespaces."""
    return [ns for ns in netns.listnetns() if ns.startswith(RUN)]
