"""The wire schema, declared once with construct.

`MESSAGES` lists every message that can appear in a MoldUDP64 block or a SoupBinTCP
data packet, keyed by its snake_case name; the fast codecs, the fingerprint and the
Wireshark dissector are all derived from it.
"""

from __future__ import annotations

from . import control, fields, framing, messages, types
from .control import EndOfImage, ImageOffer, RecordImage, RetransmissionReject
from .messages import FieldUpdate, InstrumentDirectory, Quote, SystemEvent, Trade

__all__ = ["MESSAGES", "control", "fields", "framing", "messages", "types"]

MESSAGES = {
    "system_event": SystemEvent,
    "instrument_directory": InstrumentDirectory,
    "quote": Quote,
    "trade": Trade,
    "field_update": FieldUpdate,
    "record_image": RecordImage,
    "end_of_image": EndOfImage,
    "retransmission_reject": RetransmissionReject,
    "image_offer": ImageOffer,
}
