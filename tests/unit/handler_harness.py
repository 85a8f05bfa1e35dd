"""A published stream and a recorder, for driving the handler core in tests."""

from __future__ import annotations

import random
from typing import Any

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import encode_datagram, encode_heartbeat
from linehandler.events import SendNack
from linehandler.session import HandlerCore, RecoveryPolicy
from retransmit.journal import Journal
from tickerplant.sequencer import Sequencer

MS = 1_000_000
SESSION = make_session(SCHEMA_FINGERPRINT, 100)


def quote(i: int) -> tuple:
    return (b"Q", i, 1 + i % 7, 1000 + i, 1, 1001 + i, 2)


class Published:
    """`n` quotes packed `per` to a datagram by the plant's own sequencer."""

    def __init__(self, n: int, per: int = 3, session: bytes = SESSION) -> None:
        self.session = session
        self.journal = Journal()
        seq = Sequencer(session, CODECS, max_datagram_bytes=20 + per * 47, journal=self.journal)
        self.messages = [quote(i) for i in range(1, n + 1)]
        self.datagrams = seq.publish_many(self.messages, 0) + seq.flush(0)
        self.next_sequence = seq.next_sequence

    def first_seq(self, i: int) -> int:
        return int.from_bytes(self.datagrams[i][10:18], "big")

    def heartbeat(self) -> bytes:
        return encode_heartbeat(self.session, self.next_sequence)

    def announce(self, i: int) -> bytes:
        """The heartbeat an idle plant would send after datagram `i`: it continues that datagram."""
        end = self.first_seq(i + 1) if i + 1 < len(self.datagrams) else self.next_sequence
        return encode_heartbeat(self.session, end)

    def answer(self, nack: SendNack, per: int = 50) -> list[bytes]:
        """What a re-request server sends back for `nack`."""
        blocks = self.journal.get(nack.sequence, nack.count)
        return [encode_datagram(self.session, nack.sequence + i, blocks[i : i + per]) for i in range(0, len(blocks), per)]


class Recorder:
    """Collects delivered messages and events in one ordered log."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def on_message(self, seq: int, msg: tuple) -> None:
        self.log.append((seq, msg))

    def on_event(self, ev: Any) -> None:
        self.log.append(ev)

    @property
    def delivered(self) -> list[tuple[int, tuple]]:
        return [x for x in self.log if isinstance(x, tuple)]

    def events(self, kind: type | tuple = object) -> list[Any]:
        return [x for x in self.log if not isinstance(x, tuple) and isinstance(x, kind)]


def open_stream(core: HandlerCore, pub: Published, now_ns: int, feed: str = "A", i: int = 0) -> list:
    """Datagram `i` on `feed`, then the heartbeat that continues it, so the core believes it and starts its
    stream there (a first datagram alone is only a claim: linehandler/claims.py)."""
    return core.on_datagram(feed, pub.datagrams[i], now_ns) + core.on_datagram(feed, pub.announce(i), now_ns)


def make_core(rec: Recorder, **kw: Any) -> HandlerCore:
    policy = kw.pop("policy", None) or RecoveryPolicy(stale_after_ns=10_000 * MS)
    return HandlerCore(rec.on_message, rec.on_event, policy, rng=random.Random(kw.pop("seed", 1)), **kw)


def step_and_answer(core: HandlerCore, pub: Published, clock: Any, ms: int, answering: set[int] | None = None) -> list[SendNack]:
    """Step the clock 1 ms at a time for `ms`, firing due timers; the servers in `answering` (all when
    None) answer each NACK at once from the plant's journal. Returns the NACKs sent."""
    sent = []
    for _ in range(ms):
        clock.advance(MS)
        nt = core.next_timer()
        if nt is None or clock.now_ns < nt:
            continue
        for a in core.on_timer(clock.now_ns):
            if isinstance(a, SendNack):
                sent.append(a)
                if answering is None or a.server in answering:
                    for d in pub.answer(a):
                        core.on_unicast(d, a.server, clock.now_ns)
    return sent


def run_timers(core: Any, clock: Any, until_ns: int, step_ns: int = MS) -> list:
    """Step the clock until `until_ns`, firing the timers of any sans-I/O core (next_timer/on_timer)."""
    actions = []
    while clock.now_ns < until_ns:
        clock.advance(step_ns)
        nt = core.next_timer()
        if nt is not None and clock.now_ns >= nt:
            actions += core.on_timer(clock.now_ns)
    return actions
