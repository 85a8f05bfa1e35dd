"""The native backend (decoders/_native.c, generated from the schema) against the struct codecs.

The whole unit and model suite runs once on the active backend and once more with
MD_BACKEND=python (./scripts/test); this file checks the two directly: the same tuples from
the same datagrams, None exactly where the struct codecs raise, the same packed bytes, and a
generated file that is current. Under MD_REQUIRE_ALL=1 (CI) the native backend must be built.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import decoders
from decoders import CODECS, SCHEMA_FINGERPRINT, DecodeError, EncodeError, make_session, native_gen
from decoders.moldudp64 import HEADER_SIZE, DatagramWriter, decode_messages, encode_datagram
from decoders.schema import MESSAGES
from tests.conftest import need_native
from tests.schema_strategies import message_dicts

ROOT = Path(__file__).resolve().parents[2]
SESSION = make_session(SCHEMA_FINGERPRINT, 7)
NATIVE = CODECS.native


def _native() -> object:
    return need_native(NATIVE, f"decoders/_native.c ({decoders.BACKEND_REASON})")


def python_decode(data: bytes, count: int) -> list[tuple]:
    CODECS.native = None
    try:
        return decode_messages(data, count, CODECS)
    finally:
        CODECS.native = NATIVE


def test_the_committed_c_is_what_the_generator_writes() -> None:
    assert native_gen.TARGET.read_text() == native_gen.generate(), "run: python -m decoders.native_gen (then pip install -e .)"


def test_the_backend_is_named() -> None:
    assert ("native" if CODECS.native is not None else "python") == decoders.BACKEND
    if os.environ.get("MD_BACKEND") != "python":
        _native()
        assert decoders.BACKEND == "native" and NATIVE.FINGERPRINT == SCHEMA_FINGERPRINT


def test_md_backend_python_forces_the_struct_codecs() -> None:
    out = subprocess.run([sys.executable, "-c", "import decoders; print(decoders.BACKEND, decoders.CODECS.native)"], cwd=ROOT,
                         env={**os.environ, "MD_BACKEND": "python"}, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["python", "None"]


messages = st.sampled_from(sorted(MESSAGES)).flatmap(
    lambda name: message_dicts(MESSAGES[name], name).map(lambda d, name=name: CODECS.by_name[name].from_dict(d)))


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, min_size=1, max_size=20))
def test_the_same_tuples_from_the_same_datagrams(msgs: list[tuple]) -> None:
    native = _native()
    data = encode_datagram(SESSION, 1, [CODECS.encode(m) for m in msgs])
    assert native.decode_messages(data, len(msgs)) == python_decode(data, len(msgs)) == msgs
    assert native.decode_messages(memoryview(bytearray(data)), len(msgs)) == msgs  # a receive buffer's view


@settings(max_examples=500, deadline=None)
@given(st.lists(messages, min_size=1, max_size=8), st.data())
def test_none_exactly_where_the_struct_codecs_raise(msgs: list[tuple], data: st.DataObject) -> None:
    """Bytes flipped, cut or added anywhere, the count wrong: the two backends reach the same verdict."""
    native = _native()
    raw = bytearray(encode_datagram(SESSION, 1, [CODECS.encode(m) for m in msgs]))
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "cut", "add"]))
        if how == "flip" and len(raw) > HEADER_SIZE:
            i = data.draw(st.integers(HEADER_SIZE, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        elif how == "cut" and len(raw) > HEADER_SIZE:
            del raw[data.draw(st.integers(HEADER_SIZE, len(raw) - 1)):]
        else:
            raw += data.draw(st.binary(min_size=1, max_size=8))
    count = len(msgs) + data.draw(st.integers(-1, 1))
    try:
        expected = python_decode(bytes(raw), count)
    except DecodeError:
        expected = None
    assert native.decode_messages(bytes(raw), count) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, min_size=1, max_size=60), st.integers(60, 1400))
def test_the_same_bytes_and_offsets_when_packing(msgs: list[tuple], max_bytes: int) -> None:
    _native()
    results = []
    for native in (NATIVE, None):
        CODECS.native = native
        try:
            w, offsets, packed = DatagramWriter(CODECS, max_bytes), [], []
            try:
                while len(packed) < len(msgs):
                    w.reset()
                    stop = w.add_many(msgs, len(packed), offsets)
                    packed += msgs[len(packed):stop]
                    results.append(bytes(w.finish(SESSION, 1)))
                    assert stop > 0
            except EncodeError as exc:
                results.append(("EncodeError", str(exc)))
            results.append(tuple(offsets))
        finally:
            CODECS.native = NATIVE
    half = len(results) // 2
    assert results[:half] == results[half:]


@pytest.mark.parametrize("bad", [
    (b"Q", 1, 2, 3, 4, 5, 2**64),           # ask_size past u64
    (b"Q", -1, 2, 3, 4, 5, 6),              # timestamp below 0
    (b"T", 1, 2, 3, 4, 256, 6),             # aggressor past u8
    (b"Q", 1, 2, 3.5, 4, 5, 6),             # a float price: prices are integers
    (b"Q", 1, 2, 3, 4, 5),                  # a field short
    (b"R", 1, 2, "S" * 17, -4),              # a symbol past its 16 bytes
    (b"R", 1, 2, "SYM\u00e9", -4),           # a symbol that is not ASCII
    (b"R", 1, 2, b"SYM", -4),               # a symbol as bytes, not str
    (b"R", 1, 2, "SYM", 128),               # a price exponent past i8
])
def test_a_value_that_does_not_fit_is_the_struct_codecs_error(bad: tuple) -> None:
    """The C packer stops at it; the struct codecs raise the one EncodeError, both backends alike."""
    errors = []
    for native in (NATIVE, None):
        CODECS.native = native
        try:
            with pytest.raises(EncodeError) as exc:
                DatagramWriter(CODECS, 1400).add_many([(b"Q", 1, 2, 3, 4, 5, 6), bad])
            errors.append(str(exc.value))
        finally:
            CODECS.native = NATIVE
    assert len(set(errors)) == 1


def test_a_build_from_another_schema_is_never_used() -> None:
    """Version skew: a native module generated from another schema decodes nothing, loudly."""
    _native()
    from decoders.native import load

    with pytest.warns(UserWarning, match="generated from another schema"):
        module, why = load(SCHEMA_FINGERPRINT ^ 1)
    assert module is None and why == "stale build"


@settings(max_examples=400, deadline=None)
@given(messages)
def test_encode_message_writes_the_struct_codecs_bytes(msg: tuple) -> None:
    native = _native()
    assert native.encode_message(msg) == CODECS.codec_for(msg).encode(msg)


class _Int(int):
    pass


_EDGES = [0, 1, -1, 2**30 - 1, 2**30, -(2**30), 2**60 - 1, 2**60, -(2**60), 2**62, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1,
          2**64 - 1, 2**64, 2**90, -(2**90), True, False, _Int(2**40), _Int(-5)]


@pytest.mark.parametrize("value", _EDGES, ids=repr)
def test_the_packers_inline_int_reads_agree_at_every_digit_boundary(value: int) -> None:
    """Exact ints of up to three 30-bit digits are read from their digits in C: at each boundary of that fast path
    (and for a bool or an int subclass, which take the API) the bytes, or the refusal, are the struct codecs'."""
    native = _native()
    plain = ((b"Q", 1, 2, 3, 4, 5, 6), (b"F", 1, 2, 3, 1, 5), (b"T", 1, 2, 3, 4, 66, 6))  # u64, u32, i64, u16, u8 fields
    for msg in [m[:k] + (value,) + m[k + 1:] for m in plain for k in range(1, len(m))]:  # the value in one field at a time
        try:
            expected = CODECS.codec_for(msg).encode(msg)
        except EncodeError:
            expected = None
        assert native.encode_message(msg) == expected
        w = DatagramWriter(CODECS, 1400)  # the packers the plant seals with
        if expected is None:
            with pytest.raises(EncodeError):
                w.add_many([msg])
        else:
            assert w.add_many([msg]) == 1 and bytes(w.finish(SESSION, 1))[HEADER_SIZE + 2:] == expected


@pytest.mark.parametrize("bad", [
    (b"I", 1, 7, "ACME", -4, ((1, 2, 3), (2, 9))),           # an array item short of a field
    (b"I", 1, 7, "ACME" * 5, -4, ()),                         # a symbol longer than 16
    (b"I", 1, 7, "AÇME", -4, ()),                             # not ASCII
    (b"R", 1, 7, "ACME", 128),                                # exponent past i8
    (b"I", 1, 7, "ACME", -4, [(1, 2, 2**63)]),                # a value past i64
])
def test_encode_message_leaves_what_does_not_fit_to_the_struct_codecs(bad: tuple) -> None:
    native = _native()
    assert native.encode_message(bad) is None
    with pytest.raises(EncodeError):
        CODECS.encode(bad)


@settings(max_examples=300, deadline=None)
@given(messages, st.binary(max_size=3), st.integers(0, 60))
def test_decode_message_agrees_and_leaves_defects_to_the_struct_codecs(msg: tuple, junk: bytes, cut: int) -> None:
    native = _native()
    raw = CODECS.codec_for(msg).encode(msg)
    assert native.decode_message(raw) == msg == CODECS.decode(raw)
    for bad in (raw + junk if junk else raw[:-1], raw[: max(0, len(raw) - cut)]):
        if bad == raw:
            continue
        CODECS.native = None
        try:
            try:
                expected = CODECS.decode(bad)
            except DecodeError:
                expected = None
        finally:
            CODECS.native = NATIVE
        assert native.decode_message(bad) == expected


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.one_of(messages, st.sampled_from([(b"Q", -1, 2, 3, 4, 5, 6), (b"Q", 1, 2)])), max_size=40), min_size=1,
                max_size=6), st.integers(60, 1400))
def test_the_plant_seals_the_same_datagrams_and_journal(batches: list[list[tuple]], max_bytes: int) -> None:
    """Sequencer.publish_many with the native packer (decoders/_native_seal.c) against the struct codecs' path, batch by
    batch (some unencodable: all or nothing, rule 5): the same datagrams, errors, open datagram and journal."""
    from retransmit.journal import Journal
    from tickerplant.sequencer import Sequencer

    _native()
    seen = []
    for sealed in (True, False):
        journal = Journal()
        seq = Sequencer(SESSION, CODECS, max_datagram_bytes=max_bytes, journal=journal)
        assert seq._seal is not None
        if not sealed:
            seq._seal = None
            CODECS.native = None
        out = []
        try:
            for k, batch in enumerate(batches):
                try:
                    out.append(seq.publish_many(batch, k))
                except EncodeError as exc:
                    out.append(("EncodeError", str(exc)))
            out.append(seq.flush(99))
        finally:
            CODECS.native = NATIVE
        seen.append((out, seq.next_sequence, seq.datagrams, seq.messages, journal.first_sequence, journal.next_sequence,
                     journal.nbytes, journal.get(1, 10**6)))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("value", [0, 1, 255, 256, 65_534, 65_535, 65_536, 65_537, 2**32 - 1])
def test_unsigned_fields_decode_to_their_value_on_both_sides_of_the_shared_small_ints(value: int) -> None:
    """Unsigned fields below 65,536 decode to shared int objects (decoders/native_gen.py, small_uint)."""
    need_native(NATIVE, "decoders/_native.c")
    msgs = [(b"Q", 1, value, 5, value, 7, value), (b"T", 2, value, 3, value, 66, value),
            (b"F", 3, value, value % 65_536, 1, -value)]
    session = make_session(SCHEMA_FINGERPRINT, 1)
    for _ in range(2):  # the second time from the cache
        data = bytes(encode_datagram(session, 1, [CODECS.encode(m) for m in msgs]))
        got = NATIVE.decode_messages(memoryview(data), len(msgs))
        assert got == msgs and all(type(x) is int for m in got for x in m[1:])
