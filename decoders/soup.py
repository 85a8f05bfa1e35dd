"""SoupBinTCP 3.0 on a byte stream: a sans-I/O framer and packet builders.

The framer is fed whatever `recv` returned and yields whole packets; it never holds
more than one packet plus the bytes of the current read, since a packet length is a
u16 (at most 65,535 bytes), so a hostile peer cannot make it grow without bound.
Layouts come from `schema.framing` through the fast codecs.
"""

from __future__ import annotations

from typing import Any

from .errors import DecodeError, DecodeErrorKind, EncodeError
from .fastcodec import CodecTable
from .schema.framing import SOUP_PACKETS

__all__ = [
    "SOUP",
    "SoupFramer",
    "pad_alpha",
    "pad_numeric",
    "parse_numeric",
    "login_request",
    "login_accepted",
    "login_rejected",
    "sequenced_data",
    "unsequenced_data",
    "server_heartbeat",
    "client_heartbeat",
    "end_of_session",
    "logout_request",
    "decode_packet",
]


class _SoupTable(CodecTable):
    """Soup packets dispatch on the type byte after the 2-byte length, not on byte 0."""

    def __init__(self, packets: dict[str, Any]) -> None:
        from .fastcodec import build_codec

        self.by_name = {}
        self.by_type = {}
        self.decoders = [None] * 256
        for name, con in packets.items():
            codec = build_codec(name, con)
            if codec.type_byte is None or codec.type_offset != 2:
                raise TypeError(f"{name}: a SoupBinTCP packet needs its type byte at offset 2")
            self.by_name[name] = codec
            self.by_type[codec.type_byte] = codec
            self.decoders[codec.type_byte[0]] = codec.decode

    def codec_for(self, msg: tuple) -> Any:
        try:
            return self.by_type[msg[1]]
        except (KeyError, IndexError, TypeError):
            raise EncodeError(f"no SoupBinTCP packet type {msg[1:2]!r}") from None


SOUP = _SoupTable(SOUP_PACKETS)
_C = SOUP.by_name


def pad_alpha(value: str | bytes, width: int) -> bytes:
    raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
    if len(raw) > width:
        raise EncodeError(f"{raw!r} longer than {width}")
    return raw.ljust(width, b" ")


def pad_numeric(value: int, width: int = 20) -> bytes:
    raw = str(value).encode("ascii")
    if value < 0 or len(raw) > width:
        raise EncodeError(f"{value} does not fit {width} ASCII digits")
    return raw.rjust(width, b" ")


def parse_numeric(raw: bytes, offset: int = 0) -> int:
    text = bytes(raw).strip(b" ")
    if not text:
        return 0
    if not text.isdigit():
        raise DecodeError(DecodeErrorKind.BAD_PACKET, offset, f"numeric field {bytes(raw)!r}")
    return int(text)


def _enc(name: str, *fields: Any) -> bytes:
    return _C[name].encode(fields)


def login_request(username: str, password: str, session: bytes, sequence_number: int) -> bytes:
    return _enc("login_request", 47, b"L", pad_alpha(username, 6), pad_alpha(password, 10),
                pad_alpha(session, 10), pad_numeric(sequence_number))


def login_accepted(session: bytes, sequence_number: int) -> bytes:
    return _enc("login_accepted", 31, b"A", pad_alpha(session, 10), pad_numeric(sequence_number))


def login_rejected(reason: str) -> bytes:
    return _C["login_rejected"].encode(_C["login_rejected"].from_dict({"reject_reason_code": reason}))


def sequenced_data(message: bytes) -> bytes:
    return _enc("sequenced_data", len(message) + 1, b"S", message)


def unsequenced_data(message: bytes) -> bytes:
    return _enc("unsequenced_data", len(message) + 1, b"U", message)


def server_heartbeat() -> bytes:
    return _enc("server_heartbeat", 1, b"H")


def client_heartbeat() -> bytes:
    return _enc("client_heartbeat", 1, b"R")


def end_of_session() -> bytes:
    return _enc("end_of_session", 1, b"Z")


def logout_request() -> bytes:
    return _enc("logout_request", 1, b"O")


def decode_packet(packet: Any) -> tuple[str, tuple]:
    """(packet name, fields tuple) of one whole packet as `SoupFramer` yields it."""
    if len(packet) < 3:
        raise DecodeError(DecodeErrorKind.TRUNCATED, len(packet), "SoupBinTCP packet under 3 bytes")
    dec = SOUP.decoders[packet[2]]
    if dec is None:
        raise DecodeError(DecodeErrorKind.UNKNOWN_TYPE, 2, f"SoupBinTCP type 0x{packet[2]:02x}")
    codec = SOUP.by_type[bytes(packet[2:3])]
    values = dec(packet, 0, len(packet))
    if values[0] != len(packet) - 2:
        raise DecodeError(DecodeErrorKind.BAD_PACKET, 0, f"packet_length {values[0]} for {len(packet) - 2} bytes")
    return codec.name, values


class SoupFramer:
    """Splits a SoupBinTCP byte stream into whole packets (length prefix included)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._off = 0  # where the first packet not yet taken starts

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Append received bytes; return every packet now complete. Raises on a zero length."""
        self.append(data)
        out: list[bytes] = []
        while (packet := self.next_packet()) is not None:
            out.append(packet)
        return out

    def append(self, data: bytes | memoryview) -> None:
        """Append received bytes, for `next_packet` and `take_messages` to take."""
        if self._off:
            del self._buf[: self._off]
            self._off = 0
        self._buf += data

    def next_packet(self) -> bytes | None:
        """The next whole packet, or None until more bytes arrive. Raises on a zero length."""
        buf, off = self._buf, self._off
        if len(buf) - off < 2:
            return None
        length = (buf[off] << 8) | buf[off + 1]
        if length == 0:
            raise DecodeError(DecodeErrorKind.ZERO_LENGTH, off, "SoupBinTCP packet of length 0")
        if len(buf) - off < 2 + length:
            return None
        self._off = off + 2 + length
        return bytes(buf[off : self._off])

    def take_messages(self, native: Any) -> list[tuple]:
        """The messages of the sequenced-data packets next in line, decoded in C (`native.soup_messages`) up to the
        first packet it leaves to `next_packet` (another type, a defect, the end of image)."""
        self._off, msgs = native.soup_messages(self._buf, self._off)
        return msgs

    def load_into(self, load: Any) -> int:
        """Record images next in line, loaded by `load(buf, off) -> (next_off, loaded)` (a CompactImage's
        `load_soup`) up to the first packet it leaves; returns how many it loaded."""
        self._off, loaded = load(self._buf, self._off)
        return loaded

    @property
    def pending_bytes(self) -> int:
        return len(self._buf) - self._off
