"""The ITCH 5.0 example schema (examples/itch/) against an independent parser, `itchfeed`.

Wireshark's own nasdaq_itch knows only ITCH 2.0/3.0 (see tests/wireshark/test_lua_itch.py), so
it cannot check a 5.0 declaration; itchfeed (PyPI, MIT, pure Python) can. Random messages of
every type the example declares are built with construct; itchfeed must read the same values
and re-encode the same bytes, and the MoldUDP64 payload of a datagram carrying them must parse
whole with its stream parser (MoldUDP64's u16 block length is ITCH's 0x00 + length framing).
"""

from __future__ import annotations

import os

os.environ["ITCH_NO_CPP"] = "1"  # the pure-Python parser is the reference, not its optional C++ drop-in

import pytest  # noqa: E402
from construct import EnumIntegerString  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from itch.messages import messages as ITCH_TYPES  # noqa: E402
from itch.parser import MessageParser  # noqa: E402

from decoders import EncodeError, build_table, make_session  # noqa: E402
from decoders.moldudp64 import HEADER_SIZE, encode_datagram  # noqa: E402
from examples.itch.schema import MESSAGES  # noqa: E402
from tests.schema_strategies import message_dicts, plain  # noqa: E402

ITCH_NAME = {"luld_reference_price_tier": "luld_ref", "original_order_reference_number": "order_reference_number"}  # our field name -> itchfeed's attribute, where they differ
PADDED = {"stock": 8, "issue_sub_type": 2}  # ITCH alphanumerics: left justified, padded with spaces


def _itch_text(length: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"), min_size=1, max_size=length).map(lambda s: s.ljust(length))


def itch_messages(name: str) -> st.SearchStrategy[dict]:
    """Values for `name` from the schema's own IR, alphanumerics as ITCH sends them."""
    con = MESSAGES[name]
    return message_dicts(con, name).flatmap(
        lambda d: st.fixed_dictionaries({k: _itch_text(PADDED[k]) for k in d if k in PADDED}).map(lambda texts: {**d, **texts}))


def same_values(name: str, raw: bytes) -> object:
    """itchfeed's reading of `raw`, after checking each field equals construct's."""
    ours = MESSAGES[name].parse(raw)
    theirs = ITCH_TYPES[raw[:1]](raw)
    assert theirs.message_type == raw[:1] and theirs.message_size == len(raw), name
    for field, value in ours.items():
        if field.startswith("_") or field == "message_type":
            continue
        got = getattr(theirs, ITCH_NAME.get(field, field))
        if isinstance(value, EnumIntegerString):  # an Enum's name: compare its wire value
            value = value.intvalue
        if isinstance(value, str):  # a padded alphanumeric
            assert got == value.encode("ascii"), (name, field, got, value)
        elif isinstance(got, bytes):  # one character: itchfeed keeps it as bytes
            assert got == bytes([int(value)]), (name, field, got, value)
        else:
            assert got == int(value), (name, field, got, value)
    return theirs


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_message_type_reads_and_re_encodes_alike(data: st.DataObject) -> None:
    for name in MESSAGES:
        d = data.draw(itch_messages(name), label=name)
        raw = MESSAGES[name].build(d)
        theirs = same_values(name, raw)
        assert theirs.to_bytes() == raw, name


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(MESSAGES)), min_size=1, max_size=40), st.data())
def test_a_moldudp64_payload_parses_whole_with_the_stream_parser(names: list[str], data: st.DataObject) -> None:
    raws = [MESSAGES[n].build(data.draw(itch_messages(n))) for n in names]
    datagram = encode_datagram(make_session(0xABCD, 1), 1, raws)
    expected = []
    for raw in raws:  # itchfeed's stream parser stops after the end-of-messages system event (code C)
        expected.append(raw)
        if raw[:1] == b"S" and raw[-1:] == b"C":
            break
    parsed = list(MessageParser().parse_stream(datagram[HEADER_SIZE:]))
    assert [m.to_bytes() for m in parsed] == expected
    for m, raw, n in zip(parsed, expected, names, strict=False):
        same_values(n, raw)
        assert m.message_type == raw[:1]


ITCH_CODECS = build_table(MESSAGES)  # the fast codecs derived from the example: what a line handler over ITCH decodes with


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_the_fast_codecs_derived_from_the_example_agree_with_construct(data: st.DataObject) -> None:
    """6-byte timestamps included: one schema, one more backend, byte for byte."""
    for name in MESSAGES:
        d = data.draw(itch_messages(name), label=name)
        raw = MESSAGES[name].build(d)
        codec = ITCH_CODECS.by_name[name]
        msg = ITCH_CODECS.decode(raw)
        assert codec.encode(msg) == raw, name
        assert codec.to_dict(msg) == plain(MESSAGES[name].parse(raw)), name
        assert msg[codec.index["timestamp"]] == d["timestamp"]
        with pytest.raises(EncodeError):
            codec.encode(msg[: codec.index["timestamp"]] + (1 << 48,) + msg[codec.index["timestamp"] + 1:])  # does not fit 6 bytes
