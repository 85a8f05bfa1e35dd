"""Every backend agrees with construct: fast encode == construct build, fast decode == construct parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import DatagramWriter, decode_datagram, decode_request, encode_datagram, encode_request
from decoders.schema import MESSAGES
from decoders.schema.framing import SOUP_PACKETS, DownstreamPacket, RequestPacket
from decoders.soup import SOUP
from tests.schema_strategies import message_dicts, plain

SESSION = make_session(SCHEMA_FINGERPRINT, 42)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_message_type_has_a_fast_codec(name: str) -> None:
    codec = CODECS.by_name[name]
    assert CODECS.decoders[codec.type_byte[0]] is not None


@pytest.mark.parametrize("name", sorted(MESSAGES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fast_codec_agrees_with_construct(name: str, data: st.DataObject) -> None:
    con = MESSAGES[name]
    codec = CODECS.by_name[name]
    d = data.draw(message_dicts(con, name))
    built = con.build(d)
    msg = codec.from_dict(d)
    assert codec.encode(msg) == built  # construct build == fast encode, byte for byte
    decoded = CODECS.decode(built)
    assert decoded == msg  # round trip
    assert codec.to_dict(decoded) == plain(con.parse(built))  # construct parse == fast decode


@settings(max_examples=100, deadline=None)
@given(
    seq=st.integers(1, 2**64 - 100),
    picks=st.lists(st.tuples(st.sampled_from(sorted(MESSAGES)), st.data()), min_size=1, max_size=12),
)
def test_datagrams_agree_with_construct_framing(seq: int, picks: list) -> None:
    msgs = []
    for name, data in picks:
        msgs.append(CODECS.by_name[name].from_dict(data.draw(message_dicts(MESSAGES[name], name))))
    blocks = [CODECS.encode(m) for m in msgs]
    ours = encode_datagram(SESSION, seq, blocks)
    theirs = DownstreamPacket.build(
        dict(
            session=SESSION,
            sequence_number=seq,
            message_count=len(blocks),
            message_blocks=[dict(message_length=len(b), message_data=b) for b in blocks],
        )
    )
    assert ours == theirs
    parsed = DownstreamPacket.parse(ours)
    session, first, count, decoded = decode_datagram(ours, CODECS)
    assert (session, first, count) == (parsed.session, parsed.sequence_number, parsed.message_count)
    assert [CODECS.encode(m) for m in decoded] == [blk.message_data for blk in parsed.message_blocks]
    assert decoded == msgs
    writer = DatagramWriter(CODECS, max_bytes=65507)
    for m in msgs:
        assert writer.add(m)
    assert bytes(writer.finish(SESSION, seq)) == ours


def test_heartbeat_and_end_of_session_agree_with_construct() -> None:
    from decoders.moldudp64 import encode_end_of_session, encode_heartbeat

    hb = DownstreamPacket.parse(encode_heartbeat(SESSION, 77))
    assert (hb.sequence_number, hb.message_count, list(hb.message_blocks)) == (77, 0, [])
    eos = DownstreamPacket.parse(encode_end_of_session(SESSION, 78))
    assert (eos.sequence_number, eos.message_count, eos.message_blocks) == (78, 0xFFFF, None)


@given(seq=st.integers(0, 2**64 - 1), count=st.integers(0, 0xFFFF))
def test_request_packet_agrees_with_construct(seq: int, count: int) -> None:
    raw = encode_request(SESSION, seq, count)
    assert raw == RequestPacket.build(dict(session=SESSION, sequence_number=seq, requested_message_count=count))
    assert decode_request(raw) == (SESSION, seq, count)


@pytest.mark.parametrize("name", sorted(SOUP_PACKETS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_soupbintcp_packets_agree_with_construct(name: str, data: st.DataObject) -> None:
    con = SOUP_PACKETS[name]
    codec = SOUP.by_name[name]
    d = data.draw(message_dicts(con, name))
    if "packet_length" in d and codec.tail is not None:  # variable packets: length covers type + payload
        d["packet_length"] = 1 + len(d[codec.tail.name])
    built = con.build(d)
    msg = codec.from_dict(d)
    assert codec.encode(msg) == built
    assert codec.to_dict(codec.decode(built, 0, len(built))) == plain(con.parse(built))
