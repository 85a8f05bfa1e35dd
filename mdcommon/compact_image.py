"""The image in fixed slots (mdcommon/_compact.c), for daemons whose universe does not fit in the caches.

`Image` keeps a Record object per instrument. At 200,000 instruments applying a quote to one costs about ten
times what it costs at 1,000 (cache misses on the records dict, the record, its values dict and the ints it
frees), and a retransmission server or a handler spends most of its time there. `CompactImage` holds each
instrument as one slot of int64 fields in C: the same messages, the same image, the same snapshots, at a few
cache lines a message.

What differs, on purpose:
- `records[iid]` and `records.get(iid)` make a Record from the slot: a copy as of the read, not a live object.
  Read it again to see later changes (applications only ever read the replica).
- Instrument ids are 32-bit unsigned ints, as on the wire; applying a message with any other id raises
  ValueError (a plain `Image` would keep it).

`make_image()` gives a CompactImage where the native part is built (and neither MD_BACKEND=python nor
MD_COMPACT_IMAGE=0 is set), an `Image` otherwise; `Image` stays the definition, and tests/unit/test_compact_image.py holds the two together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

from decoders.native import wanted_backend
from decoders.schema.fields import FIELDS, VALUE_INTEGER

from . import image as _image
from .image import Image, Record

__all__ = ["AnyImage", "CompactImage", "make_image", "COMPACT_AVAILABLE"]


def _load() -> ModuleType | None:
    if wanted_backend() == "python" or os.environ.get("MD_COMPACT_IMAGE", "").strip() == "0":
        return None
    try:
        from . import _compact  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _compact


_COMPACT = _load()
COMPACT_AVAILABLE = _COMPACT is not None

_NAMED = (_image._BID_PRICE, _image._BID_SIZE, _image._ASK_PRICE, _image._ASK_SIZE, _image._QUOTE_TIME, _image._LAST_PRICE,
          _image._LAST_SIZE, _image._VOLUME, _image._TRADE_COUNT, _image._OPEN, _image._HIGH, _image._LOW, _image._LAST_TRADE_TIME)
_FIELD_TYPES = {fid: f.value_type for fid, f in FIELDS.items()}


def _loads_from_bytes() -> bool:
    """Whether record images load straight from an image stream: the wire backend's API capsule is there and of
    the version this build speaks (a stale build of decoders/_native.c is not)."""
    if _COMPACT is None:
        return False
    try:
        _COMPACT.Replica(_NAMED, _FIELD_TYPES, VALUE_INTEGER, Record, print).load_soup(b"", 0)
    except (ImportError, AttributeError):
        return False
    return True


_LOADS_FROM_BYTES = _loads_from_bytes()


class _Records(Mapping[int, Record]):
    """instrument_id → Record, read from the slots: each Record a copy as of the read."""

    __slots__ = ("_c",)

    def __init__(self, replica: Any) -> None:
        self._c = replica

    def __getitem__(self, instrument_id: int) -> Record:
        rec = self._c.get(instrument_id)
        if rec is None:
            raise KeyError(instrument_id)
        return rec

    def get(self, instrument_id: int, default: Any = None) -> Any:
        rec = self._c.get(instrument_id)
        return default if rec is None else rec

    def __contains__(self, instrument_id: object) -> bool:
        return self._c.contains(instrument_id)

    def __iter__(self) -> Iterator[int]:
        return iter(self._c.ids())

    def __len__(self) -> int:
        return self._c.size()


class CompactImage:
    """The `Image` interface daemons use, over slots in C (see the module docstring for what differs)."""

    def __init__(self) -> None:
        if _COMPACT is None:
            raise RuntimeError("the compact image needs the native part (mdcommon/_compact.c), not built or MD_BACKEND=python")
        # the slow path is a function of (replica, message), not a bound method: the replica does not hold the image,
        # so an image replaced by a resync or a new session is freed at once, not at the next full collection
        self._c = _COMPACT.Replica(_NAMED, _FIELD_TYPES, VALUE_INTEGER, Record, type(self)._slow)
        self.records: Mapping[int, Record] = _Records(self._c)
        # bound straight to C: the handler's lane calls these per datagram
        self.apply: Callable[[tuple], None] = self._c.apply
        self.apply_many: Callable[[Any], None] = self._c.apply_many
        self.thaw: Callable[[], None] = self._c.thaw
        if not _LOADS_FROM_BYTES:
            self.load_soup = None  # type: ignore[assignment]  # the image client then takes records as messages

    @staticmethod
    def _slow(replica: Any, msg: tuple) -> None:
        """What C does not take (other shapes, values beyond int64): `Image._apply`, the definition, on a copy of
        the record, put back whole."""
        scratch = Image()
        try:
            iid = msg[2]
        except (TypeError, IndexError, KeyError):
            iid = None
        if iid is not None:
            rec = replica.get(iid)
            if rec is not None:
                scratch.records[iid] = rec
        try:
            scratch._apply(msg)
        finally:  # what the definition changed before an error stays changed, as in an Image
            for key, rec in scratch.records.items():
                replica.put(key, rec)

    def value(self, instrument_id: int, field_id: int, default: Any = None) -> Any:
        """records[instrument_id].values.get(field_id, default), read from the slot without making the Record."""
        return self._c.value(instrument_id, field_id, default)

    def freeze(self) -> tuple[list[int], None]:
        """As `Image.freeze`: the ids now, sorted; slots changed from now on are saved first (in C)."""
        return self._c.freeze(), None

    def frozen_record(self, instrument_id: int) -> Record | None:
        return self._c.frozen_get(instrument_id)

    def frozen_messages(self, ids: list[int], timestamp_ns: int, each: Callable[[tuple], Any] | None = None) -> list:
        return self._c.frozen_messages(ids, timestamp_ns, each)

    def load_soup(self, buf: Any, off: int) -> tuple[int, int]:
        """(next offset, records loaded): the record images of an image stream's SoupBinTCP packets from buf[off:],
        loaded as they are read (no tuples made), up to the first packet that is anything else, which is left to
        the Python path at the offset returned."""
        return self._c.load_soup(buf, off)

    def load_record(self, msg: tuple) -> None:
        self._c.apply(msg)

    def record_messages(self, timestamp_ns: int) -> Iterator[tuple]:
        """One record image message per instrument, in instrument id order, as the image is now."""
        ids = self._c.ids(True)
        for start in range(0, len(ids), 4096):
            yield from self._c.frozen_messages(ids[start : start + 4096], timestamp_ns, None, False)

    def memory_bytes(self) -> int:
        """Bytes of the C tables (slots and index), not of the symbols and other objects they point to."""
        return self._c.memory()

    def __len__(self) -> int:
        return self._c.size()

    def __eq__(self, other: object) -> bool:
        return _image.same_image(self, other)

    __hash__ = None  # type: ignore[assignment]


AnyImage = Image | CompactImage


def make_image() -> AnyImage:
    """A CompactImage where the native part is built (and MD_BACKEND is not `python`), else an Image."""
    return CompactImage() if _COMPACT is not None else Image()
