"""The relay's filter and delay line (relay/layers.py) driven by a state machine: batches of every
market message the schema declares, offered at any time, a clock that moves by any amount, asked
for what is due at any moment, with a memory bound small enough that it spills to its file and
reads back over and over.

After every step: what came out is exactly the filtered input, in order, each once; nothing came
out before its due time, and everything due came out; the count held is the model's; memory stays
within its bound (or one batch, when a batch alone is larger); the spill file is emptied once read
out, and never left on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from decoders import CODECS, MESSAGES, SYSTEM_EVENT
from relay.layers import QueueFull, RelayLayers
from tests.model.profiles import model_settings
from tests.schema_strategies import message_dicts

MARKET = ("instrument_directory", "quote", "trade", "field_update")
messages = st.one_of(
    *[message_dicts(MESSAGES[n], n).map(lambda d, n=n: CODECS.by_name[n].from_dict(d)) for n in MARKET],
    st.builds(lambda t: (SYSTEM_EVENT, t, b"S"[0]), st.integers(0, 2**63 - 1)),
)


class DelayLineModel(RuleBasedStateMachine):
    @initialize(delay_ms=st.sampled_from([0, 1, 5, 100]), memory=st.sampled_from([1, 300, 700, 2_000, 1 << 20]),
                keep=st.one_of(st.none(), st.sets(st.integers(0, 2**32 - 1), max_size=3)), bound=st.sampled_from([40, 10_000]))
    def start(self, delay_ms: int, memory: int, keep: set[int] | None, bound: int) -> None:
        self.dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"md-layers-model-{os.getpid()}"
        self.dir.mkdir(exist_ok=True)
        self.layers = RelayLayers(delay_ms * 1_000_000, keep, bound, memory, str(self.dir))
        self.keep = keep or None
        self.now = 10**15
        self.pending: list[tuple[int, tuple]] = []  # the model: (due ns, message) not yet out
        self.out: list[tuple] = []

    def teardown(self) -> None:
        if hasattr(self, "layers"):
            self.layers.close()
            assert not list(self.dir.iterdir()), "the spill file is unlinked at once"
            self.dir.rmdir()

    @rule(batch=st.lists(messages, min_size=1, max_size=12))
    def offer(self, batch: list[tuple]) -> None:
        kept = [m for m in batch if m[0] != SYSTEM_EVENT and (self.keep is None or m[2] in self.keep)]
        try:
            self.layers.offer(batch, self.now)
        except QueueFull:
            assert len(self.pending) + len(kept) > self.layers.max_queued
            return
        self.pending += [(self.now + self.layers.delay_ns, m) for m in kept]

    @rule(ns=st.sampled_from([0, 1, 999_999, 1_000_000, 3_000_000, 50_000_000, 99_999_999, 100_000_000, 100_000_001, 250_000_000]))
    def tick(self, ns: int) -> None:
        self.now += ns

    @rule()
    def take_due(self) -> None:
        got = self.layers.due(self.now)
        n = sum(1 for due, _ in self.pending if due <= self.now)
        assert got == [m for _, m in self.pending[:n]], "what is due, in order, each once, exactly as offered"
        self.pending = self.pending[n:]
        self.out += got

    @precondition(lambda self: self.pending)
    @rule()
    def next_due_is_the_model_head(self) -> None:
        assert self.layers.next_due_ns() == self.pending[0][0]

    @invariant()
    def counts_and_bounds(self) -> None:
        if not hasattr(self, "layers"):
            return
        lay = self.layers
        assert lay.queued == len(self.pending)
        assert all(due > self.now - 10**12 for due, _ in self.pending)
        if lay.delay_ns:
            biggest = max((len(b) for b in lay.queue), default=0)
            assert lay.held_bytes <= max(lay.memory_bytes, biggest), "memory within its bound, or one batch larger than it"
            assert lay.held_bytes == sum(len(b) for b in lay.queue)
            if not lay.spill_messages:
                assert lay.spill_end == lay.spill_read == 0, "a spill file read out starts over"
        if not self.pending:
            assert lay.next_due_ns() is None


DelayLineModel.TestCase.settings = model_settings(ci_examples=150, ci_steps=60)
TestDelayLineModel = DelayLineModel.TestCase
