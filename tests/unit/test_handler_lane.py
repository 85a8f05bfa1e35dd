"""The native in-order lane (decoders/_native_lane.c through HandlerCore.on_batch) against the Python path.

Two cores with the same seed take the same inputs: one a recvmmsg batch at a time through `on_batch`
(runs of in-order and duplicate datagrams in C), the other datagram by datagram through `on_datagram`.
Hypothesis draws the batches from everything a feed carries (in order, late, copies that differ,
gaps, heartbeats, other sessions, garbage, truncation) with retransmissions answering the NACKs and
a callback that raises on some sequences. After every step both must have delivered and reported the
same, counted the same, timed A against B the same, kept the same ring of first copies and the same
replica, and asked for the same actions. The stateful model test (tests/model/test_handler_model.py)
checks the promises themselves through both entry points.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import encode_heartbeat
from linehandler.events import SendNack
from linehandler.session import HandlerCore, RecoveryPolicy
from tests.conftest import need_native
from tests.unit.handler_harness import MS, SESSION, Published

SLOT = 2048
OTHER = make_session(SCHEMA_FINGERPRINT, 7)


class Boom(Exception):
    pass


class Twin:
    """One core and what it delivered; `poison` sequences make the application's callback raise."""

    def __init__(self, batched: bool, keep_image: bool, poison: frozenset[int]) -> None:
        self.log: list[Any] = []
        self.poison = poison
        self.errors = 0

        def one(seq: int, msg: tuple) -> None:
            self.log.append((seq, msg))
            if seq in poison:
                raise Boom(seq)

        def many(first: int, msgs: list | tuple) -> None:
            self.log.append((first, tuple(msgs)))
            if first in poison:
                raise Boom(first)

        policy = RecoveryPolicy(give_up_ns=400 * MS, stale_after_ns=5_000 * MS, request_timeout_ns=30 * MS, max_buffer_messages=200,
                                min_ahead_messages=60, max_ahead_messages=400, conflict_ring_datagrams=12)
        self.core = HandlerCore(None if batched else one, self.log.append, policy, rng=random.Random(3), nack_servers=1,
                                keep_image=keep_image, on_messages=many if batched else None, now_ns=0)
        self.actions: list[Any] = []

    def state(self) -> tuple:
        c = self.core
        image = sorted((iid, r.symbol, sorted(r.values.items())) for iid, r in c.image.records.items())
        return (self.log, [f.values for f in c.feed_counters], c.counters.values, c.lead_lag, c.expected, c.horizon,
                sorted(c.recent.items()), list(c.recent_order), c.recent_max_count, c.feed_next, c.session_seen_ns,
                c.last_rx_ns, image, self.actions, self.errors, c.quality)


def _batch_of(datagrams: list[bytes]) -> tuple[bytearray, list[int]]:
    buf = bytearray(SLOT * max(1, len(datagrams)))
    for i, d in enumerate(datagrams):
        buf[i * SLOT : i * SLOT + len(d)] = d
    return buf, [len(d) for d in datagrams]


def _feed_batch(t: Twin, feed: str, datagrams: list[bytes], now: int) -> None:
    buf, lengths = _batch_of(datagrams)
    at = 0
    while at < len(lengths):  # as the daemon's loop does (linehandler/handler_io.py, _drain_batched)
        try:
            t.core.on_batch(feed, buf, SLOT, lengths, now, t.actions, at)
            break
        except Boom:
            t.errors += 1
            at = t.core.batch_at + 1


def _feed_each(t: Twin, feed: str, datagrams: list[bytes], now: int) -> None:
    for d in datagrams:  # as the daemon's loop does without the batch (linehandler/handler_io.py, _feed)
        try:
            t.actions += t.core.on_datagram(feed, d, now)
        except Boom:
            t.errors += 1


def _call(t: Twin, entry: Any, *args: Any) -> None:
    try:
        t.actions += entry(*args)
    except Boom:
        t.errors += 1


def _moved(d: bytes, seq: int | None = None, session: bytes | None = None, scramble: bool = False) -> bytes:
    b = bytearray(d)
    if session is not None:
        b[0:10] = session
    if seq is not None:
        b[10:18] = seq.to_bytes(8, "big")
    if scramble:
        b[-1] ^= 0x21
    return bytes(b)


KINDS = st.sampled_from(["next", "next", "next", "next", "again", "again", "skip", "late", "scrambled", "heartbeat", "other",
                         "garbage", "truncated", "zero"])
STEP = st.one_of(
    st.tuples(st.just("batch"), st.sampled_from("AB"), st.lists(KINDS, min_size=1, max_size=8)),
    st.tuples(st.just("time"), st.integers(1, 200), st.booleans()),
)


class Script:
    """Turns drawn kinds into datagrams of one published stream, the same for both twins."""

    def __init__(self, per: int) -> None:
        self.pub = Published(300, per=per)
        self.next = {"A": 0, "B": 0}

    def datagrams(self, feed: str, kinds: list[str], rnd: random.Random) -> list[bytes]:
        out: list[bytes] = []
        dgs = self.pub.datagrams
        for kind in kinds:
            i = self.next[feed]
            if kind in ("next", "skip") and i < len(dgs):
                if kind == "skip":
                    i = self.next[feed] = min(len(dgs) - 1, i + 1 + rnd.randrange(3))
                out.append(dgs[i])
                self.next[feed] = i + 1
            elif kind == "again" and i > 0:
                out.append(dgs[i - 1])
            elif kind == "late" and i > 0:
                out.append(dgs[rnd.randrange(i)])
            elif kind == "scrambled" and i > 0:
                out.append(_moved(dgs[rnd.randrange(i)], scramble=True))
            elif kind == "heartbeat":
                out.append(self.pub.announce(max(0, i - 1)) if i else encode_heartbeat(SESSION, 1))
            elif kind == "other" and i < len(dgs):
                out.append(_moved(dgs[i], session=OTHER))
            elif kind == "garbage":
                out.append(bytes(rnd.randrange(256) for _ in range(rnd.randrange(40))))
            elif kind == "truncated" and i < len(dgs):
                out.append(dgs[i][: -1 - rnd.randrange(10)])
            elif kind == "zero":
                out.append(encode_heartbeat(SESSION, 0))
        return out


@pytest.fixture(autouse=True)
def _native_lane() -> None:
    need_native(CODECS.native, "decoders/_native.c")


@settings(max_examples=160, deadline=None, derandomize=True, database=None)
@given(steps=st.lists(STEP, min_size=1, max_size=40), per=st.sampled_from([1, 3, 9]), batched=st.booleans(),
       keep_image=st.booleans(), poison=st.frozensets(st.integers(1, 120), max_size=3), seed=st.integers(0, 99))
def test_lane_does_what_the_python_path_does(steps: list, per: int, batched: bool, keep_image: bool, poison: frozenset[int],
                                              seed: int) -> None:
    lane, plain = Twin(batched, keep_image, poison), Twin(batched, keep_image, poison)
    assert lane.core.lane is not None
    plain.core.lane = None  # the reference: datagram by datagram, in Python
    script = Script(per)
    rnd = random.Random(seed)
    now = 1_000 * MS
    for step in steps:
        if step[0] == "batch":
            _, feed, kinds = step
            dgs = script.datagrams(feed, kinds, rnd)
            if not dgs:
                continue
            now += 50_000
            _feed_batch(lane, feed, dgs, now)
            _feed_each(plain, feed, dgs, now)
        else:
            _, ms, answer = step
            now += ms * MS
            for t in (lane, plain):
                _call(t, t.core.on_timer, now)
            if answer:  # the server answers every NACK asked so far, to both
                for t in (lane, plain):
                    for a in [a for a in t.actions if isinstance(a, SendNack)]:
                        for d in script.pub.answer(a):
                            _call(t, t.core.on_unicast, d, a.server, now)
        assert lane.state() == plain.state()


def test_a_run_is_one_call_and_both_feeds_are_timed() -> None:
    """A healthy batch (the stream in order on A, then B's copies) goes through the lane whole."""
    t = Twin(batched=True, keep_image=True, poison=frozenset())
    pub = Published(200, per=5)
    calls = []
    lane = t.core.lane

    def counting(*args: Any) -> None:
        calls.append(args[3])
        return lane(*args)

    t.core.lane = counting
    t.core.on_batch("A", *_start(pub), 1_000, t.actions)  # the first datagram and the heartbeat continuing it: believed
    assert t.core.expected == pub.first_seq(1)
    calls.clear()
    buf, lengths = _batch_of(pub.datagrams[1:11])
    t.core.on_batch("A", buf, SLOT, lengths, 2_000, t.actions)
    buf, lengths = _batch_of(pub.datagrams[1:11])
    t.core.on_batch("B", buf, SLOT, lengths, 2_000 + 150_000, t.actions)
    assert calls == [0, 0]  # one native call per batch, nothing left to the Python path
    assert t.core.expected == pub.first_seq(11)
    assert t.core.feed_counters[1].as_dict()["duplicates"] == pub.first_seq(11) - pub.first_seq(1)
    assert sum(t.core.lead_lag) == 10  # every B copy timed against its A copy
    assert len(t.core.image) > 0 and t.actions == []


def _start(pub: Published) -> tuple[bytearray, int, list[int]]:
    buf, lengths = _batch_of([pub.datagrams[0], pub.announce(0)])
    return buf, SLOT, lengths
