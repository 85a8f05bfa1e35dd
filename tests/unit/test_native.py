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


# The decoders reuse a result tuple, and its ints, once nothing but their ring holds it (pooled_tuple in
# decoders/native_gen.py). What the application holds must never change; what it dropped is filled again.
POOL_SIZE = 64  # the ring of each message type, decoders/native_gen.py


def _decode(msgs: list[tuple]) -> list[tuple]:
    data = encode_datagram(SESSION, 1, [CODECS.encode(m) for m in msgs])
    return NATIVE.decode_messages(memoryview(data), len(msgs))


def _same(got: object, expected: object) -> bool:
    return got == expected and type(got) is type(expected) and hash(got) == hash(expected) and repr(got) == repr(expected)


FIXED = [name for name, codec in CODECS.by_name.items() if codec.tail is None]  # the messages decoded into pooled tuples
one_of_each_fixed = st.tuples(*[message_dicts(MESSAGES[name], name).map(CODECS.by_name[name].from_dict) for name in FIXED])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(messages, min_size=1, max_size=POOL_SIZE + 6), st.lists(st.integers(0, 10**6), max_size=8)),
                min_size=1, max_size=6), one_of_each_fixed)
def test_what_the_application_keeps_never_changes_through_later_decodes(rounds: list[tuple[list[tuple], list[int]]],
                                                                        fill: tuple[tuple, ...]) -> None:
    """Datagrams of any messages decoded one after another (more of one type than the ring holds, too); after each,
    some tuples are kept whole and some single values are kept out of a tuple that is dropped, and then a datagram
    of POOL_SIZE messages of each pooled type takes every ring all the way round. At the end every kept object still
    is, in value, type, hash and repr, what it was decoded as."""
    _native()
    kept: list[tuple[object, object]] = []
    filler = [m for m in fill for _ in range(POOL_SIZE)]
    for msgs, picks in rounds:
        got = _decode(msgs)
        assert got == msgs
        for k in picks:
            i = k % len(msgs)
            if k % 2:
                kept.append((got[i], msgs[i]))
            else:
                j = 1 + (k // 2) % (len(msgs[i]) - 1)
                kept.append((got[i][j], msgs[i][j]))
        del got
        assert _decode(filler) == filler
    for obj, expected in kept:
        assert _same(obj, expected)


def test_a_dropped_tuple_is_filled_again_from_its_ring() -> None:
    """One quote decoded at a time and dropped: the tuples come round every POOL_SIZE decodes, the ring's order
    (CPython's own free list would hand back the same tuple every time)."""
    _native()
    ids = []
    for k in range(3 * POOL_SIZE):
        got = _decode([(b"Q", 10**18 + k, 70_000 + k, -(10**9) - k, 5, 2**40 + k, 6)])
        assert got == [(b"Q", 10**18 + k, 70_000 + k, -(10**9) - k, 5, 2**40 + k, 6)]
        ids.append(id(got[0]))
        del got
    later = ids[POOL_SIZE:]
    assert len(set(later)) == POOL_SIZE and all(later[k] == later[k + POOL_SIZE] for k in range(POOL_SIZE))


_REWRITES = [2**63 - 1, -1, 257, -(2**63), 0, 2**30, -(2**30) - 1, 2**60, -6, -5, 256, 2**30 - 1, 2**60 - 1, -(2**62), 12_345]


def test_reused_ints_are_rewritten_right_across_every_digit_boundary() -> None:
    """Each value, then the next, written into the same ring's tuples and ints (three 30-bit digits to none, positive
    to negative, into and out of CPython's cached -5..256), and read back as Python reads any int."""
    _native()
    for value in _REWRITES + _REWRITES[::-1]:
        u = value % 2**64
        msg = (b"Q", u, u % 2**32, value, u, value, u)
        for _ in range(POOL_SIZE):
            got = _decode([msg, (b"F", u, u % 2**32, 3, 1, value)])
            assert all(_same(g, e) for g, e in zip(got[0] + got[1], msg + (b"F", u, u % 2**32, 3, 1, value)))
            assert got[0][3] + 1 - 1 == value and str(got[0][5]) == str(value) and int(str(got[0][1])) == u
            assert got[0][3].bit_length() == value.bit_length() and (got[0][3] < 0) == (value < 0)
            del got


def test_a_reused_tuple_hashes_as_its_new_value() -> None:
    """A message hashed (a set of messages seen, a dict key), dropped, and its tuple filled again: the hash is the
    new value's (CPython 3.14 caches a tuple's hash in it, where reuse is off)."""
    _native()
    for k in range(3 * POOL_SIZE):
        got = _decode([(b"T", 10**18 + k, 70_000 + k, 10**9 + k, 5, 66, 2**40 + k)])[0]
        assert hash(got) == hash((b"T", 10**18 + k, 70_000 + k, 10**9 + k, 5, 66, 2**40 + k)) == hash(tuple(list(got)))
        del got


def test_a_defect_half_way_through_a_tuple_leaves_the_ring_sound() -> None:
    """A directory entry whose symbol is not ASCII is a defect found after some of its tuple was written: the tuple,
    new or reused, leaves the ring; no half-filled tuple is left where the collector shows it, and the next entries
    decode right."""
    import gc

    _native()
    good = (b"R", 1, 70_001, "ACME", -4)
    bad = bytearray(encode_datagram(SESSION, 1, [CODECS.encode(good)]))
    bad[bad.index(b"ACME")] = 0xC3

    def half_filled() -> list[str]:
        return [r for o in gc.get_objects() if type(o) is tuple and len(o) == 5 and o[:1] == (b"R",) and "<NULL>" in (r := repr(o))]

    held = [_decode([good]) for _ in range(POOL_SIZE)]  # every ring slot held: the bad entries get new tuples
    for _ in range(POOL_SIZE + 1):
        assert NATIVE.decode_messages(bytes(bad), 1) is None
    assert half_filled() == []
    del held
    for _ in range(POOL_SIZE):  # now reused ones
        assert _decode([good]) == [good]
    for _ in range(POOL_SIZE + 1):
        assert NATIVE.decode_messages(bytes(bad), 1) is None
    gc.collect()
    assert half_filled() == []
    for k in range(2 * POOL_SIZE):
        assert _decode([(b"R", 2**40 + k, 70_000 + k, f"S{k}", -k % 128 - 64)]) == [(b"R", 2**40 + k, 70_000 + k, f"S{k}", -k % 128 - 64)]
