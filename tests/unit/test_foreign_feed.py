"""The line handler's core over a foreign MoldUDP64 feed: an exchange's ITCH 5.0, decoded with the fast
codecs derived from examples/itch/schema.py, under any session name the exchange gives it.

Everything the core promises for our channels holds: A/B arbitration, exactly once in order, a lost
datagram reported as a GapEvent, NACKs to a MoldUDP64 re-request server, a new session corroborated
before it is believed. And the schema check still guards our own channels: a core of our schema
refuses the exchange's session undecoded.
"""

from __future__ import annotations

from decoders.moldudp64 import encode_datagram, encode_end_of_session, encode_heartbeat
from linehandler.config import foreign_table
from linehandler.events import GapEvent, SchemaMismatch, SendNack, SessionChanged, SessionEnded
from linehandler.session import HandlerCore, RecoveryPolicy
from tests.itch_session import session

MS = 1_000_000
ITCH = foreign_table("examples.itch.schema")
TODAY, TOMORROW = b"000012345A", b"000012346A"  # the exchange's session names: not ours, not base 36 of a tag


class Log:
    def __init__(self) -> None:
        self.messages: list[tuple[int, tuple]] = []
        self.events: list = []

    def on_message(self, seq: int, msg: tuple) -> None:
        self.messages.append((seq, msg))

    def on_event(self, ev: object) -> None:
        self.events.append(ev)


def datagrams(name: bytes, raws: list[bytes], per: int = 4, first: int = 1) -> list[bytes]:
    return [encode_datagram(name, first + i, raws[i:i + per]) for i in range(0, len(raws), per)]


def core(log: Log, nack_servers: int = 0) -> HandlerCore:
    return HandlerCore(log.on_message, log.on_event, RecoveryPolicy(), nack_servers=nack_servers, keep_image=False,
                       table=ITCH, schema_tag=None)


def test_an_itch_feed_is_arbitrated_and_delivered_exactly_once_in_order_whatever_copy_is_missing() -> None:
    raws = [raw for _, raw in session(3, 400)]
    dg = datagrams(TODAY, raws)
    log = Log()
    c = core(log)
    now = 0
    for i, d in enumerate(dg):
        now += MS // 10
        if i % 5 != 2:
            c.on_datagram("A", d, now)
        if i % 5 != 4:
            c.on_datagram("B", d, now + 1000)
    assert [m for _, m in log.messages] == [ITCH.decode(r) for r in raws]
    assert [s for s, _ in log.messages] == list(range(1, len(raws) + 1))
    assert not [e for e in log.events if isinstance(e, GapEvent)]
    assert log.messages[0][1][ITCH.by_name["stock_directory"].index["stock"]] == "AAPL    "


def test_a_datagram_lost_on_both_feeds_is_asked_for_and_else_reported_never_skipped() -> None:
    raws = [raw for _, raw in session(4, 80)]
    dg = datagrams(TODAY, raws)
    log = Log()
    c = core(log, nack_servers=1)
    now = 0
    nacks = []
    for i, d in enumerate(dg):
        now += MS
        if i != 5:
            for feed in "AB":
                nacks += [a for a in c.on_datagram(feed, d, now) if isinstance(a, SendNack)]
    for _ in range(3000):  # the server never answers: the gap is given up, loudly
        now += 10 * MS
        nacks += [a for a in c.on_timer(now) if isinstance(a, SendNack)]
        if any(isinstance(e, GapEvent) for e in log.events):
            break
    assert nacks and nacks[0].sequence == 21 and nacks[0].count == 4
    gap = next(e for e in log.events if isinstance(e, GapEvent))
    assert (gap.first, gap.last) == (21, 24)
    assert [s for s, _ in log.messages] == [s for s in range(1, len(raws) + 1) if not 21 <= s <= 24]


def test_the_next_days_session_is_taken_after_the_end_of_this_one() -> None:
    raws = [raw for _, raw in session(5, 40)]
    log = Log()
    c = core(log)
    now = 0
    for d in datagrams(TODAY, raws) + [encode_end_of_session(TODAY, len(raws) + 1)]:
        now += MS
        c.on_datagram("A", d, now)
    for d in datagrams(TOMORROW, raws) + [encode_heartbeat(TOMORROW, len(raws) + 1)]:
        now += MS
        c.on_datagram("A", d, now)
        c.on_datagram("B", d, now)
    assert any(isinstance(e, SessionEnded) for e in log.events)
    assert any(isinstance(e, SessionChanged) and e.new == TOMORROW for e in log.events)
    assert len(log.messages) == 2 * len(raws)


def test_a_core_of_our_schema_refuses_the_exchanges_feed_undecoded() -> None:
    log = Log()
    c = HandlerCore(log.on_message, log.on_event, RecoveryPolicy())
    for d in datagrams(TODAY, [raw for _, raw in session(6, 20)]):
        c.on_datagram("A", d, 0)
    assert log.messages == []
    assert [type(e) for e in log.events] == [SchemaMismatch]
