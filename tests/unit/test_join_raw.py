"""A joiner holds the live feed as datagram bytes while its image comes (linehandler/session.py, `raw`).

Checked here: nothing after the first datagram is held as message tuples while joining in order; the other feed's copy is
a counted duplicate, never held twice; a malformed body is refused when it arrives, not when it
would be delivered; after the image every message past it is delivered once, in order, with the
same replica as the tuples path; a hole in the held datagrams leaves the rest waiting, message
by message, until the hole is filled; a copy that differs is still a conflict.
"""

from __future__ import annotations

from decoders import CODECS
from decoders.moldudp64 import encode_datagram
from linehandler.counters import FEED_COUNTERS
from linehandler.events import GapEvent, ImageApplied, RequestImage, SequenceConflict
from mdcommon.image import Image
from tests.unit.handler_harness import MS, SESSION, Published, Recorder, make_core, run_timers


def _image(pub: Published, n: int) -> Image:
    img = Image()
    for m in pub.messages[:n]:
        img.apply(m)
    return img


def _join(pub: Published, clock, feeds=("A", "B"), skip: int | None = None):
    """A core joining from datagram 2 on, every later datagram on `feeds` (datagram `skip` on none)."""
    rec = Recorder()
    core = make_core(rec, nack_servers=1, image_servers=1)
    core.on_datagram("A", pub.datagrams[2], clock.now_ns)
    assert core.on_datagram("A", pub.datagrams[3], clock.now_ns) == [RequestImage(0, SESSION)]
    for i, d in enumerate(pub.datagrams[3:], 3):
        if i == skip:
            continue
        for f in feeds:
            core.on_datagram(f, d, clock.now_ns)
    return core, rec


def _apply_image(core, pub: Published, n: int, clock) -> None:
    for m in _image(pub, n).record_messages(0):
        core.on_image_message(m)
    core.on_image_end(n, clock.now_ns)


def test_a_joiner_holds_bytes_counts_the_other_copy_and_delivers_once_in_order(clock) -> None:
    pub = Published(60)
    core, rec = _join(pub, clock)
    assert core.joining and set(core.buffer) == {7, 8, 9}  # the first datagram: a claim, taken before joining
    assert core.raw_messages == 60 - 9  # everything after it is held as bytes
    assert core.status()["buffered"] == 60 - 6
    assert core.feed_counters[1].values[FEED_COUNTERS.duplicates] == 60 - 9  # B's copies: counted, not held
    _apply_image(core, pub, 10, clock)  # the image ends inside a held datagram (10..12)
    assert [s for s, _ in rec.delivered] == list(range(11, 61))
    assert [m for _, m in rec.delivered] == pub.messages[10:]
    assert rec.events(ImageApplied)[0].dropped_buffered == 4  # 7..9, and 10 of the held datagram the image cut
    assert not rec.events(GapEvent) and core.raw == {} and core.buffer == {} and core.buffer_bytes == 0
    assert core.image == _image(pub, 60)


def test_a_malformed_body_is_refused_on_arrival_while_joining(clock) -> None:
    pub = Published(30)
    rec = Recorder()
    core = make_core(rec, nack_servers=1, image_servers=1)
    core.on_datagram("A", pub.datagrams[2], clock.now_ns)
    core.on_datagram("A", pub.datagrams[3], clock.now_ns)
    bad = bytearray(pub.datagrams[4])
    bad[22] = ord("?")  # the first message's type: unknown
    core.on_datagram("A", bytes(bad), clock.now_ns)
    assert core.feed_counters[0].values[FEED_COUNTERS.malformed] == 1
    assert pub.first_seq(4) not in core.raw
    for d in pub.datagrams[4:]:
        core.on_datagram("B", d, clock.now_ns)
    _apply_image(core, pub, 9, clock)
    assert [s for s, _ in rec.delivered] == list(range(10, 31)) and not rec.events(GapEvent)


def test_a_hole_in_what_is_held_waits_for_its_fill_then_all_of_it_goes_once(clock) -> None:
    pub = Published(45)
    core, rec = _join(pub, clock, feeds=("A",), skip=8)  # datagram 8 (25..27) lost on A, while joining
    assert core.raw and core.joining
    _apply_image(core, pub, 9, clock)
    assert [s for s, _ in rec.delivered] == list(range(10, pub.first_seq(8)))
    assert core.raw == {} and len(core.buffer) == 45 - pub.first_seq(9) + 1  # the rest, message by message
    core.on_datagram("B", pub.datagrams[8], clock.now_ns)  # the other feed fills the hole
    assert [s for s, _ in rec.delivered] == list(range(10, 46)) and not rec.events(GapEvent)
    assert core.image == _image(pub, 45)


def test_a_copy_that_differs_from_a_held_datagram_is_a_conflict_and_the_first_copy_stands(clock) -> None:
    pub = Published(30)
    core, rec = _join(pub, clock, feeds=("A",))
    seq = pub.first_seq(5)
    forged = encode_datagram(SESSION, seq, [CODECS.encode((b"Q", 9, 1, 1, 1, 2, 2))] * 3)
    core.on_datagram("B", forged, clock.now_ns)
    assert rec.events(SequenceConflict)
    _apply_image(core, pub, 9, clock)
    assert [m for _, m in rec.delivered] == pub.messages[9:]


def test_a_joiner_that_gets_no_image_recovers_what_it_held_from_sequence_one(clock) -> None:
    pub = Published(30)
    core, rec = _join(pub, clock, feeds=("A",))
    core.on_image_failed("refused", clock.now_ns)
    assert not core.joining and core.raw == {}
    (nack,) = run_timers(core, clock, clock.now_ns + 20 * MS)
    for dg in pub.answer(nack):
        core.on_unicast(dg, 0, clock.now_ns)
    assert rec.delivered == list(enumerate(pub.messages, 1)) and not rec.events(GapEvent)
