"""`python -m decoders`: decode MoldUDP64 datagrams into JSON lines.

    python -m decoders [decode] [FILE ...] [--format auto|hex|raw] [--max-bytes N]

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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("decode",):
        argv.insert(0, "decode")
    ap = argparse.ArgumentParser(prog="python -m decoders", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    dec = sub.add_parser("decode", help="decode datagrams (hex lines or raw files) into JSON lines")
    dec.add_argument("files", nargs="*", default=["-"], help="inputs; - = standard input (default)")
    dec.add_argument("--format", choices=("auto", "hex", "raw"), default="auto",
                     help="input format: hex lines, one raw datagram per file, or guess (default auto)")
    dec.add_argument("--max-bytes", type=int, default=MAX_DATAGRAM_BYTES,
                     help=f"largest datagram accepted, bytes (default {MAX_DATAGRAM_BYTES})")
    args = ap.parse_args(argv)

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
    sys.exit(main())
