"""The vendor switch (relay/switch.py): two vendors with the same messages, switched between at any point."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.switch import Switched, SwitchGap, VendorSwitch

STREAM = [(b"Q", 1000 + i, 1 + i % 5, 100 + i, 1, 101 + i, 1) for i in range(400)]


def test_the_new_active_continues_after_the_last_published_message() -> None:
    sw = VendorSwitch()
    out = sw.offer(0, STREAM[:10]) + sw.offer(1, STREAM[:12])  # B is a little ahead
    out += sw.switch("A stale")
    out += sw.offer(1, STREAM[12:20])
    assert out == STREAM[:20]
    assert sw.events == [Switched(1, "A stale", 10)]


def test_a_new_active_that_is_behind_is_caught_up_before_anything_passes() -> None:
    sw = VendorSwitch()
    out = sw.offer(0, STREAM[:30]) + sw.offer(1, STREAM[:5])
    out += sw.switch("A gap")  # B's newest is older than what was published
    out += sw.offer(1, STREAM[5:25]) + sw.offer(1, STREAM[25:40])
    assert out == STREAM[:40] and sw.dropped_catching_up == 25


def test_a_message_the_new_active_never_carried_is_a_switch_gap_never_silence() -> None:
    sw = VendorSwitch()
    out = sw.offer(0, STREAM[:10])
    out += sw.offer(1, STREAM[:9] + STREAM[10:15])  # B lost message 9, the last A published
    out += sw.switch("A stale")
    assert out == STREAM[:10] + STREAM[10:15]
    assert isinstance(sw.events[0], SwitchGap)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "switch"]), st.integers(1, 30), st.booleans()), max_size=60))
def test_whatever_the_interleaving_nothing_is_published_twice_or_out_of_order_and_every_hole_is_announced(steps) -> None:
    sw = VendorSwitch(window_messages=50)
    pos = [0, 0]
    out: list[tuple] = []
    gaps_announced = 0
    for what, n, lose in steps:
        if what == "switch":
            out += sw.switch("test")
            continue
        v = 0 if what == "a" else 1
        chunk = STREAM[pos[v] : pos[v] + n]
        pos[v] += n
        if lose and len(chunk) > 1:
            chunk = chunk[1:]  # this vendor lost a message (its handler would report a gap)
        out += sw.offer(v, chunk)
    stamps = [m[1] for m in out]
    assert stamps == sorted(set(stamps)), "published twice or out of order"
    gaps_announced = sum(isinstance(e, SwitchGap) for e in sw.events)
    losses = sum(1 for what, n, lose in steps if what != "switch" and lose and n > 1)
    if not gaps_announced and not losses and stamps:
        assert stamps == list(range(stamps[0], stamps[-1] + 1)), "a hole that no SwitchGap announced"


def test_switching_back_finds_its_place_in_the_first_vendors_history() -> None:
    sw = VendorSwitch()
    out = sw.offer(0, STREAM[:10]) + sw.offer(1, STREAM[:10])
    out += sw.switch("A stale")  # nothing newer on B yet
    out += sw.offer(1, STREAM[10:15]) + sw.offer(0, STREAM[10:20])
    out += sw.switch("B stale")  # back to A, which is ahead: continues after 14
    out += sw.offer(0, STREAM[20:25])
    assert out == STREAM[:25]
    assert not [e for e in sw.events if isinstance(e, SwitchGap)]


def test_a_new_active_one_message_behind_at_the_same_timestamp_catches_up_without_doubling() -> None:
    quote, trade = (b"Q", 500, 1, 10, 1, 11, 1), (b"T", 500, 1, 10, 1, ord("S"), 7)  # a trade and its quote share a timestamp
    after = (b"Q", 501, 1, 10, 2, 11, 1)
    sw = VendorSwitch()
    out = sw.offer(0, [quote, trade]) + sw.offer(1, [quote])  # B has the quote, the trade is on its way
    out += sw.switch("A stale")
    out += sw.offer(1, [trade, after])
    assert out == [quote, trade, after] and not [e for e in sw.events if isinstance(e, SwitchGap)]
