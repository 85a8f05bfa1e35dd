"""`python -m decoders`: decode MoldUDP64 datagrams into JSON lines.

    python -m decoders [decode] [FILE ...] [--format auto|hex|raw] [--max-bytes N]
    python -m decoders pcap CAPTURE [--summary] [--group G:P] [--session S] [--instrument N] [--type quote]

Input: hex lines (one datagram per line, spaces allowed, `#` comments) or raw files
(one datagram per file); `-` or no FILE reads standard input. Output: one JSON object
per message with its session and sequence number; heartbeats and end-of-session
packets as one object each. A bad datagram gives one JSON error line on standard
error with its kind and offset, the rest goes on, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import TextIO

from . import CODECS
from .errors import DecodeError
from .moldudp64 import END_OF_SESSION_COUNT, HEARTBEAT_COUNT, MAX_DATAGRAM_BYTES, decode_datagram
from .present import message_record

__all__ = ["main"]


def _looks_hex(data: bytes) -> bool:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return False
    lines = [ln.split("#", 1)[0].replace(" ", "").strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return False
    hexdigits = set("0123456789abcdefABCDEF")
    return all(len(ln) % 2 == 0 and set(ln) <= hexdigits for ln in lines)


def _datagrams(data: bytes, fmt: str, name: str) -> Iterator[tuple[str, bytes]]:
    if fmt == "hex" or (fmt == "auto" and _looks_hex(data)):
        for lineno, line in enumerate(data.decode("ascii", "replace").splitlines(), 1):
            line = line.split("#", 1)[0].replace(" ", "").strip()
            if line:
                try:
                    yield f"{name}:{lineno}", bytes.fromhex(line)
                except ValueError as exc:
                    raise SystemExit(f"{name}:{lineno}: not hex: {exc}") from None
    else:
        yield name, data


def decode_stream(datagrams: Iterator[tuple[str, bytes]], max_bytes: int, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print JSON lines for every datagram; return the number of bad datagrams."""
    out = out or sys.stdout
    err = err or sys.stderr
    bad = 0
    for where, datagram in datagrams:
        try:
            session, seq, count, msgs = decode_datagram(datagram, CODECS, max_bytes)
        except DecodeError as exc:
            bad += 1
            err.write(json.dumps({"input": where, "error": exc.kind, "offset": exc.offset, "detail": exc.detail}) + "\n")
            continue
        sess = session.decode("ascii")
        if count == HEARTBEAT_COUNT:
            out.write(json.dumps({"session": sess, "sequence": seq, "event": "heartbeat"}) + "\n")
        elif count == END_OF_SESSION_COUNT:
            out.write(json.dumps({"session": sess, "sequence": seq, "event": "end_of_session"}) + "\n")
        for i, msg in enumerate(msgs):
            # sequence number 0 marks out-of-band control packets (retransmission rejects)
            record = message_record(CODECS, msg, session=sess, sequence=seq + i if seq else 0)
            out.write(json.dumps(record) + "\n")
    return bad


def _addr(text: str) -> tuple[str, int]:
    group, _, port = text.rpartition(":")
    if not group or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not group:port")
    return group, int(port)


def cmd_pcap(args: argparse.Namespace) -> int:
    """JSON lines per message, or a per-feed summary, of the MoldUDP64 datagrams in a capture."""
    from collections import Counter

    from .pcap import PcapError, ReadCounters, read_udp

    feeds = {args.feed_a: "A", args.feed_b: "B"}
    counters = ReadCounters()
    summary: dict[str, dict] = {}
    types: Counter[str] = Counter()
    bad = 0
    out = sys.stdout
    try:
        for ts, src, sport, dst, dport, payload in read_udp(args.capture, counters):
            if args.group and (dst, dport) not in args.group:
                continue
            feed = feeds.get((dst, dport), "-")
            try:
                session, seq, count, msgs = decode_datagram(payload, CODECS)
            except DecodeError as exc:
                bad += 1
                sys.stderr.write(json.dumps({"time_ns": ts, "destination": f"{dst}:{dport}", "error": exc.kind, "offset": exc.offset}) + "\n")
                continue
            sess = session.decode("ascii")
            if args.session and sess != args.session:
                continue
            f = summary.setdefault(feed, {"datagrams": 0, "messages": 0, "gaps": 0, "missing": 0, "duplicates": 0, "next": None})
            f["datagrams"] += 1
            if seq and count not in (0, 0xFFFF):
                if f["next"] is not None and seq > f["next"]:
                    f["gaps"] += 1
                    f["missing"] += seq - f["next"]
                elif f["next"] is not None and seq < f["next"]:
                    f["duplicates"] += min(count, f["next"] - seq)
                f["next"] = max(f["next"] or 0, seq + count)
                f["messages"] += count
            for i, msg in enumerate(msgs):
                name = CODECS.codec_for(msg).name
                if args.type and name not in args.type:
                    continue
                if args.instrument is not None and (len(msg) < 3 or msg[2] != args.instrument or name in ("end_of_image", "system_event")):
                    continue
                types[name] += 1
                if not args.summary:
                    out.write(json.dumps(message_record(CODECS, msg, time_ns=ts, source=f"{src}:{sport}", destination=f"{dst}:{dport}",
                                                        feed=feed, session=sess, sequence=seq + i if seq else 0)) + "\n")
    except PcapError as exc:
        print(f"python -m decoders pcap: {exc}", file=sys.stderr)
        return 1
    if args.summary:
        for f in summary.values():
            f.pop("next")
        print(json.dumps({"feeds": summary, "message_types": dict(types.most_common()), "bad_datagrams": bad,
                          "capture": counters.__dict__}, indent=2))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["replay"]:
        # sending is not the wire layer's business (it would import the common layer above it)
        print("python -m decoders replay moved: use python -m tickerplant replay (same arguments)", file=sys.stderr)
        return 2
    if not argv or argv[0] not in ("decode", "pcap"):
        argv.insert(0, "decode")
    ap = argparse.ArgumentParser(prog="python -m decoders", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    dec = sub.add_parser("decode", help="decode datagrams (hex lines or raw files) into JSON lines")
    dec.add_argument("files", nargs="*", default=["-"], help="inputs; - = standard input (default)")
    dec.add_argument("--format", choices=("auto", "hex", "raw"), default="auto",
                     help="input format: hex lines, one raw datagram per file, or guess (default auto)")
    dec.add_argument("--max-bytes", type=int, default=MAX_DATAGRAM_BYTES,
                     help=f"largest datagram accepted, bytes (default {MAX_DATAGRAM_BYTES})")
    pc = sub.add_parser("pcap", help="decode the MoldUDP64 datagrams of a pcap/pcapng capture")
    pc.add_argument("capture", help="pcap or pcapng file")
    pc.add_argument("--summary", action="store_true", help="per feed: datagrams, messages, gaps, duplicates; a message-type histogram")
    pc.add_argument("--feed-a", type=_addr, default=("239.194.1.1", 31001), help="feed A as group:port (default 239.194.1.1:31001)")
    pc.add_argument("--feed-b", type=_addr, default=("239.194.2.1", 31002), help="feed B as group:port (default 239.194.2.1:31002)")
    pc.add_argument("--group", type=_addr, action="append", help="only datagrams to this group:port (repeatable)")
    pc.add_argument("--session", help="only this session")
    pc.add_argument("--instrument", type=int, help="only messages of this instrument id")
    pc.add_argument("--type", action="append", help="only this message type, e.g. quote (repeatable)")
    args = ap.parse_args(argv)
    if args.command == "pcap":
        return cmd_pcap(args)

    def inputs() -> Iterator[tuple[str, bytes]]:
        for path in args.files or ["-"]:
            if path == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(path, "rb") as fh:
                    data = fh.read()
            yield from _datagrams(data, args.format, path)

    try:
        bad = decode_stream(inputs(), args.max_bytes)
    except OSError as exc:
        print(f"python -m decoders: {exc}", file=sys.stderr)
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader went away (| head): not an error of ours
        sys.stderr.close()
        sys.exit(0)
