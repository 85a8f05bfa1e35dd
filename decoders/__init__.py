"""The wire: construct declarations (`schema`) and everything derived from them.

`CODECS` holds the fast codec of every message, `SCHEMA_FINGERPRINT` and `SCHEMA_TAG`
identify this schema version on the wire (see `fingerprint` for the rule).
"""

from __future__ import annotations

from .errors import DecodeError, DecodeErrorKind, EncodeError
from .fastcodec import CodecTable, MessageCodec, build_codec, build_table
from .fingerprint import fingerprint, make_session, parse_session, schema_tag, session_schema_tag
from .native import load as load_native
from .schema import MESSAGES
from .schema.control import RejectReason
from .schema.messages import Aggressor, EventCode

__all__ = [
    "BACKEND",
    "BACKEND_REASON",
    "CODECS",
    "SCHEMA_FINGERPRINT",
    "SCHEMA_TAG",
    "DecodeError",
    "DecodeErrorKind",
    "EncodeError",
    "CodecTable",
    "MessageCodec",
    "build_codec",
    "build_table",
    "fingerprint",
    "make_session",
    "parse_session",
    "schema_tag",
    "session_schema_tag",
    "MESSAGES",
    "SYSTEM_EVENT",
    "INSTRUMENT_DIRECTORY",
    "QUOTE",
    "TRADE",
    "FIELD_UPDATE",
    "RECORD_IMAGE",
    "END_OF_IMAGE",
    "RETRANSMISSION_REJECT",
    "IMAGE_OFFER",
    "REJECT_REASONS",
    "EVENT_CODES",
    "AGGRESSORS",
    "enum_values",
]

CODECS: CodecTable = build_table(MESSAGES)
SCHEMA_FINGERPRINT: int = fingerprint(MESSAGES)
SCHEMA_TAG: bytes = schema_tag(SCHEMA_FINGERPRINT)
CODECS.native, BACKEND_REASON = load_native(SCHEMA_FINGERPRINT)  # decoders/native.py
BACKEND: str = "native" if CODECS.native is not None else "python"

SYSTEM_EVENT = CODECS.by_name["system_event"].type_byte
INSTRUMENT_DIRECTORY = CODECS.by_name["instrument_directory"].type_byte
QUOTE = CODECS.by_name["quote"].type_byte
TRADE = CODECS.by_name["trade"].type_byte
FIELD_UPDATE = CODECS.by_name["field_update"].type_byte
RECORD_IMAGE = CODECS.by_name["record_image"].type_byte
END_OF_IMAGE = CODECS.by_name["end_of_image"].type_byte
RETRANSMISSION_REJECT = CODECS.by_name["retransmission_reject"].type_byte
IMAGE_OFFER = CODECS.by_name["image_offer"].type_byte


def enum_values(enum) -> dict[str, int]:
    """name -> wire value of a construct `Enum` of the schema, so code names a value instead of restating it."""
    return {str(name): value for name, value in enum.encmapping.items()}


REJECT_REASONS = enum_values(RejectReason)  # why a re-request server refused (decoders/schema/control.py)
EVENT_CODES = enum_values(EventCode)  # system events: start_of_session, end_of_session
AGGRESSORS = enum_values(Aggressor)  # a trade's aggressor side
