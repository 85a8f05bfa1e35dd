"""Image.apply_many in C (mdcommon/_replica.c) gives the image the Python Image.apply gives, message for message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders.schema.fields import FIELDS
from mdcommon import image as image_module
from mdcommon.image import Image
from tests.conftest import need_native

NATIVE = image_module._NATIVE
iids = st.integers(1, 6)
ints = st.integers(-(2**63), 2**63 - 1)
field_ids = st.sampled_from([*FIELDS, 99, 1000])
value_types = st.integers(1, 5)
message = st.one_of(
    st.tuples(st.just(b"Q"), ints, iids, ints, ints, ints, ints),
    st.tuples(st.just(b"T"), ints, iids, st.integers(-10**6, 10**6), st.integers(0, 10**6), st.sampled_from([66, 83, 32]), ints),
    st.tuples(st.just(b"F"), ints, iids, field_ids, value_types, ints),
    st.tuples(st.just(b"R"), ints, iids, st.text("ABCXYZ", max_size=5), st.integers(-9, 0)),
    st.tuples(st.just(b"I"), ints, iids, st.just("SYM"), st.just(-4),
              st.lists(st.tuples(field_ids, value_types, ints), max_size=4).map(tuple)),
    st.tuples(st.just(b"S"), ints, st.integers(0, 255), ints),  # a system event: no instrument state
)


@pytest.fixture
def native():
    return need_native(NATIVE, "mdcommon/_replica.c")


def python_image(msgs: list[tuple]) -> Image:
    """The reference: Image.apply with the C replica switched off."""
    img = Image()
    image_module._NATIVE = None
    try:
        for m in msgs:
            img.apply(m)
    finally:
        image_module._NATIVE = NATIVE
    return img


@settings(max_examples=400, deadline=None)
@given(st.lists(message, max_size=80), st.integers(1, 10))
def test_the_same_image_from_the_same_messages(msgs: list[tuple], chunk: int) -> None:
    need_native(NATIVE, "mdcommon/_replica.c")
    img, one = Image(), Image()
    for i in range(0, len(msgs), chunk):
        img.apply_many(msgs[i : i + chunk])
    for m in msgs:
        one.apply(m)  # one at a time: through C as well
    assert img.records == python_image(msgs).records == one.records
    assert {k: r.types for k, r in one.records.items()} == {k: r.types for k, r in python_image(msgs).records.items()}
    assert {k: r.types for k, r in img.records.items()} == {k: r.types for k, r in python_image(msgs).records.items()}


def test_a_snapshot_in_progress_keeps_its_copy_on_write(native) -> None:
    img = python_image([(b"R", 1, 7, "ACME", -4), (b"Q", 2, 7, 100, 1, 101, 1)])
    ids, _ = img.freeze()
    img.apply_many([(b"Q", 3, 7, 200, 1, 201, 1)])
    assert img.frozen_record(7).values[FIELDS_BY_ID["bid_price"]] == 100  # the snapshot still sees the old quote
    assert img.records[7].values[FIELDS_BY_ID["bid_price"]] == 200


def test_a_tuple_of_the_wrong_shape_raises_as_in_python(native) -> None:
    img = python_image([(b"R", 1, 7, "ACME", -4)])
    with pytest.raises(ValueError):
        Image().apply((b"Q", 1, 7, 1))
    with pytest.raises(ValueError):
        img.apply_many([(b"Q", 1, 7, 1)])
    with pytest.raises(ValueError):  # a record image with a field of the wrong shape: C leaves it to Python, which says so
        img.apply((b"I", 1, 7, "ACME", -4, ((1, 2),)))
    assert img.records[7].symbol == "ACME"


FIELDS_BY_ID = {f.name: fid for fid, f in FIELDS.items()}


@settings(max_examples=300, deadline=None)
@given(st.lists(message, max_size=60), st.integers(0, 60), st.integers(1, 10))
def test_a_snapshot_sees_the_same_frozen_image_through_c(msgs: list[tuple], freeze_at: int, chunk: int) -> None:
    """A snapshot in progress (Image.freeze): the C replica copies each record on its first change, as Python does,
    so the frozen view and the live image are the same as the Python path's."""
    need_native(NATIVE, "mdcommon/_replica.c")

    def run(native: object) -> tuple:
        image_module._NATIVE = native
        try:
            img = Image()
            img.apply_many(msgs[:freeze_at])
            ids, _ = img.freeze()
            rest = msgs[freeze_at:]
            for i in range(0, len(rest), chunk):
                img.apply_many(rest[i : i + chunk])
            frozen = {iid: img.frozen_record(iid) for iid in range(1, 7)}
            return ids, frozen, img.records, {k: r.types for k, r in img.records.items()}
        finally:
            image_module._NATIVE = NATIVE

    assert run(NATIVE) == run(None)


@settings(max_examples=300, deadline=None)
@given(st.lists(message, max_size=60), st.integers(0, 60), st.lists(st.integers(0, 8), max_size=10))
def test_a_snapshots_record_images_are_the_python_paths(msgs: list[tuple], freeze_at: int, ids: list[int]) -> None:
    """Record.message and Image.frozen_messages in C give the Python path's record image messages (field order, value
    types from the record, the dictionary or the default), and the encoded bytes a snapshot sends are the same."""
    need_native(NATIVE, "mdcommon/_replica.c")
    from decoders import CODECS

    img = python_image(msgs[:freeze_at])
    img.freeze()
    img.apply_many(msgs[freeze_at:])  # through C: records change (copied on write) and appear after the freeze
    wanted = [iid for iid in ids if img.frozen_record(iid) is not None]
    for rec in img.records.values():
        assert NATIVE.record_message(rec, 5) == rec._message(5)
    got, got_bytes = img.frozen_messages(ids, 5), img.frozen_messages(ids, 5, CODECS.encode)
    image_module._NATIVE = None
    try:
        assert got == img.frozen_messages(ids, 5) == [img.frozen_record(iid)._message(5) for iid in wanted]
        assert got_bytes == img.frozen_messages(ids, 5, CODECS.encode)
    finally:
        image_module._NATIVE = NATIVE


def test_a_record_of_another_class_makes_its_own_message(native) -> None:
    class Odd(image_module.Record):
        __slots__ = ()

        def message(self, timestamp_ns: int) -> tuple:
            return ("odd", self.instrument_id)

    img = python_image([(b"R", 1, 7, "ACME", -4), (b"Q", 2, 8, 1, 2, 3, 4)])
    img.records[9] = Odd(9)
    img.records[8].types[999] = None  # Record.value_type reads a None there as no entry: the default type
    img.records[8].values[999] = 5
    assert img.frozen_messages([7, 8, 9, 10], 3) == [img.records[7]._message(3), img.records[8]._message(3), ("odd", 9)]
    assert img.records[8].message(3)[5][-1] == (999, 1, 5)
    with pytest.raises(ZeroDivisionError):
        img.frozen_messages([7], 3, lambda m: 1 / 0)  # the encoder's exception comes through


def test_what_c_does_not_read_itself_is_pythons_definition(native) -> None:
    """A subclass that keeps Record.message, values that are not an exact dict, keys that are not ints: the Python
    definition (`_message`) decides, never a call back into C."""
    from collections import OrderedDict

    class Plain(image_module.Record):
        __slots__ = ()

    img = python_image([(b"Q", 2, 8, 1, 2, 3, 4)])
    img.records[9] = Plain(9, "P", -2)
    img.records[9].values[3] = 7
    img.records[10] = image_module.Record(10)
    img.records[10].values = OrderedDict([(5, 1), (2, 9)])
    img.records[11] = image_module.Record(11)
    img.records[11].values = {2.5: 1, 2: 3}  # a float key: Python sorts it among the ints
    want = [img.records[i]._message(4) for i in (8, 9, 10, 11)]
    assert [img.records[i].message(4) for i in (8, 9, 10, 11)] == want
    assert img.frozen_messages([8, 9, 10, 11], 4) == want
    assert want[3][5] == ((2, 1, 3), (2.5, 1, 1))
