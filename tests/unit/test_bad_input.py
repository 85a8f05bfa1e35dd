"""Each kind of bad datagram raises one DecodeError naming the kind and the offset."""

from __future__ import annotations

import pytest

from decoders import CODECS, SCHEMA_FINGERPRINT, DecodeError, make_session
from decoders import DecodeErrorKind as K
from decoders.moldudp64 import HEADER, decode_datagram, decode_request, encode_datagram, split_blocks

S = make_session(SCHEMA_FINGERPRINT, 1)
QUOTE = CODECS.encode((b"Q", 1, 2, 3, 4, 5, 6))
IMAGE = CODECS.encode((b"I", 1, 2, "AB", -2, ((1, 2, 3),)))


def hdr(count: int, seq: int = 1) -> bytes:
    return HEADER.pack(S, seq, count)


CASES = [
    ("empty", b"", K.TRUNCATED, 0),
    ("short header", hdr(1)[:19], K.TRUNCATED, 19),
    ("oversize", hdr(1) + b"\x00" * 70000, K.OVERSIZE, 65507),
    ("non-ascii session", b"\xc3\xa9" + hdr(0)[2:], K.BAD_SESSION, 0),
    ("count but no blocks", hdr(1), K.TRUNCATED, 20),
    ("half a length", hdr(1) + b"\x00", K.TRUNCATED, 20),
    ("block past end", hdr(1) + b"\x00\x2d" + QUOTE[:30], K.BLOCK_PAST_END, 20),
    ("count too high", hdr(2) + b"\x00\x2d" + QUOTE, K.TRUNCATED, 67),
    ("count too low", hdr(1) + (b"\x00\x2d" + QUOTE) * 2, K.COUNT_MISMATCH, 67),
    ("bytes after heartbeat", hdr(0) + b"\x00", K.COUNT_MISMATCH, 20),
    ("bytes after end of session", hdr(0xFFFF) + b"\x00\x01Q", K.COUNT_MISMATCH, 20),
    ("zero-length block", hdr(1) + b"\x00\x00", K.ZERO_LENGTH, 20),
    ("zero-length then more", hdr(2) + b"\x00\x00" + b"\x00\x2d" + QUOTE, K.ZERO_LENGTH, 20),
    ("unknown type", hdr(1) + b"\x00\x03Zab", K.UNKNOWN_TYPE, 22),
    ("short quote", hdr(1) + b"\x00\x2c" + QUOTE[:44], K.LENGTH_MISMATCH, 22),
    ("long quote", hdr(1) + b"\x00\x2e" + QUOTE + b"\x00", K.LENGTH_MISMATCH, 22),
    # the block's length is right for the one field it carries, but its count says two: the count is not believed
    ("image count lies", hdr(1) + len(IMAGE).to_bytes(2, "big") + IMAGE[:30] + (2).to_bytes(2, "big") + IMAGE[32:], K.LENGTH_MISMATCH, 22),
    ("image items short", hdr(1) + (len(IMAGE) - 1).to_bytes(2, "big") + IMAGE[:-1], K.LENGTH_MISMATCH, 22),
    ("non-ascii symbol", hdr(1) + b"\x00\x1e" + CODECS.encode((b"R", 1, 2, "AB", 0))[:13] + b"\xff" * 16 + b"\x00", K.BAD_STRING, 22),
]


@pytest.mark.parametrize("name,data,kind,offset", CASES, ids=[c[0] for c in CASES])
def test_bad_datagram_raises_one_decode_error(name: str, data: bytes, kind: str, offset: int) -> None:
    with pytest.raises(DecodeError) as err:
        decode_datagram(data, CODECS)
    assert (err.value.kind, err.value.offset) == (kind, offset)
    if kind not in (K.UNKNOWN_TYPE, K.LENGTH_MISMATCH, K.BAD_STRING):  # framing defects: split_blocks agrees
        with pytest.raises(DecodeError) as err2:
            split_blocks(data)
        assert err2.value.kind == kind


def test_good_datagram_decodes_whole() -> None:
    data = encode_datagram(S, 5, [QUOTE, IMAGE])
    assert decode_datagram(data, CODECS) == (S, 5, 2, [CODECS.decode(QUOTE), CODECS.decode(IMAGE)])


def test_memoryview_of_receive_buffer_decodes_like_bytes() -> None:
    data = encode_datagram(S, 5, [QUOTE, IMAGE])
    buf = bytearray(65536)
    buf[: len(data)] = data
    assert decode_datagram(memoryview(buf)[: len(data)], CODECS) == decode_datagram(data, CODECS)


@pytest.mark.parametrize("data,kind", [(b"x" * 19, K.TRUNCATED), (b"x" * 21, K.COUNT_MISMATCH), (b"\xff" * 20, K.BAD_SESSION)])
def test_bad_request_packet(data: bytes, kind: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_request(data)
    assert err.value.kind == kind
