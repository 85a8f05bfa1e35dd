"""Prometheus metrics for every daemon, from the same figures as its status socket.

The scrape is served by prometheus_client's own HTTP thread, so it must never touch live
daemon state: the daemon's loop publishes a status snapshot (`publish(snapshot)`, about
once a second) and the collector turns the last one into metric families. Counters are
the ones declared once in each daemon's CounterSet (exported as `_total`); other numbers
are gauges; OpenMAMA quality words become 0 (OK), 1 (MAYBE_STALE), 2 (STALE).
Names: `md_<daemon>_<path>`, with `channel` and `feed` as labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .counters import CounterSet

__all__ = ["Metrics", "QUALITY_VALUE", "flatten"]

QUALITY_VALUE = {"OK": 0, "MAYBE_STALE": 1, "STALE": 2}
_NAME_JUNK = re.compile(r"[^a-zA-Z0-9_]+")
_LABEL_KEYS = {"channels": "channel", "feeds": "feed", "lead_lag_a_minus_b": "range"}


def flatten(snapshot: dict[str, Any], counter_sets: list[set[str]]) -> Iterator[tuple[str, dict[str, str], float, bool]]:
    """(name, labels, value, is_counter) for every number in a status snapshot. A number is a counter
    when its dict holds every name of one declared CounterSet (it came from `Counters.as_dict`)."""

    def walk(node: Any, path: list[str], labels: dict[str, str], counters: set[str]) -> Iterator[tuple[str, dict[str, str], float, bool]]:
        if isinstance(node, dict):
            here = next((cs for cs in counter_sets if cs <= node.keys()), set())
            for key, value in node.items():
                if path and path[-1] in _LABEL_KEYS:  # the keys here are label values (channel names, feeds, ranges)
                    inner = path[:-1] if isinstance(value, dict) else path
                    yield from walk(value, inner, {**labels, _LABEL_KEYS[path[-1]]: str(key)}, here)
                else:
                    yield from walk(value, path + [str(key)], labels, here)
        elif isinstance(node, bool):
            yield "_".join(path), labels, float(node), False
        elif isinstance(node, (int, float)):
            yield "_".join(path), labels, float(node), path[-1] in counters
        elif isinstance(node, str) and node in QUALITY_VALUE:
            yield "_".join(path), labels, float(QUALITY_VALUE[node]), False

    yield from walk(snapshot, [], {}, set())


class _SnapshotCollector:
    def __init__(self, daemon: str, counter_sets: list[set[str]]) -> None:
        self.daemon = daemon
        self.counter_sets = counter_sets
        self.snapshot: dict[str, Any] = {}

    def collect(self) -> Iterable[Any]:
        snap = self.snapshot  # one reference read: the loop replaces it whole, never mutates it
        families: dict[tuple[str, bool], Any] = {}
        for name, labels, value, is_counter in flatten(snap, self.counter_sets):
            if name.startswith("daemon"):
                continue
            full = _NAME_JUNK.sub("_", f"md_{self.daemon}_{name}").replace("__", "_").rstrip("_")
            keys = tuple(sorted(labels))
            fam = families.get((full, is_counter))
            if fam is None:
                cls = CounterMetricFamily if is_counter else GaugeMetricFamily
                fam = families[(full, is_counter)] = (cls(full, f"{self.daemon} {name.replace('_', ' ')}", labels=list(keys)), keys)
            fam[0].add_metric([labels[k] for k in fam[1]], value)
        for fam, _ in families.values():
            yield fam


class Metrics:
    """One daemon's endpoint: `publish(status())` from the loop; histograms observed from the loop."""

    def __init__(self, daemon: str, counter_sets: Iterable[CounterSet], port: int, address: str = "127.0.0.1") -> None:
        sets = [{c.name for c in cs.counters} for cs in counter_sets]
        self.registry = CollectorRegistry()
        self.collector = _SnapshotCollector(daemon, sets)
        self.registry.register(self.collector)
        self.latency = Histogram(f"md_{daemon}_publish_to_deliver_seconds", "publish timestamp to application callback (sampled)",
                                 ["channel"], registry=self.registry,
                                 buckets=(50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1.0))
        self.recovery = Histogram(f"md_{daemon}_recovery_seconds", "gap detected to filled by retransmission", ["channel"],
                                  registry=self.registry, buckets=(1e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0, 5.0, 10.0))
        self.server, self.thread = start_http_server(port, address, registry=self.registry)

    @property
    def port(self) -> int:
        return self.server.server_port

    def publish(self, snapshot: dict[str, Any]) -> None:
        self.collector.snapshot = snapshot

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
