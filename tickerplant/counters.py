"""The plant's counters, declared once (id, name, doc); one instance per feed."""

from __future__ import annotations

from mdcommon.counters import Counter, CounterSet

__all__ = ["FEED_COUNTERS"]

FEED_COUNTERS = CounterSet(
    "plant_feed",
    [
        Counter(0, "datagrams", "datagrams sent on this feed (data, heartbeats and end of session)"),
        Counter(1, "messages", "messages sent on this feed"),
        Counter(2, "bytes", "UDP payload bytes sent on this feed"),
        Counter(3, "heartbeats", "heartbeat datagrams sent"),
        Counter(4, "end_of_session", "end-of-session datagrams sent"),
        Counter(5, "send_eperm", "sends refused with EPERM (a firewall rule on the way out)"),
        Counter(6, "send_enobufs", "sends refused with ENOBUFS (queue full; datagram lost on this feed only)"),
        Counter(7, "send_enetunreach", "sends refused with ENETUNREACH (interface down or no route)"),
        Counter(8, "send_other_errors", "sends refused with any other error"),
        Counter(9, "send_would_block", "sends that found the socket buffer full (datagram lost on this feed only)"),
    ],
)
