"""The plant's sequencer driven by a model: publishing (some batches unencodable), flushes, timers, end of session.

After every step the sequencer's promises must hold: every datagram it returned
decodes; the messages of all of them, in order, are numbered 1, 2, 3, ... with no gap
and no duplicate; heartbeats carry the next sequence number; the journal holds exactly
the bytes returned; `next_sequence` is 1 + the messages published (a batch that raised
counts for nothing, rule 5 of `tickerplant.sequencer`).

CI runs a fixed (derandomized) set of examples that keeps this file to seconds;
`MD_MODEL_LONG=1` runs many more, randomized.
"""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from decoders import CODECS, SCHEMA_FINGERPRINT, EncodeError, make_session
from decoders.moldudp64 import END_OF_SESSION_COUNT, HEADER_SIZE, HEARTBEAT_COUNT, decode_datagram, split_blocks
from retransmit.journal import Journal
from tests.model.profiles import model_settings
from tickerplant.sequencer import Sequencer, SessionEnded

S = make_session(SCHEMA_FINGERPRINT, 9)
MS = 1_000_000

GOOD = st.one_of(
    st.builds(lambda i: (b"Q", i, i % 50, 100 + i, 1, 101 + i, 2), st.integers(0, 10**6)),
    st.builds(lambda i: (b"T", i, i % 50, 100 + i, 5, ord("B"), i), st.integers(0, 10**6)),
    st.builds(lambda i, n: (b"I", i, i % 50, "SYM", -2, tuple((f, 2, i) for f in range(n))), st.integers(0, 10**6), st.integers(0, 40)),
)
BAD_MESSAGES = [
    (b"Q", 1, 2, "not an int", 1, 2, 3),
    (b"Q", 2**70, 2, 3, 1, 2, 3),
    (b"Z", 1),
    (b"Q", 1, 2),
    (b"I", 1, 2, "A SYMBOL FAR TOO LONG", -2, ()),
    (b"I", 1, 2, "A", -2, ((1, 2, 3),) * 200),  # never fits in a datagram
]
BAD = st.sampled_from(BAD_MESSAGES)



class SequencerModel(RuleBasedStateMachine):
    @initialize(max_datagram_bytes=st.sampled_from([20 + 47, 300, 1400]), delay_ms=st.integers(0, 5), heartbeat_ms=st.integers(1, 100))
    def build(self, max_datagram_bytes: int, delay_ms: int, heartbeat_ms: int) -> None:
        self.now = 1_000_000_000
        self.journal = Journal(max_messages=10**7, max_bytes=1 << 40)
        self.seq = Sequencer(S, CODECS, max_datagram_bytes=max_datagram_bytes, max_batch_delay_ns=delay_ms * MS,
                             heartbeat_interval_ns=heartbeat_ms * MS, journal=self.journal)
        self.max_datagram_bytes = max_datagram_bytes
        self.published: list[tuple] = []  # every message accepted, in order
        self.sent: list[bytes] = []  # the blocks of every data datagram returned, in order
        self.ended = False

    def take(self, datagrams: list[bytes]) -> None:
        """Check and record what the sequencer handed out."""
        for d in datagrams:
            session, first, count, msgs = decode_datagram(d, CODECS)
            assert session == S
            if count == HEARTBEAT_COUNT:
                assert first == len(self.sent) + 1  # the next sequence number; nothing is pending while idle
                continue
            assert count != END_OF_SESSION_COUNT
            assert len(d) <= self.max_datagram_bytes
            assert first == len(self.sent) + 1, f"datagram from {first}, expected {len(self.sent) + 1}"  # no gap, no duplicate
            assert msgs == self.published[first - 1 : first - 1 + count]
            self.sent += split_blocks(d)[3]

    def fits(self, msg: tuple) -> bool:
        """Whether `msg` encodes and fits alone in a datagram: the model's own answer, not the sequencer's."""
        try:
            return HEADER_SIZE + 2 + len(CODECS.encode(msg)) <= self.max_datagram_bytes
        except Exception:
            return False

    def offer(self, msgs: list[tuple], single: bool) -> None:
        before = (self.seq.next_sequence, len(self.journal), self.seq.pending_messages, self.seq.datagrams)
        out: list[bytes] = []
        if not all(self.fits(m) for m in msgs):
            with pytest.raises(EncodeError):
                if single:
                    self.seq.publish(msgs[0], self.now, out)
                else:
                    self.seq.publish_many(msgs, self.now, out)
            after = (self.seq.next_sequence, len(self.journal), self.seq.pending_messages, self.seq.datagrams)
            assert out == [] and after == before  # nothing of the batch numbered, journaled or returned
            return
        self.published += msgs
        if single:
            self.seq.publish(msgs[0], self.now, out)
        else:
            self.seq.publish_many(msgs, self.now, out)
        self.take(out)

    @precondition(lambda self: not self.ended)
    @rule(msgs=st.lists(GOOD, min_size=0, max_size=60), bad=st.one_of(st.none(), BAD), where=st.integers(0, 60))
    def publish_many(self, msgs: list[tuple], bad: tuple | None, where: int) -> None:
        if bad is not None:
            msgs = msgs[:where] + [bad] + msgs[where:]
        self.offer(msgs, single=False)

    @precondition(lambda self: not self.ended)
    @rule(msg=st.one_of(GOOD, BAD))
    def publish(self, msg: tuple) -> None:
        self.offer([msg], single=True)

    @rule()
    def flush(self) -> None:
        self.take(self.seq.flush(self.now))

    @rule(ns=st.one_of(st.integers(0, MS), st.integers(0, 200 * MS)))
    def timer(self, ns: int) -> None:
        self.now += ns
        self.take(self.seq.on_timer(self.now))
        if self.ended:
            assert self.seq.next_timer() is None
        else:
            due = self.seq.next_timer()
            assert due is None or due > self.now or self.seq.pending_messages == 0  # nothing overdue is left pending

    @precondition(lambda self: not self.ended)
    @rule(stamp=st.integers(0, 2**63 - 1))
    def end_session(self, stamp: int) -> None:
        self.published.append(Sequencer.end_of_session_event(stamp))
        self.take(self.seq.end_session(self.now, stamp))
        self.ended = True
        assert self.seq.pending_messages == 0 and len(self.sent) == len(self.published)
        eos = decode_datagram(self.seq.end_of_session_packet(), CODECS)
        assert eos[1:3] == (len(self.published) + 1, END_OF_SESSION_COUNT)
        with pytest.raises(SessionEnded):
            self.seq.publish_many([(b"Q", 1, 2, 3, 4, 5, 6)], self.now)

    @invariant()
    def contiguous_and_journaled(self) -> None:
        if not hasattr(self, "seq"):
            return
        assert self.seq.next_sequence == 1 + len(self.published)
        assert len(self.sent) + self.seq.pending_messages == len(self.published)
        assert len(self.journal) == len(self.sent) and self.journal.get(1, len(self.sent)) == self.sent


SequencerModel.TestCase.settings = model_settings(ci_examples=400, ci_steps=40)
TestSequencerModel = SequencerModel.TestCase
