"""Deterministic input for the hot standby: same configuration and origin, same datagrams, whoever runs it and when."""

from __future__ import annotations

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from tickerplant.sequencer import Sequencer
from tickerplant.source import RateSchedule, SyntheticFeed, SyntheticMarket

MS = 1_000_000
SESSION = make_session(SCHEMA_FINGERPRINT, 7)
ORIGIN = 1_800_000_000_000_000_000


def feed(seed: int = 1, origin: int = ORIGIN) -> SyntheticFeed:
    return SyntheticFeed(SyntheticMarket(50, seed), RateSchedule(20_000, 3, 0.05), MS, origin)


def publish(f: SyntheticFeed, batches: int, chunk: int = 10**9) -> list[bytes]:
    """The plant's way: start event, then whole batches, each flushed (chunking never changes the packing)."""
    seq = Sequencer(SESSION, CODECS, max_datagram_bytes=400)
    out = seq.publish_many([seq.start_of_session_event(f.origin_ns)], 0) + seq.flush(0)
    for _ in range(batches):
        msgs = f.next()
        for i in range(0, len(msgs), chunk):
            out += seq.publish_many(msgs[i : i + chunk], 0)
        out += seq.flush(0)
    return out


def test_same_configuration_same_datagrams_however_it_is_driven() -> None:
    assert publish(feed(), 120) == publish(feed(), 120, chunk=7)
    assert publish(feed(), 120) != publish(feed(seed=2), 120)


def test_batches_are_stamped_with_their_due_time_and_sized_by_the_schedule() -> None:
    f = feed()
    assert f.open_ns == MS  # 50 instruments x 3 µs, in whole batches: the market opens 1 ms after the directory
    assert f.due_batches(ORIGIN - 1) == 0 and f.due_batches(ORIGIN) == 1 and f.due_batches(ORIGIN + MS) == 1
    assert f.due_batches(ORIGIN + 4 * MS) == 4
    directory = f.next()
    assert len(directory) == 50 and {m[1] for m in directory} == {ORIGIN}
    b1 = f.next()
    assert len(b1) == 60 and {m[1] for m in b1} == {ORIGIN + 2 * MS}  # 20 k/s x 3 (burst) for 1 ms


def test_the_origin_is_recovered_from_any_message_of_the_stream() -> None:
    f = feed()
    seq = 1
    stamped: dict[int, int] = {1: ORIGIN}
    for _ in range(200):
        for m in f.next():
            seq += 1
            stamped[seq] = m[1]
    probe = feed(origin=0)
    for s in (1, 2, 51, 52, 53, 112, 113, seq):
        assert probe.origin_from(s, stamped[s]) == ORIGIN, s
