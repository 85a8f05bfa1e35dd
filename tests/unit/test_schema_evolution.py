"""A layout change reaches the fast codec and the fingerprint with no other edit; docs do not."""

from __future__ import annotations

import pytest
from construct import Int8ub, Int16ub, Struct

from decoders import CODECS, SCHEMA_FINGERPRINT, DecodeError, DecodeErrorKind, build_table, fingerprint, make_session, schema_tag
from decoders.ir import UnsupportedConstruct
from decoders.moldudp64 import decode_datagram, encode_datagram
from decoders.schema import MESSAGES
from decoders.schema.messages import Quote


def with_quote(new_quote: Struct) -> dict:
    return {**MESSAGES, "quote": new_quote}


def test_adding_a_field_changes_codec_and_fingerprint() -> None:
    evolved = with_quote(Struct(*Quote.subcons, "venue" / Int8ub * "trading venue id"))
    table = build_table(evolved)
    old, new = CODECS.by_name["quote"], table.by_name["quote"]
    assert new.size == old.size + 1
    assert new.names == old.names + ("venue",)
    msg = (b"Q", 1, 2, 3, 4, 5, 6, 7)
    assert table.encode(msg)[-1] == 7
    assert fingerprint(evolved) != SCHEMA_FINGERPRINT
    assert schema_tag(fingerprint(evolved)) != schema_tag(SCHEMA_FINGERPRINT)


def test_widening_a_field_changes_the_fingerprint() -> None:
    subcons = [("instrument_id" / Int16ub) if s.name == "instrument_id" else s for s in Quote.subcons]
    assert fingerprint(with_quote(Struct(*subcons))) != SCHEMA_FINGERPRINT


def test_changing_docs_keeps_the_fingerprint() -> None:
    redocumented = Struct(*[s * "another doc" if s.name == "bid_price" else s for s in Quote.subcons])
    assert fingerprint(with_quote(redocumented)) == SCHEMA_FINGERPRINT


def test_old_decoder_refuses_the_new_layout_instead_of_misdecoding() -> None:
    table = build_table(with_quote(Struct(*Quote.subcons, "venue" / Int8ub)))
    evolved_fp = fingerprint(with_quote(Struct(*Quote.subcons, "venue" / Int8ub)))
    datagram = encode_datagram(make_session(evolved_fp, 1), 1, [table.encode((b"Q", 1, 2, 3, 4, 5, 6, 7))])
    assert datagram[:4] != make_session(SCHEMA_FINGERPRINT, 1)[:4]  # refused by tag before any decoding
    with pytest.raises(DecodeError) as err:
        decode_datagram(datagram, CODECS)  # and even if decoded, the length check refuses it
    assert err.value.kind == DecodeErrorKind.LENGTH_MISMATCH


def test_unsupported_construct_fails_loudly_with_its_path() -> None:
    from construct import Float64b, VarInt

    with pytest.raises(UnsupportedConstruct, match=r"quote\.mid"):
        build_table(with_quote(Struct(*Quote.subcons, "mid" / Float64b)))
    with pytest.raises(UnsupportedConstruct, match=r"quote\.tag"):
        build_table(with_quote(Struct(*Quote.subcons, "tag" / VarInt)))
