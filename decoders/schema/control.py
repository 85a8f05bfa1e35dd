"""Messages of the recovery paths: initial images, retransmission rejects, image offers.

They travel inside the same blocks as market data (first byte = type), on the
SoupBinTCP image session (`RecordImage`, `EndOfImage`), or from a re-request server in
a MoldUDP64 packet with sequence number 0: `RetransmissionReject` (unicast, or on a
channel's repair group), and `ImageOffer`, a pool server's answer to a handler that
asked the request group who has an image (docs/operations.md, "Anonymous recovery").
"""

from __future__ import annotations

from construct import Const, Enum, Int8sb, Int8ub, Int16ub, Int32ub, Int64ub, PrefixedArray, Struct

from .messages import FieldValue
from .types import InstrumentId, Symbol, Timestamp

__all__ = ["RecordImage", "EndOfImage", "RetransmissionReject", "RejectReason", "ImageOffer"]

RejectReason = Enum(
    Int8ub,
    too_old=ord("O"),
    too_far_ahead=ord("A"),
    rate_limited=ord("L"),
    wrong_session=ord("W"),
    malformed=ord("M"),
    count_out_of_range=ord("C"),
)

RecordImage = Struct(
    "msg_type" / Const(b"I") * "record image",
    "timestamp_ns" / Timestamp * "time the image was taken, ns since the epoch",
    "instrument_id" / InstrumentId * "instrument id",
    "symbol" / Symbol * "ticker symbol, ASCII",
    "price_exponent" / Int8sb * "prices of this instrument are raw × 10**price_exponent",
    "fields" / PrefixedArray(Int16ub, FieldValue) * "every field the instrument has, by field id",
) * "All fields of one instrument, as part of an initial image."

EndOfImage = Struct(
    "msg_type" / Const(b"G") * "end of image",
    "timestamp_ns" / Timestamp * "time the image was taken, ns since the epoch",
    "sequence_number" / Int64ub * "the image reflects every message up to and including this one",
    "instrument_count" / Int32ub * "number of record images sent before this message",
) * "Ends an initial image; apply live messages with sequence numbers above sequence_number."

RetransmissionReject = Struct(
    "msg_type" / Const(b"J") * "retransmission reject",
    "timestamp_ns" / Timestamp * "time of the reject, ns since the epoch",
    "reason" / RejectReason * "O too old, A too far ahead, L rate limited, W wrong session, M malformed, C bad count",
    "requested_sequence_number" / Int64ub * "first sequence number of the refused request",
    "requested_message_count" / Int16ub * "message count of the refused request",
    "retry_after_ns" / Int64ub * "do not ask this server again before this many ns; 0 = do not retry",
    "first_available_sequence_number" / Int64ub * "oldest sequence number the server still holds",
    "next_sequence_number" / Int64ub * "sequence number the server will hold next",
) * "A re-request the server will not serve, and why; never answered with silence."

ImageOffer = Struct(
    "msg_type" / Const(b"O") * "image offer",
    "timestamp_ns" / Timestamp * "time of the offer, ns since the epoch",
    "image_address" / Int32ub * "IPv4 address of the SoupBinTCP image listener; 0 = the address this packet came from",
    "image_port" / Int16ub * "TCP port of the image listener",
    "next_sequence_number" / Int64ub * "sequence number the server will hold next (how current its image is)",
    "instrument_count" / Int32ub * "instruments in the server's image",
) * "A pool server can serve an initial image of the session: the answer to an image query on the request group."
