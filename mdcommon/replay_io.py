"""Wire replay: put a capture's UDP payloads back on (test) multicast groups, at their pace.

Each captured destination group:port that is mapped goes out of the mapped interface to
the mapped group:port (by default the same group and port through `lo`); others are
skipped and counted. Pacing follows the capture's timestamps divided by `speed`
(0 = as fast as possible); the lateness of every send against its schedule is measured
and reported, so a user knows how faithful the replay was.
"""

from __future__ import annotations

import argparse
import errno
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


def frame_replay(path: str | Path, interface: str = "lo") -> WireReplayReport:
    """Send a capture's frames as they were captured, as fast as possible, through a packet socket on `interface`
    (root: CAP_NET_RAW), as tcpreplay does: source addresses, TTL and checksums as captured, nothing remapped.
    Only a classic pcap of Ethernet frames, each a whole IPv4 UDP datagram to a multicast group; anything else
    raises ValueError before a frame leaves. Frames leave by sendmmsg, 1,024 per call, walked in C."""
    if BATCH is None or not hasattr(BATCH, "send_frames"):
        raise ValueError("--frames needs the batched syscalls (mdcommon/_batch_io.c, built by pip install)")
    data = Path(path).read_bytes()
    scan = BATCH.pcap_scan(data)
    if scan is None:
        raise ValueError(f"{path}: --frames sends only a classic pcap of Ethernet frames, each a whole IPv4 UDP datagram to a "
                         "multicast group (use the datagram replay for anything else)")
    swap, packets = scan
    report = WireReplayReport(capture={"packets": packets, "udp": packets})
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # PermissionError without CAP_NET_RAW
    try:
        sock.bind((interface, 0))
        fd = sock.fileno()
        off = 24
        t0 = time.monotonic()
        while off < len(data):
            off, sent, err = BATCH.send_frames(fd, data, off, swap, 1024)
            report.sent += sent
            if err in (errno.EAGAIN, errno.ENOBUFS, errno.EINTR):
                continue  # the device queue is full: the same frame again
            if err:  # refused: counted, the replay goes on
                report.send_errors += 1
                off += 16 + int.from_bytes(data[off + 8 : off + 12], "big" if swap else "little")
        report.seconds = time.monotonic() - t0
    finally:
        sock.close()
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
    rp.add_argument("--frames", action="store_true",
                    help="send the captured frames as they are onto lo through a packet socket (root), as fast as possible, "
                         "as tcpreplay does: source addresses and TTL as captured, no --map. Frames from 127.0.0.1 are taken "
                         "by the kernel only with net.ipv4.conf.lo.accept_local=1 and route_localnet=1")
    args = rp.parse_args(argv)
    if args.frames and (args.map or args.only_mapped or args.ttl or not args.fast):
        print(f"{prog}: --frames sends the capture as captured, as fast as possible: it takes --fast, and no --map, "
              "--only-mapped or --ttl", file=sys.stderr)
        return 2
    try:
        mapping = dict(parse_mapping(m) for m in args.map or [])
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    speed = 0.0 if args.fast else args.speed
    try:
        if args.frames:
            r = frame_replay(args.capture, "lo")
        else:
            r = wire_replay(args.capture, mapping, speed, args.ttl, None if args.only_mapped else "lo")
    except (PcapError, OSError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"sent": r.sent, "skipped_unmapped": r.skipped_unmapped, "send_errors": r.send_errors, "seconds": round(r.seconds, 3),
                      "datagrams_per_s": round(r.sent / r.seconds) if r.seconds else None,
                      "lateness_us": {"p50": round(r.percentile_us(0.5), 1), "p99": round(r.percentile_us(0.99), 1),
                                      "max": round(max(r.lateness_us, default=0.0), 1)} if r.lateness_us else None,
                      "capture": r.capture}))
    return 0 if not r.send_errors else 1
