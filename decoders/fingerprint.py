"""Schema identity: a fingerprint derived from the declarations, and where it travels.

Rule (version skew kills, so a receiver must refuse another schema before decoding a
single message):
1. `fingerprint(messages)` is the first 8 bytes (big-endian u64) of the SHA-256 of the
   canonical signature of every message layout in type-byte order: names, widths,
   signedness, byte order, enum values, constants. Docs do not count. Any layout
   change changes it; nothing else does.
2. Every MoldUDP64 session name carries it: the session is `TTTT` + `IIIIII`, where
   `TTTT` is the schema tag (the top 20 bits of the fingerprint in Crockford base32)
   and `IIIIII` the session instance (base36, chosen by the publisher, never reused).
   A receiver compares the first 4 bytes of each datagram's session with its own tag
   and drops (and counts) the datagram on mismatch, before looking at a message.
3. The full 64-bit fingerprint is also carried by the start-of-session system event
   and by the image server's login accepted session, so a 20-bit tag collision is
   still caught before data is applied.
"""

from __future__ import annotations

import hashlib
from typing import Any

from . import ir
from .schema.framing import SESSION_LENGTH

__all__ = [
    "fingerprint",
    "schema_tag",
    "make_session",
    "parse_session",
    "session_schema_tag",
    "TAG_LENGTH",
    "INSTANCE_LENGTH",
    "MAX_INSTANCE",
]

TAG_LENGTH = 4
INSTANCE_LENGTH = SESSION_LENGTH - TAG_LENGTH
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_INSTANCE = 36**INSTANCE_LENGTH - 1


def fingerprint(messages: dict[str, Any]) -> int:
    """The u64 fingerprint of a schema's message declarations (see module rule 1)."""
    sigs = []
    for name, con in messages.items():
        node = ir.walk(con, name, name)
        sigs.append(ir.signature(node))
    text = "moldudp64+soupbintcp3\n" + "\n".join(sorted(sigs))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def schema_tag(fp: int) -> bytes:
    """The 4-character tag that opens every session name of schema `fp`."""
    top = fp >> (64 - 5 * TAG_LENGTH)
    chars = []
    for _ in range(TAG_LENGTH):
        chars.append(_B32[top & 31])
        top >>= 5
    return "".join(reversed(chars)).encode("ascii")


def make_session(fp: int, instance: int) -> bytes:
    """Session name for instance `instance` (0 ≤ instance ≤ MAX_INSTANCE) of schema `fp`."""
    if not 0 <= instance <= MAX_INSTANCE:
        raise ValueError(f"session instance {instance} outside 0..{MAX_INSTANCE}")
    digits = []
    for _ in range(INSTANCE_LENGTH):
        digits.append(_B36[instance % 36])
        instance //= 36
    return schema_tag(fp) + "".join(reversed(digits)).encode("ascii")


def session_schema_tag(session: bytes) -> bytes:
    return bytes(session[:TAG_LENGTH])


def parse_session(session: bytes) -> tuple[bytes, int | None]:
    """(schema tag, instance) of a session name; instance None if not ours (not base36)."""
    tag = bytes(session[:TAG_LENGTH])
    try:
        instance = int(bytes(session[TAG_LENGTH:SESSION_LENGTH]).decode("ascii"), 36)
    except (UnicodeDecodeError, ValueError):
        return tag, None
    return tag, instance
