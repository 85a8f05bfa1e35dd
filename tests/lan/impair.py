"""Fault injection per feed and per host, without tc netem (absent from this kernel and CI).

- Loss (random, every-Nth, everything) with nftables on a netdev ingress hook:
  per feed on the publisher's bridge port in the LAN namespace, so every receiver of that
  feed misses the same datagrams; per host on the host's own NIC, so only it does. Only
  multicast datagrams of the feed's group and port match: unicast NACKs and their answers,
  ARP and IGMP pass. Never in the sender's own output hook (sendto would raise EPERM).
- Delay, jitter, reordering and duplication with the seeded userspace relay (`relay.py`),
  spliced between the publisher's bridge port and the bridge.
- Link down/up is `Lan.link`.
Where a user's kernel has netem it could do the same; nothing here needs it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute

from .topology import BRIDGES, LAN_NS, NICS, Lan

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Faults:
    lan: Lan
    feeds: dict[str, tuple[str, int]]  # feed -> (group, port)
    tables: list[tuple[str, str, str]] = field(default_factory=list)  # (namespace, table, family)
    relays: list[tuple[subprocess.Popen, str, str]] = field(default_factory=list)
    _n: int = 0

    def _where(self, feed: str, host: str | None, source: str) -> tuple[str, str]:
        if host is None:
            return LAN_NS, Lan.port_name(source, feed)
        return Lan.ns(host), NICS[feed]

    def loss(self, feed: str, per_mille: int, host: str | None = None, mode: str = "random", source: str = "plant") -> str:
        """Drop `per_mille`/1000 of the feed's datagrams: `random`, or `every` (every 1000/per_mille-th, exactly)."""
        if mode == "random":
            cond = f"numgen random mod 1000 < {per_mille}"
        elif mode == "every":
            cond = f"numgen inc mod {1000 // per_mille} == 0"
        else:
            raise ValueError(mode)
        return self._drop(feed, host, source, cond)

    def block(self, feed: str, host: str | None = None, source: str = "plant") -> str:
        """Drop every datagram of the feed (a burst while it stays, a partition)."""
        return self._drop(feed, host, source, "")

    def _drop(self, feed: str, host: str | None, source: str, cond: str) -> str:
        ns, device = self._where(feed, host, source)
        group, port = self.feeds[feed]
        self._n += 1
        table = f"mdl_fault{self._n}"
        script = (f'table netdev {table} {{\n chain impair {{\n  type filter hook ingress device "{device}" priority 0; policy accept;\n'
                  f"  ip daddr {group} udp dport {port} {cond} counter drop\n }}\n}}\n")
        self._nft(ns, script)
        self.tables.append((ns, table, "netdev"))
        return table

    @staticmethod
    def _nft(ns: str, script: str) -> None:
        done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, capture_output=True)
        if done.returncode:
            raise RuntimeError(f"nft in {ns}: {done.stderr}\n{script}")

    def guard_requests(self, host: str, port: int, per_source_per_s: int) -> str:
        """Not a fault: the kernel-level per-source limit on a re-request port that docs/operations.md recommends."""
        self._n += 1
        table = f"mdl_guard{self._n}"
        script = (f"table inet {table} {{\n chain guard {{\n  type filter hook input priority 0; policy accept;\n"
                  f"  udp dport {port} meter nack_sources {{ ip saddr limit rate over {per_source_per_s}/second burst "
                  f"{per_source_per_s} packets }} counter drop\n }}\n}}\n")
        self._nft(Lan.ns(host), script)
        self.tables.append((Lan.ns(host), table, "inet"))
        return table

    def dropped(self, table: str) -> int:
        """Datagrams the rule has dropped so far."""
        ns, family = next((n, f) for n, t, f in self.tables if t == table)
        out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "table", family, table],
                             capture_output=True, text=True, check=True).stdout
        for item in json.loads(out)["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
        raise LookupError(f"no counter in {table}")

    def remove(self, table: str) -> None:
        ns, family = next((n, f) for n, t, f in self.tables if t == table)
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", family, table], check=True, capture_output=True)
        self.tables.remove((ns, table, family))

    def relay(self, feed: str, source: str = "plant", *, delay_ms: float = 0, jitter_ms: float = 0, reorder: float = 0,
              dup: float = 0, loss: float = 0, seed: int = 1) -> None:
        """Splice the seeded relay between `source`'s bridge port on LAN `feed` and the bridge."""
        port = Lan.port_name(source, feed)
        wire = f"w{feed.lower()}-{source}"[:13]
        with IPRoute(netns=LAN_NS, flags=0) as lan:
            idx = lan.link_lookup(ifname=port)[0]
            lan.link("set", index=idx, master=0)
            lan.link("add", ifname=wire, kind="veth", peer=f"{wire}-p")
            peer = lan.link_lookup(ifname=f"{wire}-p")[0]
            lan.link("set", index=peer, master=lan.link_lookup(ifname=BRIDGES[feed])[0], state="up")
            lan.link("set", index=lan.link_lookup(ifname=wire)[0], state="up")
        argv = [sys.executable, "-m", "tests.lan.relay", port, wire, "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms),
                "--reorder", str(reorder), "--dup", str(dup), "--loss", str(loss), "--seed", str(seed)]
        p = subprocess.Popen(["ip", "netns", "exec", LAN_NS, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.lan.procs.append(p)
        self.relays.append((p, feed, source))

    def relay_counts(self) -> list[dict[str, int]]:
        """Stop the relays (frames still queued are sent first) and return their counters."""
        out = []
        for p, _, _ in self.relays:
            p.send_signal(signal.SIGTERM)
            stdout, _ = p.communicate(timeout=10)
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        self.relays.clear()
        return out

    def clear(self) -> None:
        for _, table, _ in list(self.tables):
            self.remove(table)
