"""Offline replay: a capture of feeds A and B through the real handler core, clocked by the capture.

The core gets each datagram with the capture's own timestamp as `now_ns` and its timers
at the capture's times, with a fixed random seed, so the same capture gives the same
report every time. No retransmission server exists offline: a range lost on both feeds
is given up after the gap-wait and reported, which is exactly "what a live handler with
no recovery would have had to recover".
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from decoders.pcap import ReadCounters, read_udp
from mdcommon.image import Image

from .events import GapEvent, SessionChanged, SessionStarted
from .session import FEEDS, HandlerCore, RecoveryPolicy, _bucket_labels

__all__ = ["ReplayReport", "replay", "DEFAULT_FEED_A", "DEFAULT_FEED_B"]

DEFAULT_FEED_A = ("239.194.1.1", 31001)
DEFAULT_FEED_B = ("239.194.2.1", 31002)


@dataclass
class ReplayReport:
    datagrams: dict[str, int] = field(default_factory=dict)
    other_datagrams: int = 0  # UDP in the capture that belongs to neither feed
    feeds: dict[str, dict[str, int]] = field(default_factory=dict)
    first_arrival_share: dict[str, float] = field(default_factory=dict)
    lead_lag_a_minus_b: dict[str, int] = field(default_factory=dict)
    lost_on_both_feeds: list[tuple[int, int, str]] = field(default_factory=list)
    delivered: int = 0
    sessions: list[str] = field(default_factory=list)
    capture: dict[str, int] = field(default_factory=dict)
    image: Image | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "image"}
        d["lost_on_both_feeds"] = [list(x) for x in self.lost_on_both_feeds]
        d["instruments"] = len(self.image) if self.image is not None else 0
        return d


def replay(path: str, feed_a: tuple[str, int] = DEFAULT_FEED_A, feed_b: tuple[str, int] = DEFAULT_FEED_B,
           on_message: Callable[[int, tuple], Any] | None = None, pace: Callable[[int], None] | None = None,
           policy: RecoveryPolicy | None = None, keep_image: bool = True) -> ReplayReport:
    """Run the capture at `path` through a handler core; `pace(ts_ns)` (if given) waits for each packet."""
    report = ReplayReport(datagrams={"A": 0, "B": 0})
    feeds = {feed_a: "A", feed_b: "B"}
    counters = ReadCounters()
    core: HandlerCore | None = None
    deliver = on_message or (lambda seq, msg: None)

    def on_event(ev: Any) -> None:
        if isinstance(ev, GapEvent):
            report.lost_on_both_feeds.append((ev.first, ev.last, ev.reason))
        elif isinstance(ev, (SessionStarted, SessionChanged)):
            report.sessions.append((ev.session if isinstance(ev, SessionStarted) else ev.new).decode("ascii", "replace"))

    def run_timers(until_ns: int) -> None:
        for _ in range(10_000):  # each call settles what is due; the bound only guards against a stuck deadline
            t = core.next_timer()
            if t is None or t > until_ns:
                return
            core.on_timer(t)

    last_ts = 0
    for ts, _src, _sport, dst, dport, payload in read_udp(path, counters):
        feed = feeds.get((dst, dport))
        if feed is None:
            report.other_datagrams += 1
            continue
        if core is None:
            core = HandlerCore(deliver, on_event, policy or RecoveryPolicy(), rng=random.Random(0), now_ns=ts, keep_image=keep_image)
        if pace is not None:
            pace(ts)
        run_timers(ts)
        report.datagrams[feed] += 1
        core.on_datagram(feed, payload, max(ts, last_ts))
        last_ts = max(ts, last_ts)
    if core is not None:
        p = core.policy
        run_timers(last_ts + p.gap_wait_max_ns + 1)  # what was still missing at the end is lost on both feeds
        report.feeds = {FEEDS[i]: core.feed_counters[i].as_dict() for i in (0, 1)}
        firsts = {f: report.feeds[f]["first_arrivals"] for f in ("A", "B")}
        total = sum(firsts.values()) or 1
        report.first_arrival_share = {f: round(n / total, 4) for f, n in firsts.items()}
        report.lead_lag_a_minus_b = dict(zip(_bucket_labels(), core.lead_lag, strict=True))
        report.delivered = core.counters["delivered"]
        report.image = core.image if keep_image else None
    report.capture = counters.__dict__.copy()
    return report
