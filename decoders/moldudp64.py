"""MoldUDP64 datagrams on the hot path: decode with bounds checks, encode into buffers.

The header and block-length layouts come from `schema.framing` through the same IR
walker as the messages; the messages inside come from a `CodecTable`.
Invariant: `decode_datagram` returns every message of the datagram or raises one
`DecodeError`; a datagram is never half-delivered.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable
from itertools import accumulate
from typing import Any

from .errors import DecodeError, DecodeErrorKind, EncodeError
from .fastcodec import UNKNOWN, VARIABLE, CodecTable, build_codec
from .schema.framing import (
    CONTROL_SEQUENCE,
    END_OF_SESSION_COUNT,
    HEARTBEAT_COUNT,
    MAX_MESSAGES_PER_PACKET,
    DownstreamHeader,
    MessageBlock,
    RequestPacket,
)

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "BLOCK_HEADER_SIZE",
    "MAX_DATAGRAM_BYTES",
    "decode_header",
    "decode_datagram",
    "decode_messages",
    "split_blocks",
    "encode_datagram",
    "encode_framed",
    "frame_blocks",
    "encode_heartbeat",
    "encode_end_of_session",
    "encode_request",
    "decode_request",
    "DatagramWriter",
    "HEARTBEAT_COUNT",
    "END_OF_SESSION_COUNT",
    "CONTROL_SEQUENCE",
]

_header_codec = build_codec("downstream_header", DownstreamHeader)

_request_codec = build_codec("request_packet", RequestPacket)

HEADER = _header_codec.prefix
HEADER_SIZE = HEADER.size

BLOCK_HEADER_SIZE = struct.calcsize(MessageBlock.subcons[0].subcon.fmtstr)
MAX_DATAGRAM_BYTES = 65507  # largest UDP payload over IPv4
REQUEST = _request_codec.prefix

# Block length (from the declaration) and the type byte after it, read in one call.
_LENGTH_FORMAT = MessageBlock.subcons[0].subcon.fmtstr
_block_length = struct.Struct(_LENGTH_FORMAT).unpack_from
_pack_block_length = struct.Struct(_LENGTH_FORMAT).pack_into
_block_head = struct.Struct(_LENGTH_FORMAT + "B").unpack_from

_unpack_header = HEADER.unpack_from


def decode_header(data: Any, max_bytes: int = MAX_DATAGRAM_BYTES) -> tuple[bytes, int, int]:
    """(session, sequence_number, message_count) after checking size and session."""
    n = len(data)
    if n > max_bytes:
        raise DecodeError(DecodeErrorKind.OVERSIZE, max_bytes, f"{n} bytes > {max_bytes}")
    if n < HEADER_SIZE:
        raise DecodeError(DecodeErrorKind.TRUNCATED, n, f"header needs {HEADER_SIZE} bytes, got {n}")
    session, seq, count = _unpack_header(data, 0)
    if not session.isascii():
        raise DecodeError(DecodeErrorKind.BAD_SESSION, 0, f"session {session!r} is not ASCII")
    return session, seq, count


def decode_datagram(
    data: Any, table: CodecTable, max_bytes: int = MAX_DATAGRAM_BYTES
) -> tuple[bytes, int, int, list[tuple]]:
    """(session, sequence_number, message_count, messages) of one downstream datagram.

    `data` is the datagram exactly (bytes, or a memoryview slice of a receive buffer).
    Heartbeats and end-of-session packets return an empty message list. The loop is
    optimistic: anything unexpected hands over to `_diagnose`, which walks the
    datagram again carefully and raises the precise `DecodeError`.
    """
    session, seq, count = decode_header(data, max_bytes)
    return session, seq, count, decode_messages(data, count, table)


def decode_messages(data: Any, count: int, table: CodecTable) -> list[tuple]:
    """The messages of a datagram whose header `decode_header` already accepted (no second header parse)."""
    end = len(data)
    if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT):
        if end != HEADER_SIZE:
            raise DecodeError(DecodeErrorKind.COUNT_MISMATCH, HEADER_SIZE, f"{end - HEADER_SIZE} bytes after a count of {count}")
        return []
    native = table.native
    if native is not None:
        out = native.decode_messages(data, count)
        if out is not None:
            return out  # else a defect: the Python path below finds it and raises the precise DecodeError
    sizes = table.sizes
    unpackers = table.unpackers
    decoders = table.decoders
    out = []
    append = out.append
    off = HEADER_SIZE
    try:
        for _ in range(count):
            length, t = _block_head(data, off)
            off += 2
            size = sizes[t]
            if size == length:  # fixed layout: unpack_from itself stops at the datagram's end
                append(unpackers[t](data, off))
            elif size == VARIABLE and 0 < length <= end - off:
                append(decoders[t](data, off, length))
            else:
                _diagnose(data, table, count)
            off += length
    except struct.error:
        _diagnose(data, table, count)
    if off != end:
        raise DecodeError(DecodeErrorKind.COUNT_MISMATCH, off, f"{end - off} bytes after {count} messages")
    return out


def _diagnose(data: Any, table: CodecTable, count: int) -> None:
    """Walk a datagram the fast loop choked on, and raise the first defect precisely."""
    end = len(data)
    off = HEADER_SIZE
    for _ in range(count):
        if off + BLOCK_HEADER_SIZE > end:
            raise DecodeError(DecodeErrorKind.TRUNCATED, off, "message length past the end")
        (length,) = _block_length(data, off)
        off += BLOCK_HEADER_SIZE
        if length == 0:
            raise DecodeError(DecodeErrorKind.ZERO_LENGTH, off - 2, "zero-length message block")
        stop = off + length
        if stop > end:
            raise DecodeError(DecodeErrorKind.BLOCK_PAST_END, off - 2, f"block of {length} bytes, {end - off} left")
        t = data[off]
        size = table.sizes[t]
        if size == UNKNOWN:
            raise DecodeError(DecodeErrorKind.UNKNOWN_TYPE, off, f"type byte 0x{t:02x}")
        if size > 0 and size != length:
            raise DecodeError(DecodeErrorKind.LENGTH_MISMATCH, off, f"type 0x{t:02x} is {size} bytes, block is {length}")
        table.decoders[t](data, off, length)  # raises its own DecodeError if the body is bad
        off = stop
    raise DecodeError(DecodeErrorKind.TRUNCATED, off, "datagram could not be decoded")


def split_blocks(data: Any, max_bytes: int = MAX_DATAGRAM_BYTES) -> tuple[bytes, int, int, list[bytes]]:
    """Like `decode_datagram` but returns each message's raw bytes, undecoded (journals, relays)."""
    session, seq, count = decode_header(data, max_bytes)
    end = len(data)
    if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT):
        if end != HEADER_SIZE:
            raise DecodeError(DecodeErrorKind.COUNT_MISMATCH, HEADER_SIZE, f"{end - HEADER_SIZE} bytes after a count of {count}")
        return session, seq, count, []
    blocks: list[bytes] = []
    off = HEADER_SIZE
    for _ in range(count):
        if off + 2 > end:
            raise DecodeError(DecodeErrorKind.TRUNCATED, off, "message length past the end")
        (length,) = _block_length(data, off)
        off += BLOCK_HEADER_SIZE
        if length == 0:
            raise DecodeError(DecodeErrorKind.ZERO_LENGTH, off - 2, "zero-length message block")
        stop = off + length
        if stop > end:
            raise DecodeError(DecodeErrorKind.BLOCK_PAST_END, off - 2, f"block of {length} bytes, {end - off} left")
        blocks.append(bytes(data[off:stop]))
        off = stop
    if off != end:
        raise DecodeError(DecodeErrorKind.COUNT_MISMATCH, off, f"{end - off} bytes after {count} messages")
    return session, seq, count, blocks


def _check_session(session: bytes) -> None:
    if len(session) != 10 or not session.isascii():
        raise EncodeError(f"session must be 10 ASCII bytes, got {session!r}")


_PREFIXES = [n.to_bytes(2, "big") for n in range(2048)]  # the 2-byte lengths of the messages a feed carries


def _prefix(n: int) -> bytes:
    return n.to_bytes(2, "big")


def frame_blocks(blocks: list[bytes]) -> tuple[bytes, array]:
    """(the blocks each after its 2-byte big-endian length, as a datagram carries them; where each length starts,
    then where the last block ends, as unsigned 32-bit ints). Iterated in C (map, accumulate, slice assignment)."""
    lens = list(map(len, blocks))
    longest = max(lens, default=1)
    if longest > 0xFFFF or min(lens, default=1) == 0:
        raise EncodeError(f"a message block of {0 if longest <= 0xFFFF else longest} bytes cannot be framed (1..65535)")
    parts: list[bytes] = [b""] * (2 * len(blocks))
    parts[::2] = map(_PREFIXES.__getitem__ if longest < len(_PREFIXES) else _prefix, lens)
    parts[1::2] = blocks
    return b"".join(parts), array("I", accumulate(map((2).__add__, lens), initial=0))


def encode_datagram(session: bytes, sequence_number: int, blocks: Iterable[bytes]) -> bytes:
    """A downstream packet carrying already-encoded message `blocks`."""
    blocks = list(blocks)
    return encode_framed(session, sequence_number, len(blocks), [frame_blocks(blocks)[0]])


def encode_framed(session: bytes, sequence_number: int, count: int, runs: Iterable[Any]) -> bytes:
    """A downstream packet of `count` messages already framed (each block after its 2-byte big-endian length, as
    a datagram carries them) in `runs` of bytes-like objects: a retransmission copies a journal's framed messages."""
    _check_session(session)
    if not 0 < count <= MAX_MESSAGES_PER_PACKET:
        raise EncodeError(f"{count} messages in one packet (1..{MAX_MESSAGES_PER_PACKET})")
    return b"".join([HEADER.pack(session, sequence_number, count), *runs])


def encode_heartbeat(session: bytes, next_sequence_number: int) -> bytes:
    _check_session(session)
    return HEADER.pack(session, next_sequence_number, HEARTBEAT_COUNT)


def encode_end_of_session(session: bytes, next_sequence_number: int) -> bytes:
    _check_session(session)
    return HEADER.pack(session, next_sequence_number, END_OF_SESSION_COUNT)


def encode_request(session: bytes, sequence_number: int, count: int) -> bytes:
    _check_session(session)
    return REQUEST.pack(session, sequence_number, count)


def decode_request(data: Any) -> tuple[bytes, int, int]:
    """(session, sequence_number, requested_message_count) of a request packet."""
    if len(data) != REQUEST.size:
        kind = DecodeErrorKind.TRUNCATED if len(data) < REQUEST.size else DecodeErrorKind.COUNT_MISMATCH
        raise DecodeError(kind, min(len(data), REQUEST.size), f"request is {REQUEST.size} bytes, got {len(data)}")
    session, seq, count = REQUEST.unpack_from(data, 0)
    if not session.isascii():
        raise DecodeError(DecodeErrorKind.BAD_SESSION, 0, f"session {session!r} is not ASCII")
    return session, seq, count


class DatagramWriter:
    """Packs messages into one preallocated datagram buffer; the publisher's hot path.

    `add` encodes a message tuple in place and returns False, writing nothing, when it
    would not fit; `finish` writes the header and returns a memoryview of the datagram,
    valid until the next `reset`.
    """

    def __init__(self, table: CodecTable, max_bytes: int = 1400) -> None:
        if max_bytes < HEADER_SIZE + 3:
            raise ValueError(f"max_bytes {max_bytes} leaves no room for a message")
        self.table = table
        self._block_packers = table.block_packers
        self.max_bytes = max_bytes
        self.buf = bytearray(max_bytes)
        self.view = memoryview(self.buf)
        self.off = HEADER_SIZE
        self.count = 0

    def reset(self) -> None:
        self.off = HEADER_SIZE
        self.count = 0

    def add(self, msg: tuple) -> bool:
        return self.add_many((msg,), 0, None) == 1

    def add_many(self, msgs: list[tuple] | tuple, start: int = 0, offsets: list[int] | None = None) -> int:
        """Pack `msgs[start:]` until the datagram is full; return the index of the first one
        not packed (len(msgs) if all fit). Each packed block's offset is appended to `offsets`."""
        native = self.table.native
        if native is None:
            return self._add_python(msgs, start, offsets)
        n = len(msgs)
        i = start
        while i < n:  # the C packer takes what it can; the struct codecs pack (or refuse) the one it stopped at
            i, self.off, self.count, full = native.pack_blocks(self.buf, self.off, self.count, self.max_bytes, msgs, i, offsets)
            if full or i == n or not self._add_python(msgs[i : i + 1], 0, offsets):
                return i
            i += 1
        return i

    def _add_python(self, msgs: list[tuple] | tuple, start: int, offsets: list[int] | None) -> int:
        packers = self._block_packers
        buf = self.buf
        max_bytes = self.max_bytes
        n = len(msgs)
        i = start
        off, count = self.off, self.count
        try:
            while i < n:
                msg = msgs[i]
                fast = packers.get(msg[0])
                if fast is not None:
                    size, pack = fast
                    stop = off + 2 + size
                    if stop > max_bytes or count >= MAX_MESSAGES_PER_PACKET:
                        if count == 0:
                            raise EncodeError(f"{msg[0]!r} of {size} bytes never fits in {max_bytes}")
                        break
                    pack(buf, off, size, *msg)
                else:
                    codec = self.table.codec_for(msg)
                    size = codec.encoded_size(msg)
                    stop = off + 2 + size
                    if stop > max_bytes or count >= MAX_MESSAGES_PER_PACKET:
                        if count == 0:
                            raise EncodeError(f"{codec.name} of {size} bytes never fits in {max_bytes}")
                        break
                    _pack_block_length(buf, off, size)
                    codec.pack_into(buf, off + 2, msg)
                if offsets is not None:
                    offsets.append(off)
                off = stop
                count += 1
                i += 1
        except struct.error as exc:
            raise EncodeError(f"{msgs[i][0]!r}: {exc}") from None
        finally:
            self.off, self.count = off, count
        return i

    def add_block(self, block: bytes) -> bool:
        size = len(block)
        off = self.off
        if off + 2 + size > self.max_bytes or self.count >= MAX_MESSAGES_PER_PACKET:
            if self.count == 0:
                raise EncodeError(f"block of {size} bytes never fits in {self.max_bytes}")
            return False
        _pack_block_length(self.buf, off, size)
        self.buf[off + 2 : off + 2 + size] = block
        self.off = off + 2 + size
        self.count += 1
        return True

    def finish(self, session: bytes, sequence_number: int) -> memoryview:
        HEADER.pack_into(self.buf, 0, session, sequence_number, self.count)
        return self.view[: self.off]
