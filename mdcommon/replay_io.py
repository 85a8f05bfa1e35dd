"""Wire replay: put a capture's UDP payloads back on (test) multicast groups, at their pace.

Each captured destination group:port that is mapped goes out of the mapped interface to
the mapped group:port (by default the same group and port through `lo`); others are
skipped and counted. Pacing follows the capture's timestamps divided by `speed`
(0 = as fast as possible); the lateness of every send against its schedule is measured
and reported, so a user knows how faithful the replay was.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from decoders.pcap import PcapError, ReadCounters, read_udp
from mdcommon.batch_io import BATCH, SEND_SLICE, send_all_to
from mdcommon.mcast_send_io import open_sender

__all__ = ["ReplayTarget", "WireReplayReport", "wire_replay", "parse_mapping", "main"]


@dataclass(frozen=True)
class ReplayTarget:
    interface: str
    group: str
    port: int


@dataclass
class WireReplayReport:
    sent: int = 0
    skipped_unmapped: int = 0
    send_errors: int = 0
    seconds: float = 0.0
    lateness_us: list[float] = field(default_factory=list)
    capture: dict[str, int] = field(default_factory=dict)

    def percentile_us(self, q: float) -> float:
        if not self.lateness_us:
            return 0.0
        s = sorted(self.lateness_us)
        return s[min(len(s) - 1, int(q * len(s)))]


def parse_mapping(text: str) -> tuple[tuple[str, int], ReplayTarget]:
    """`239.194.1.1:31001=eth1:239.194.9.1:31001` (interface and target optional: `=lo`, or none)."""
    src, _, dst = text.partition("=")
    group, _, port = src.rpartition(":")
    key = (group, int(port))
    if not dst:
        return key, ReplayTarget("lo", group, int(port))
    parts = dst.split(":")
    if len(parts) == 1:
        return key, ReplayTarget(parts[0], group, int(port))
    if len(parts) == 3:
        return key, ReplayTarget(parts[0], parts[1], int(parts[2]))
    raise ValueError(f"{text!r}: expected GROUP:PORT[=IFACE[:GROUP:PORT]]")


_UNRESOLVED = object()


def _route(key: tuple[str, int], mapping: dict[tuple[str, int], ReplayTarget], map_all_to: str | None,
           socks: dict[str, socket.socket], ttl: int) -> tuple[socket.socket, tuple[str, int]] | None:
    """Where a captured destination goes: (socket of the mapped interface, target group:port), or None to skip."""
    target = mapping.get(key)
    if target is None:
        dst, dport = key
        if map_all_to is None or not (224 <= int(dst.split(".")[0]) <= 239):
            return None
        target = ReplayTarget(map_all_to, dst, dport)
    sock = socks.get(target.interface)
    if sock is None:
        sock = socks[target.interface] = open_sender(target.interface, ttl)
    return sock, (target.group, target.port)


def _flush(sock: socket.socket, pending: list, destinations: list, report: WireReplayReport) -> None:
    """Send the pending run of datagrams (each to its own destination, all through `sock`) with as few sendmmsg
    calls as the kernel allows."""
    sent = send_all_to(sock.fileno(), pending, destinations, lambda i, err: None)
    report.sent += sent
    report.send_errors += len(pending) - sent  # refused by the kernel (buffer full, no route): counted, the replay goes on
    pending.clear()
    destinations.clear()


def wire_replay(path: str | Path, mapping: dict[tuple[str, int], ReplayTarget], speed: float = 1.0, ttl: int = 0,
                map_all_to: str | None = "lo") -> WireReplayReport:
    """Send the capture; with `map_all_to`, destinations not in `mapping` go to the same group:port there."""
    report = WireReplayReport()
    counters = ReadCounters()
    socks: dict[str, socket.socket] = {}
    routes: dict[tuple[str, int], tuple[socket.socket, tuple[str, int]] | None] = {}  # resolved once per destination
    start_wall = first_ts = None
    pending: list = []
    pending_to: list[tuple[str, int]] = []
    pending_sock: socket.socket | None = None
    t0 = time.monotonic()
    try:
        for ts, _src, _sport, dst, dport, payload in read_udp(path, counters):
            key = (dst, dport)
            route = routes.get(key, _UNRESOLVED)
            if route is _UNRESOLVED:
                if len(routes) > 4096:
                    routes.clear()  # a capture of very many destinations costs a lookup each, not memory
                route = routes[key] = _route(key, mapping, map_all_to, socks, ttl)
            if route is None:
                report.skipped_unmapped += 1
                continue
            if speed <= 0 and BATCH is not None:  # as fast as possible: runs through one socket leave by sendmmsg
                if pending and (route[0] is not pending_sock or len(pending) >= SEND_SLICE):
                    _flush(pending_sock, pending, pending_to, report)
                pending_sock = route[0]
                pending.append(payload)  # a view of the capture read whole: valid until the end
                pending_to.append(route[1])
                continue
            if speed > 0:
                if start_wall is None:
                    start_wall, first_ts = time.monotonic(), ts
                due = start_wall + (ts - first_ts) / 1e9 / speed
                wait = due - time.monotonic()
                if wait > 0.0002:
                    time.sleep(wait - 0.0001)
                while time.monotonic() < due:  # the last fraction spun: sleep overshoots by ~0.1 ms
                    pass
                report.lateness_us.append((time.monotonic() - due) * 1e6)
            try:
                route[0].sendto(payload, route[1])
                report.sent += 1
            except OSError:  # refused by the kernel (buffer full, no route): counted, the replay goes on
                report.send_errors += 1
        if pending:
            _flush(pending_sock, pending, pending_to, report)
    finally:
        for s in socks.values():
            s.close()
    report.seconds = time.monotonic() - t0
    report.capture = counters.__dict__.copy()
    return report


def main(argv: list[str], prog: str = "python -m tickerplant replay") -> int:
    """The `replay` command line: re-send a capture's datagrams to multicast at their original pace."""
    rp = argparse.ArgumentParser(prog=prog, description="re-send a capture's datagrams to multicast at their original pace")
    rp.add_argument("capture", help="pcap or pcapng file")
    rp.add_argument("--map", action="append", help="GROUP:PORT=IFACE[:GROUP:PORT] (repeatable); unmapped groups go to the same group on lo")
    rp.add_argument("--only-mapped", action="store_true", help="skip destinations that have no --map")
    rp.add_argument("--speed", type=float, default=1.0, help="pace multiplier (default 1.0 = original pace)")
    rp.add_argument("--fast", action="store_true", help="as fast as possible, ignoring the capture's timestamps")
    rp.add_argument("--ttl", type=int, default=0, help="multicast TTL [hops] (default 0: this host only)")
    args = rp.parse_args(argv)
    try:
        mapping = dict(parse_mapping(m) for m in args.map or [])
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    speed = 0.0 if args.fast else args.speed
    try:
        r = wire_replay(args.capture, mapping, speed, args.ttl, None if args.only_mapped else "lo")
    except (PcapError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"sent": r.sent, "skipped_unmapped": r.skipped_unmapped, "send_errors": r.send_errors, "seconds": round(r.seconds, 3),
                      "datagrams_per_s": round(r.sent / r.seconds) if r.seconds else None,
                      "lateness_us": {"p50": round(r.percentile_us(0.5), 1), "p99": round(r.percentile_us(0.99), 1),
                                      "max": round(max(r.lateness_us, default=0.0), 1)} if r.lateness_us else None,
                      "capture": r.capture}))
    return 0 if not r.send_errors else 1
