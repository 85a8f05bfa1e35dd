"""Image discovery on the request group: "who has an image of this session?", and the offers that answer it.

The query is a MoldUDP64 request packet with sequence number 0 and count 0 (a request for
nothing, which no server would serve as one), multicast to the channel's request group. A
pool server that can serve an image answers it unicast with an `image_offer` message in a
packet of sequence number 0 (decoders/schema/control.py); the first offer of our session
wins. Offers are taken only from the repair group's `sources` when it has some (the pool's
addresses); without them anyone who learns a handler's port can answer first, so list them
wherever the LAN is shared. Whatever its source, an image is checked as one from a configured
server is: an image claiming a sequence beyond the receive window is refused (join.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from decoders import CODECS, IMAGE_OFFER, DecodeError
from decoders.moldudp64 import decode_datagram, encode_request

__all__ = ["IMAGE_QUERY_TIMEOUT_NS", "Offer", "image_query", "parse_offer"]

IMAGE_QUERY_TIMEOUT_NS = 1_000_000_000  # no offer in this time: the fetch failed (the core tries again later)

_OFFER_FIELDS = CODECS.by_name["image_offer"].slots("image_address", "image_port", "next_sequence_number")


class Offer(NamedTuple):
    address: int  # IPv4 as an integer; 0 = the address the offer came from
    port: int
    next_sequence: int


def image_query(session: bytes) -> bytes:
    """The query packet for `session`."""
    return encode_request(session, 0, 0)


def parse_offer(data: Any, session: bytes) -> Offer | None:
    """The offer in `data` if it is a well-formed offer packet of `session`, else None."""
    try:
        got, seq, _, msgs = decode_datagram(data, CODECS)
    except DecodeError:
        return None
    if got != session or seq != 0:
        return None
    for m in msgs:
        if m[0] == IMAGE_OFFER and m[_OFFER_FIELDS[1]] > 0:
            return Offer(*(m[i] for i in _OFFER_FIELDS))
    return None
