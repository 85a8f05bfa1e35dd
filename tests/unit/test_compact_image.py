"""CompactImage (mdcommon/_compact.c) holds the image the Python `Image` defines, message for message and through
snapshots: a stateful test drives both with every message shape a feed or a caller can produce."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from decoders import CODECS, soup
from decoders.errors import DecodeError
from decoders.schema.fields import FIELDS, FIELDS_BY_NAME
from mdcommon import compact_image as compact_module
from mdcommon import image as image_module
from mdcommon.compact_image import CompactImage, make_image
from mdcommon.image import Image, Record
from tests.conftest import need_native

I64 = 2**63
iids = st.one_of(st.integers(1, 3), st.integers(1, 6), st.sampled_from([0, 2**32 - 1]))
small = st.integers(-1000, 1000)  # prices and sizes that meet again, so comparisons and sums matter
ints = st.one_of(small, st.integers(-I64, I64 - 1), st.sampled_from([I64 - 1, -I64, I64, 2**64 - 1, -I64 - 1]))
field_ids = st.one_of(st.sampled_from(list(FIELDS)), st.sampled_from([0, 19, 40, 63, 64, 99, 1000]))
value_types = st.one_of(st.integers(1, 5), st.just(2**70), st.none())  # None: "no type of its own" in Record.value_type
odd_values = st.one_of(small, ints, st.booleans(), st.just(2**80))
fields = st.lists(st.tuples(field_ids, value_types, odd_values), max_size=5)
wire = st.one_of(  # what a feed carries: the C paths
    st.tuples(st.just(b"Q"), small, iids, small, small, small, small),
    st.tuples(st.just(b"T"), small, iids, small, st.integers(0, 1000), st.sampled_from([66, 83, 32]), small),
    st.tuples(st.just(b"F"), small, iids, st.one_of(st.sampled_from([1, 2, 15]), st.sampled_from(list(FIELDS))), st.integers(1, 5), small),
    st.tuples(st.just(b"R"), small, iids, st.text("ABCXYZ", max_size=5), st.integers(-9, 0)),
    st.tuples(st.just(b"I"), small, iids, st.just("SYM"), st.just(-4),
              st.lists(st.tuples(st.sampled_from(list(FIELDS)), st.integers(1, 5), small), max_size=5).map(tuple)),
)
odd = st.one_of(  # what else a caller can hand it: beyond int64, other shapes, other fields, other types
    st.tuples(st.just(b"Q"), ints, iids, ints, ints, ints, ints),
    st.tuples(st.just(b"T"), ints, iids, ints, ints, st.sampled_from([66, 83, 32]), ints),
    st.tuples(st.just(b"F"), ints, iids, field_ids, value_types, odd_values),
    st.tuples(st.just(b"I"), ints, iids, st.just("SYM"), st.just(-4), fields.map(tuple)),
    st.tuples(st.just(b"I"), ints, iids, st.just("LST"), st.just(-2), fields),  # fields as a list: the Python path
    st.tuples(st.just(b"S"), ints, st.integers(0, 255), ints),  # a system event: no instrument state
    st.tuples(st.just(b"Q"), ints, iids, ints),  # the wrong shape: both raise, neither changes
    st.builds(lambda t, iid, v: [b"F", t, iid, 1, 2, v], ints, iids, ints),  # a list, not a tuple
    st.tuples(st.just(b"T"), small, iids, small, st.just(I64 - 1), st.just(66), st.just(1)),  # volume past int64
    st.tuples(st.just(b"T"), small, iids, st.none(), small, st.just(66), st.just(1)),  # raises half-way: what changed stays
    st.tuples(st.just(b"F"), small, iids, st.just([1]), st.integers(1, 5), small),  # an unhashable field id: raises after
    st.tuples(st.just(b"F"), small, iids, st.sampled_from([19, 40, 99]), st.integers(1, 5), small),  # beside the slots
)
message = st.one_of(wire, wire, wire, odd)

@pytest.fixture(autouse=True)
def compact_built() -> None:
    need_native(compact_module._COMPACT, "mdcommon/_compact.c")  # skip on the python pass, fail in CI if not built


def reference() -> Image:
    return Image()


def apply_python(img: Image, msgs: list) -> BaseException | None:
    """The definition: Image's pure-Python apply (the C of mdcommon/_replica.c off)."""
    native = image_module._NATIVE
    image_module._NATIVE = None
    try:
        for m in msgs:
            img._apply(m)
    except (ValueError, TypeError) as exc:
        return exc
    finally:
        image_module._NATIVE = native
    return None


def types_of(records) -> dict:
    return {k: {f: r.value_type(f) for f in r.values} for k, r in records.items()}


class CompactAgainstImage(RuleBasedStateMachine):
    """Every step applied to both; after each, the same records, value types and (while frozen) snapshot."""

    @initialize()
    def start(self) -> None:
        need_native(compact_module._COMPACT, "mdcommon/_compact.c")
        self.ref = reference()
        self.cmp = CompactImage()
        self.frozen_ids: list[int] | None = None

    @rule(msgs=st.lists(message, max_size=12), one_by_one=st.booleans())
    def apply(self, msgs: list, one_by_one: bool) -> None:
        if self.frozen_ids is not None:  # the reference saves on write as Image does
            native = image_module._NATIVE
            image_module._NATIVE = None
            try:
                for m in msgs:
                    try:
                        self.ref.apply(m)
                    except (ValueError, TypeError) as exc:
                        want = exc
                        break
                else:
                    want = None
            finally:
                image_module._NATIVE = native
        else:
            want = apply_python(self.ref, msgs)
        got = None
        try:
            if one_by_one:
                for m in msgs:
                    self.cmp.apply(m)
            else:
                self.cmp.apply_many(msgs)
        except (ValueError, TypeError) as exc:
            got = exc
        assert type(got) is type(want), (got, want)

    @rule()
    def freeze(self) -> None:
        ids, _ = self.ref.freeze()
        got, _ = self.cmp.freeze()
        assert got == ids
        self.frozen_ids = ids

    @precondition(lambda self: self.frozen_ids is not None)
    @rule()
    def thaw(self) -> None:
        self.ref.thaw()
        self.cmp.thaw()
        self.frozen_ids = None

    @precondition(lambda self: self.frozen_ids is not None)
    @rule(encode=st.booleans())
    def snapshot(self, encode: bool) -> None:
        ids = [*self.frozen_ids, 12345]  # an id in neither is skipped
        native = image_module._NATIVE
        image_module._NATIVE = None
        try:
            want = self.ref.frozen_messages(ids, 77, CODECS.encode if encode else None)
        except Exception as exc:  # noqa: BLE001 - values beyond the wire's width do not encode, in either
            want = type(exc)
        finally:
            image_module._NATIVE = native
        try:
            got = self.cmp.frozen_messages(ids, 77, CODECS.encode if encode else None)
        except Exception as exc:  # noqa: BLE001
            got = type(exc)
        assert got == want

    @rule(iid=iids)
    def read(self, iid: int) -> None:
        assert self.cmp.records.get(iid) == self.ref.records.get(iid)
        assert (iid in self.cmp.records) == (iid in self.ref.records)
        assert self.cmp.frozen_record(iid) == self.ref.frozen_record(iid)
        for fid in (*FIELDS, 0, 40, 999, True, "x"):
            assert self.cmp.value(iid, fid, "none") == self.ref.value(iid, fid, "none")

    @invariant()
    def same_image(self) -> None:
        if not hasattr(self, "ref"):
            return
        assert dict(self.cmp.records) == self.ref.records
        assert list(self.cmp.records) == sorted(self.cmp.records, key=list(self.ref.records).index)  # arrival order
        assert types_of(self.cmp.records) == types_of(self.ref.records)
        assert self.cmp == self.ref and self.ref == self.cmp and len(self.cmp) == len(self.ref)
        if self.frozen_ids is not None:
            for iid in self.frozen_ids:
                want = self.ref.frozen_record(iid)
                got = self.cmp.frozen_record(iid)
                assert got == want
                assert (got.types if got else None) == (want.types if want else None)


TestCompactAgainstImage = CompactAgainstImage.TestCase
TestCompactAgainstImage.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def test_a_read_is_a_copy_as_of_the_read() -> None:
    img = CompactImage()
    img.apply_many([(b"R", 1, 7, "ACME", -4), (b"Q", 2, 7, 100, 1, 101, 1)])
    rec = img.records[7]
    rec.values[1] = 5  # changing the copy changes nothing
    img.apply((b"Q", 3, 7, 200, 1, 201, 1))
    assert rec.values[FIELDS_BY_NAME["bid_price"].field_id] == 5
    assert img.records[7].values[FIELDS_BY_NAME["bid_price"].field_id] == 200
    assert img.records[7].symbol == "ACME" and img.records[7].price_exponent == -4
    with pytest.raises(KeyError):
        img.records[8]


def test_an_instrument_id_beyond_32_bits_is_refused_loudly() -> None:
    img = CompactImage()
    with pytest.raises(ValueError, match="32-bit"):
        img.apply((b"Q", 1, 2**32, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="32-bit"):
        img.apply((b"R", 1, -1, "X", 0))
    assert len(img) == 0


def test_a_snapshot_reads_slots_as_they_were_at_freeze() -> None:
    img = CompactImage()
    img.apply_many([(b"R", 1, 7, "ACME", -4), (b"Q", 2, 7, 100, 1, 101, 1)])
    ids, _ = img.freeze()
    img.apply_many([(b"Q", 3, 7, 200, 1, 201, 1), (b"R", 4, 8, "NEW", 0), (b"R", 5, 7, "ACME2", -2)])
    assert ids == [7]
    (m,) = img.frozen_messages([7, 8], 9)
    assert m == Record(7, "ACME", -4).__class__(7).message(9)[:2] + (7, "ACME", -4, m[5])
    assert dict((f, v) for f, _t, v in m[5])[FIELDS_BY_NAME["bid_price"].field_id] == 100
    assert img.frozen_record(8) is None and img.records[8].symbol == "NEW"
    img.thaw()
    assert img.frozen_record(7).symbol == "ACME2"


def test_records_load_from_the_wire_in_c_and_many_instruments_grow_the_table() -> None:
    img, ref = CompactImage(), Image()
    msgs = [(b"I", 1, iid * 7919 % 2**32, f"S{iid}", -4, ((1, 2, iid), (2, 1, 5), (7, 1, 2**62))) for iid in range(20_000)]
    msgs += [(b"Q", 2, iid * 7919 % 2**32, iid, 1, iid + 1, 2) for iid in range(0, 20_000, 3)]
    img.apply_many(msgs)
    apply_python(ref, msgs)
    assert img == ref
    assert list(img.records) == list(ref.records)
    assert img.memory_bytes() > 0


def test_the_replica_is_freed_with_its_image() -> None:
    import weakref

    class Sym(str):
        pass

    img = CompactImage()
    sym = Sym("ACME")
    ref = weakref.ref(sym)
    img.apply((b"R", 1, 7, sym, -4))
    img.apply((b"Q", 1, 8, 2**70, 1, 1, 1))  # through the slow path once
    gc.disable()
    try:
        del sym, img  # no cycle: freed at once, not at the next full collection
        assert ref() is None
    finally:
        gc.enable()


def test_make_image_follows_the_backend() -> None:
    assert isinstance(make_image(), CompactImage)


# -- record images loaded straight from an image stream's bytes (load_soup, through decoders._native's API) --------


wire_fields = st.lists(st.tuples(st.one_of(st.sampled_from(list(FIELDS)), st.integers(0, 2**16 - 1)), st.integers(0, 255),
                                 st.integers(-I64, I64 - 1)), max_size=6)
stream_item = st.one_of(
    st.tuples(st.just("record"), st.integers(0, 2**32 - 1) | st.integers(1, 4), st.text("ABCXYZ", max_size=8),
              st.integers(-128, 127), wire_fields),
    st.tuples(st.just("directory"), st.integers(1, 4), st.text("ABC", max_size=4), st.integers(-9, 0)),
    st.just(("heartbeat",)),
    st.just(("bad symbol",)),  # a record image whose symbol is not ASCII: a defect the Python path reports
    st.just(("short",)),  # a record image whose length disagrees with its count
)


def packet_of(item: tuple) -> bytes:
    kind = item[0]
    if kind == "record":
        _, iid, symbol, exponent, fields = item
        return soup.sequenced_data(CODECS.encode((b"I", 5, iid, symbol, exponent, tuple(fields))))
    if kind == "directory":
        return soup.sequenced_data(CODECS.encode((b"R", 5, item[1], item[2], item[3])))
    if kind == "heartbeat":
        return soup.server_heartbeat()
    good = CODECS.encode((b"I", 5, 3, "ABC", -4, ((1, 3, 7),)))
    if kind == "bad symbol":
        return soup.sequenced_data(good[:13] + b"\xff" + good[14:])
    return soup.sequenced_data(good[:-1])


(_MESSAGE,) = soup.SOUP.by_name["sequenced_data"].slots("message")


def read_stream(data: bytes, cuts: list[int], compact: bool, freeze: bool) -> tuple[object, list, int]:
    """The image client's reading (linehandler/snapshot_io.py): load_into, take_messages, then a packet at a time."""
    img = CompactImage() if compact else Image()
    img.apply((b"R", 1, 1, "OLD", -1))
    if freeze:
        img.freeze()
    framer = soup.SoupFramer()
    seen, loaded = [], 0
    bounds = [0, *sorted(set(c % (len(data) + 1) for c in cuts)), len(data)]
    for a, b in zip(bounds, bounds[1:]):
        framer.append(data[a:b])
        while True:
            if compact:
                loaded += framer.load_into(img.load_soup)
            if CODECS.native is not None:
                msgs = framer.take_messages(CODECS.native)
                img.apply_many(msgs)
                seen += [m[0] for m in msgs]
            packet = framer.next_packet()
            if packet is None:
                break
            name, fields = soup.decode_packet(packet)
            if name != "sequenced_data":
                seen.append(name)
                continue
            try:
                msg = CODECS.decode(fields[_MESSAGE])
            except DecodeError as exc:
                seen.append(exc.kind)
                continue
            img.apply(msg)
            seen.append(msg[0])
    return img, seen, loaded


@settings(max_examples=200, deadline=None)
@given(st.lists(stream_item, max_size=25), st.lists(st.integers(0, 10_000), max_size=4), st.booleans())
def test_record_images_load_from_the_stream_as_the_decoded_messages_apply(items: list, cuts: list[int], freeze: bool) -> None:
    need_native(compact_module._COMPACT, "mdcommon/_compact.c")
    data = b"".join(packet_of(i) for i in items)
    got, got_seen, got_records = read_stream(data, cuts, True, freeze)
    native = image_module._NATIVE
    image_module._NATIVE = None  # the reference: the Python definition all the way
    try:
        want, want_seen, want_records = read_stream(data, cuts, False, freeze)
    finally:
        image_module._NATIVE = native
    assert got == want
    assert types_of(got.records) == types_of(want.records)
    assert [s for s in got_seen if s != b"I"] == [s for s in want_seen if s != b"I"]  # defects and others, alike
    assert got_records + got_seen.count(b"I") == want_records + want_seen.count(b"I")
    if freeze:
        assert got.frozen_record(1) == want.frozen_record(1) == Record(1, "OLD", -1)


def test_a_whole_image_loads_without_tuples_and_leaves_the_end_of_image() -> None:
    src = CompactImage()
    src.apply_many([(b"I", 1, iid, f"S{iid}", -4, ((1, 3, iid), (7, 1, 2**40), (99, 1, -5))) for iid in range(1, 5001)])
    body = b"".join(soup.sequenced_data(CODECS.encode(m)) for m in src.record_messages(9))
    end = soup.sequenced_data(CODECS.encode((b"G", 9, 77, 5000)))
    framer, img = soup.SoupFramer(), CompactImage()
    framer.append(body + end)
    assert framer.load_into(img.load_soup) == 5000
    assert framer.next_packet() == end  # left to the Python path, which ends the image
    assert img == src and img.records[4321].values[99] == -5


def test_a_field_beside_the_slots_leaves_quotes_and_trades_in_c() -> None:
    class Counting(CompactImage):
        slow = 0

        @staticmethod
        def _slow(replica: object, msg: tuple) -> None:
            Counting.slow += 1
            CompactImage._slow(replica, msg)

    img = Counting()
    img.apply_many([(b"F", 1, 7, 999, 1, 5), (b"F", 1, 7, 40, 1, 2**70)])  # beyond the slots; beyond int64
    assert Counting.slow == 2  # both through the definition
    img.apply_many([(b"Q", 2, 7, 100, 1, 101, 1), (b"T", 3, 7, 100, 2, 66, 1)])
    assert Counting.slow == 2  # in C: their fields are not among those held as objects
    img.apply((b"F", 4, 7, FIELDS_BY_NAME["bid_price"].field_id, 2, 2**70))  # a quote field held as an object:
    img.apply((b"Q", 5, 7, 100, 1, 101, 1))  # then quotes go to the definition, which replaces it
    assert Counting.slow == 4
    ref = Image()
    apply_python(ref, [(b"F", 1, 7, 999, 1, 5), (b"F", 1, 7, 40, 1, 2**70), (b"Q", 2, 7, 100, 1, 101, 1),
                       (b"T", 3, 7, 100, 2, 66, 1), (b"F", 4, 7, FIELDS_BY_NAME["bid_price"].field_id, 2, 2**70),
                       (b"Q", 5, 7, 100, 1, 101, 1)])
    assert img == ref


def test_the_replica_type_refuses_to_work_uninitialised_or_to_be_initialised_twice() -> None:
    replica_type = compact_module._COMPACT.Replica
    with pytest.raises(RuntimeError, match="not initialised"):
        replica_type.__new__(replica_type).apply((b"Q", 1, 1, 1, 1, 1, 1))
    img = CompactImage()
    with pytest.raises(RuntimeError, match="already initialised"):
        img._c.__init__((63,) * 13, {}, 1, Record, print)
    img.apply((b"Q", 1, 7, 1, 2, 3, 4))  # the slots are as they were
    assert img.records[7].values[FIELDS_BY_NAME["ask_size"].field_id] == 4
