"""The one error that every decoder raises on bad input.

Hostile or damaged input must never crash a daemon or leak a half-decoded message:
every decoder in this package either returns a complete result or raises
`DecodeError`, whose `kind` names the defect (each kind maps to a counter in the
daemons) and whose `offset` says where in the input it was found.
"""

from __future__ import annotations

__all__ = ["DecodeError", "DecodeErrorKind", "EncodeError"]


class DecodeErrorKind:
    """Names of the ways an input can be bad; one counter per name in the daemons."""

    TRUNCATED = "truncated"  # input ends before a fixed-size part (header, block length, field)
    OVERSIZE = "oversize"  # datagram longer than the configured maximum
    BAD_SESSION = "bad_session"  # MoldUDP64 session field not ASCII
    BLOCK_PAST_END = "block_past_end"  # a block's length runs past the end of the datagram
    COUNT_MISMATCH = "count_mismatch"  # bytes left over after `count` blocks, or blocks where none belong
    ZERO_LENGTH = "zero_length"  # a message block of length 0
    UNKNOWN_TYPE = "unknown_type"  # first byte of a message names no declared message type
    LENGTH_MISMATCH = "length_mismatch"  # block length differs from the declared layout's size
    BAD_CONST = "bad_const"  # a constant field holds another value
    BAD_STRING = "bad_string"  # a text field is not in its declared encoding
    BAD_PACKET = "bad_packet"  # a SoupBinTCP packet that is malformed for its type
    BAD_SEQUENCE = "bad_sequence"  # a sequence number no datagram of its kind can carry (0 on a feed)

    ALL: tuple[str, ...] = (
        TRUNCATED,
        OVERSIZE,
        BAD_SESSION,
        BLOCK_PAST_END,
        COUNT_MISMATCH,
        ZERO_LENGTH,
        UNKNOWN_TYPE,
        LENGTH_MISMATCH,
        BAD_CONST,
        BAD_STRING,
        BAD_PACKET,
        BAD_SEQUENCE,
    )


class DecodeError(ValueError):
    """Bad input: `kind` is one of `DecodeErrorKind`, `offset` the byte where it was found."""

    def __init__(self, kind: str, offset: int, detail: str = "") -> None:
        self.kind = kind
        self.offset = offset
        self.detail = detail
        super().__init__(f"{kind} at offset {offset}" + (f": {detail}" if detail else ""))


class EncodeError(ValueError):
    """A value that does not fit its declared field; a programming error on our side, raised loudly."""
