"""Captures: a bulk pcap/pcapng reader of UDP datagrams, and a pcap writer for the daemons.

Reading is `struct` on the whole file (no scapy packet objects: docs/architecture.md, "The hot path"), and trusts
nothing: pcap and pcapng in either byte order, µs or ns timestamps (pcap magic, pcapng
`if_tsresol`), Ethernet with 802.1Q/802.1ad tags, Linux cooked captures (SLL, SLL2, as
`tcpdump -i any` writes), raw IPv4. What is not a whole IPv4 UDP datagram is skipped and
counted (`non_ip`, `non_udp`, `fragments`, `truncated`); a damaged file raises
`PcapError` naming the byte offset, after yielding every packet before it.

Writing produces classic pcap with nanosecond timestamps and synthesised
Ethernet/IPv4/UDP headers carrying the real source, group and ports, so tshark,
Wireshark and scapy read it; files rotate by size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["PcapError", "ReadCounters", "read_udp", "PcapWriter"]

PCAP_US, PCAP_NS = 0xA1B2C3D4, 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINK_ETHERNET, LINK_RAW, LINK_RAW_ALT, LINK_SLL, LINK_IPV4, LINK_SLL2 = 1, 101, 12, 113, 228, 276
_ETH_IPV4, _ETH_VLAN, _ETH_QINQ = 0x0800, 0x8100, 0x88A8


class PcapError(ValueError):
    """A capture file that cannot be read further; `offset` is where it went wrong."""

    def __init__(self, offset: int, detail: str) -> None:
        super().__init__(f"capture damaged at byte offset {offset}: {detail}")
        self.offset = offset


@dataclass
class ReadCounters:
    packets: int = 0
    udp: int = 0
    non_ip: int = 0
    non_udp: int = 0
    fragments: int = 0
    truncated: int = 0
    unknown_link: int = 0


Datagram = tuple[int, str, int, str, int, bytes]  # ts_ns, src, sport, dst, dport, payload


def _ip_payload(frame: bytes, link: int, c: ReadCounters) -> bytes | None:
    """The IPv4 packet inside a link-layer frame, or None (counted)."""
    if link == LINK_ETHERNET:
        if len(frame) < 14:
            c.truncated += 1
            return None
        off, ethertype = 12, (frame[12] << 8) | frame[13]
        while ethertype in (_ETH_VLAN, _ETH_QINQ):
            off += 4
            if len(frame) < off + 2:
                c.truncated += 1
                return None
            ethertype = (frame[off] << 8) | frame[off + 1]
        if ethertype != _ETH_IPV4:
            c.non_ip += 1
            return None
        return frame[off + 2 :]
    if link == LINK_SLL:
        if len(frame) < 16:
            c.truncated += 1
            return None
        if (frame[14] << 8 | frame[15]) != _ETH_IPV4:
            c.non_ip += 1
            return None
        return frame[16:]
    if link == LINK_SLL2:
        if len(frame) < 20:
            c.truncated += 1
            return None
        if (frame[0] << 8 | frame[1]) != _ETH_IPV4:
            c.non_ip += 1
            return None
        return frame[20:]
    if link in (LINK_RAW, LINK_RAW_ALT, LINK_IPV4):
        return frame
    c.unknown_link += 1
    return None


def _ntoa(b: bytes) -> str:
    return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"


def _aton(text: str) -> bytes:
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(f"{text!r} is not an IPv4 address")
    return bytes(int(p) for p in parts)


def _udp(ip: bytes, c: ReadCounters) -> tuple[str, int, str, int, bytes] | None:
    if len(ip) < 20 or ip[0] >> 4 != 4:
        c.non_ip += 1
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = (ip[2] << 8) | ip[3]
    if ip[9] != 17:
        c.non_udp += 1
        return None
    if (ip[6] & 0x20) or ((ip[6] & 0x1F) << 8 | ip[7]):
        c.fragments += 1  # reassembly is not done: a fragment is counted and skipped
        return None
    if ihl < 20 or total < ihl + 8 or len(ip) < total:
        c.truncated += 1  # snaplen cut it: a partial payload would be misread, so it is skipped
        return None
    udp_len = (ip[ihl + 4] << 8) | ip[ihl + 5]
    if udp_len < 8 or ihl + udp_len > total:
        c.truncated += 1
        return None
    sport = (ip[ihl] << 8) | ip[ihl + 1]
    dport = (ip[ihl + 2] << 8) | ip[ihl + 3]
    return _ntoa(ip[12:16]), sport, _ntoa(ip[16:20]), dport, ip[ihl + 8 : ihl + udp_len]


def read_udp(path: str | Path, counters: ReadCounters | None = None) -> Iterator[Datagram]:
    """Every whole IPv4 UDP datagram of a pcap or pcapng file, in file order."""
    c = counters if counters is not None else ReadCounters()
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise PcapError(0, f"{len(data)} bytes: not a capture file")
    magic_le = struct.unpack_from("<I", data, 0)[0]
    if magic_le == PCAPNG_SHB:
        yield from _pcapng(data, c)
        return
    for order in "<>":
        magic = struct.unpack_from(order + "I", data, 0)[0]
        if magic in (PCAP_US, PCAP_NS):
            yield from _pcap(data, order, 1000 if magic == PCAP_US else 1, c)
            return
    raise PcapError(0, f"unknown magic 0x{magic_le:08x}: neither pcap nor pcapng")


def _pcap(data: bytes, order: str, scale: int, c: ReadCounters) -> Iterator[Datagram]:
    if len(data) < 24:
        raise PcapError(len(data), "pcap global header cut short")
    link = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    rec = struct.Struct(order + "IIII").unpack_from
    addr_udp_head = struct.Struct(">4s4sHHH").unpack_from  # source, destination, then the UDP header
    names: dict[bytes, str] = {}  # a capture holds few addresses: format each once (bounded below)
    off = 24
    n = len(data)
    while off < n:
        if off + 16 > n:
            raise PcapError(off, "record header cut short")
        sec, frac, incl, orig = rec(data, off)
        if incl > 262144 or off + 16 + incl > n:
            raise PcapError(off, f"record of {incl} bytes runs past the end of the file")
        c.packets += 1
        start = off + 16
        off = start + incl
        # fast path for the common frame: Ethernet, IPv4 without options, UDP, not a fragment, whole
        if (link == LINK_ETHERNET and incl >= 42 and data[start + 12] == 8 and data[start + 13] == 0 and data[start + 14] == 0x45
                and data[start + 23] == 17 and not (data[start + 20] & 0x3F or data[start + 21])):
            total = (data[start + 16] << 8) | data[start + 17]
            src, dst, sport, dport, ulen = addr_udp_head(data, start + 26)
            if total == ulen + 20 and 14 + total <= incl and ulen >= 8:
                c.udp += 1
                src_name = names.get(src)
                if src_name is None:
                    if len(names) > 4096:
                        names.clear()  # a hostile capture of many addresses costs a format each, not memory
                    src_name = names[src] = _ntoa(src)
                dst_name = names.get(dst)
                if dst_name is None:
                    dst_name = names[dst] = _ntoa(dst)
                yield (sec * 1_000_000_000 + frac * scale, src_name, sport, dst_name, dport, data[start + 42 : start + 34 + ulen])
                continue
        frame = data[start:off]
        ip = _ip_payload(frame, link, c)
        if ip is None:
            continue
        u = _udp(ip, c)
        if u is not None:
            c.udp += 1
            yield (sec * 1_000_000_000 + frac * scale, *u)


def _pcapng(data: bytes, c: ReadCounters) -> Iterator[Datagram]:
    off = 0
    n = len(data)
    order = "<"
    interfaces: list[tuple[int, int]] = []  # (link type, ns per timestamp unit)
    while off < n:
        if off + 12 > n:
            raise PcapError(off, "block header cut short")
        btype = struct.unpack_from(order + "I", data, off)[0]
        if btype == PCAPNG_SHB:
            bom = struct.unpack_from("<I", data, off + 8)[0]
            order = "<" if bom == BYTE_ORDER_MAGIC else ">" if bom == 0x4D3C2B1A else ""
            if not order:
                raise PcapError(off + 8, "section header with a bad byte-order magic")
            interfaces = []
        blen = struct.unpack_from(order + "I", data, off + 4)[0]
        if blen < 12 or blen % 4 or off + blen > n:
            raise PcapError(off, f"block of length {blen} does not fit the file")
        if struct.unpack_from(order + "I", data, off + blen - 4)[0] != blen:
            raise PcapError(off + blen - 4, "block's trailing length differs from its leading one")
        body = off + 8
        if btype == 1:  # interface description
            link = struct.unpack_from(order + "H", data, body)[0]
            interfaces.append((link, _tsresol(data, order, body + 8, off + blen - 4)))
        elif btype == 6:  # enhanced packet
            iface, hi, lo, cap, _orig = struct.unpack_from(order + "IIIII", data, body)
            if iface >= len(interfaces) or body + 20 + cap > off + blen - 4:
                raise PcapError(off, "enhanced packet block for an unknown interface or longer than its block")
            link, unit_ns = interfaces[iface]
            c.packets += 1
            ip = _ip_payload(data[body + 20 : body + 20 + cap], link, c)
            u = _udp(ip, c) if ip is not None else None
            if u is not None:
                c.udp += 1
                yield (((hi << 32) | lo) * unit_ns, *u)
        elif btype == 3:  # simple packet: no timestamp
            if not interfaces:
                raise PcapError(off, "simple packet block before any interface")
            c.packets += 1
            ip = _ip_payload(data[body + 4 : off + blen - 4], interfaces[0][0], c)
            u = _udp(ip, c) if ip is not None else None
            if u is not None:
                c.udp += 1
                yield (0, *u)
        off += blen


def _tsresol(data: bytes, order: str, opt: int, end: int) -> int:
    """Nanoseconds per timestamp unit from an interface's options (default µs)."""
    while opt + 4 <= end:
        code, length = struct.unpack_from(order + "HH", data, opt)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = data[opt + 4]
            if v & 0x80:
                return max(1, round(1e9 / (2 ** (v & 0x7F))))
            return max(1, 10 ** (9 - v)) if v <= 9 else 1
        opt += 4 + ((length + 3) & ~3)
    return 1000


class PcapWriter:
    """Writes UDP datagrams as Ethernet/IPv4/UDP frames into nanosecond pcap, rotating by size.

    Files are `path`, then `path.1`, `path.2`, ... each at most `max_bytes` (0 = no rotation)."""

    _GLOBAL = struct.Struct("<IHHiIII")
    _RECORD = struct.Struct("<IIII")

    def __init__(self, path: str | Path, max_bytes: int = 0) -> None:
        self.base = Path(path)
        self.max_bytes = max_bytes
        self.index = 0
        self.files: list[Path] = []
        self.written = 0
        self.packets = 0
        self._fh: IO[bytes] | None = None
        self._templates: dict[tuple[str, str], tuple[bytes, bytes, bytes, int]] = {}
        self._open()

    def _open(self) -> None:
        path = self.base if self.index == 0 else self.base.with_name(f"{self.base.name}.{self.index}")
        self._fh = open(path, "wb")  # noqa: SIM115 - closed on rotation and in close()
        self._fh.write(self._GLOBAL.pack(PCAP_NS, 2, 4, 0, 0, 262144, LINK_ETHERNET))
        self.written = 24
        self.files.append(path)

    # Ethernet + IPv4 + UDP in one precompiled pack; per (source, destination) the addresses and
    # the checksum's constant part are cached, so a packet costs one pack and two writes.
    _FRAME = struct.Struct(">6s6sHBBHHHBBH4s4sHHHH")

    def _template(self, src: str, dst: str) -> tuple[bytes, bytes, bytes, int]:
        key = (src, dst)
        t = self._templates.get(key)
        if t is None:
            src_ip, dst_ip = _aton(src), _aton(dst)
            # multicast: 01:00:5e + low 23 bits of the group
            dst_mac = b"\x01\x00\x5e" + bytes([dst_ip[1] & 0x7F]) + dst_ip[2:] if dst_ip[0] >> 4 == 14 else b"\x02\x00\x00\x00\x00\x02"
            words = struct.unpack(">10H", struct.pack(">BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, 1, 17, 0, src_ip, dst_ip))
            t = self._templates[key] = (dst_mac, src_ip, dst_ip, sum(words))
            if len(self._templates) > 4096:
                self._templates.clear()
        return t

    def write(self, ts_ns: int, src: str, sport: int, dst: str, dport: int, payload: bytes | memoryview) -> None:
        n = len(payload)
        dst_mac, src_ip, dst_ip, partial = self._template(src, dst)
        total = 28 + n
        csum = partial + total
        csum = (csum >> 16) + (csum & 0xFFFF)
        csum = ~(csum + (csum >> 16)) & 0xFFFF
        size = 42 + n
        if self.max_bytes and self.written + 16 + size > self.max_bytes and self.packets:
            self._fh.close()
            self.index += 1
            self._open()
        fh = self._fh
        fh.write(self._RECORD.pack(ts_ns // 1_000_000_000, ts_ns % 1_000_000_000, size, size)
                 + self._FRAME.pack(dst_mac, b"\x02\x00\x00\x00\x00\x01", 0x0800, 0x45, 0, total, 0, 0x4000, 1, 17, csum,
                                    src_ip, dst_ip, sport, dport, 8 + n, 0))
        fh.write(payload)
        self.written += 16 + size
        self.packets += 1

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
