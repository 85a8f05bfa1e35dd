"""Named counters, declared once with id, name and one-line doc (Aeron SystemCounterDescriptor).

Every drop, duplicate, reject or malformed input in a daemon increments one of these;
`Counters` is a flat array indexed by the descriptor's id, so incrementing costs one
list store on the hot path, and the same declarations feed the periodic stats lines,
the status socket and metrics.

    FEED = CounterSet("feed", [
        Counter(0, "datagrams", "datagrams received on this feed"),
        Counter(1, "duplicates", "messages already delivered from the other feed"),
    ])
    c = FEED.new()           # one instance per feed
    c.values[FEED.datagrams] += 1
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Counter", "CounterSet", "Counters"]


@dataclass(frozen=True)
class Counter:
    id: int
    name: str
    doc: str


class CounterSet:
    """A declared family of counters; attribute access by name gives the id (index)."""

    def __init__(self, label: str, counters: Iterable[Counter]) -> None:
        self.label = label
        self.counters = tuple(counters)
        for expected, c in enumerate(self.counters):
            if c.id != expected:
                raise ValueError(f"{label}: counter {c.name} has id {c.id}, expected {expected} (ids are dense)")
        names = [c.name for c in self.counters]
        if len(set(names)) != len(names):
            raise ValueError(f"{label}: duplicate counter names")
        self._ids = {c.name: c.id for c in self.counters}
        for c in self.counters:
            # plain instance attributes: `SET.name` on the hot path is a dict lookup, not a Python call
            if c.name in self.__dict__ or hasattr(type(self), c.name):
                raise ValueError(f"{label}: counter name {c.name!r} clashes with a CounterSet attribute")
            setattr(self, c.name, c.id)

    def new(self) -> Counters:
        return Counters(self)


class Counters:
    """One instance of a CounterSet: `values[id]` is the count."""

    __slots__ = ("set", "values")

    def __init__(self, counter_set: CounterSet) -> None:
        self.set = counter_set
        self.values = [0] * len(counter_set.counters)

    def incr(self, counter_id: int, n: int = 1) -> None:
        self.values[counter_id] += n

    def __getitem__(self, name: str) -> int:
        return self.values[self.set._ids[name]]

    def as_dict(self) -> dict[str, int]:
        return {c.name: self.values[c.id] for c in self.set.counters}

    def line(self, skip_zero: bool = True) -> str:
        """`name=value` pairs for a log line, zeros left out unless asked."""
        return " ".join(f"{c.name}={self.values[c.id]}" for c in self.set.counters if self.values[c.id] or not skip_zero)
