"""The handler's counters, declared once (id, name, doc): per feed, and per stream."""

from __future__ import annotations

from mdcommon.counters import Counter, CounterSet

__all__ = ["FEED_COUNTERS", "STREAM_COUNTERS"]

FEED_COUNTERS = CounterSet(
    "handler_feed",
    [
        Counter(0, "datagrams", "datagrams received on this feed"),
        Counter(1, "messages", "messages in data datagrams received on this feed"),
        Counter(2, "first_arrivals", "messages this feed delivered first (it won the race)"),
        Counter(3, "duplicates", "messages already delivered or buffered when this copy came"),
        Counter(4, "missed", "messages this feed skipped (filled by the other feed or by recovery)"),
        Counter(5, "heartbeats", "heartbeat and end-of-session datagrams"),
        Counter(6, "malformed", "datagrams refused as malformed (counted, ignored; their messages come from elsewhere)"),
        Counter(7, "schema_mismatch", "datagrams of another schema version, refused undecoded"),
        Counter(8, "old_session", "datagrams of an older session instance while ours is alive, held, not followed"),
        Counter(9, "stale_events", "times this feed went silent past the stale bound"),
        Counter(10, "conflicts", "messages whose copy on this feed differed from the first copy of the same sequence (kept: the first)"),
        Counter(11, "other_session", "datagrams of a newer session instance while ours is alive (a conflict, held, not followed)"),
        Counter(12, "unconfirmed", "datagrams held unbelieved: beyond the receive window or before the stream started, "
                                   "until a later datagram continues them"),
    ],
)

STREAM_COUNTERS = CounterSet(
    "handler_stream",
    [
        Counter(0, "delivered", "messages handed to the application"),
        Counter(1, "gaps_detected", "missing ranges seen (before the other feed or recovery filled them)"),
        Counter(2, "gaps_filled_by_other_feed", "gaps filled by the other feed before any NACK"),
        Counter(3, "gaps_recovered_by_nack", "gaps filled by retransmission"),
        Counter(4, "gaps_unrecoverable", "gaps reported to the application as lost"),
        Counter(5, "messages_lost", "messages in unrecoverable gaps"),
        Counter(6, "nacks_sent", "retransmission requests sent"),
        Counter(7, "messages_requested", "messages asked for in retransmission requests"),
        Counter(8, "nack_timeouts", "requests that got no answer in time"),
        Counter(9, "nacks_throttled", "requests delayed by the client-side token buckets"),
        Counter(10, "rejects", "retransmission rejects received"),
        Counter(11, "server_failovers", "moves to the next re-request server"),
        Counter(12, "buffer_overflows", "times the early-arrival buffer hit its bound"),
        Counter(13, "malformed_datagrams", "malformed datagrams on any feed"),
        Counter(14, "session_changes", "publisher restarts seen (new session instance)"),
        Counter(15, "image_requests", "initial images requested"),
        Counter(16, "images_applied", "initial images applied"),
        Counter(17, "image_failures", "image fetches that failed"),
        Counter(18, "conflicts", "messages delivered once but seen again with different bytes in the same session (SequenceConflict)"),
        Counter(19, "duplicates_unchecked", "duplicate messages whose first copy had left the ring of recent datagrams, so not compared"),
        Counter(20, "announced_withdrawn", "ranges only a heartbeat had announced, withdrawn when live data arrived inside them "
                                           "(reordering, or a heartbeat from a sender that is not the plant)"),
        Counter(21, "claims_corroborated", "held datagrams believed once a later datagram continued them"),
        Counter(22, "claims_dropped", "held datagrams forgotten unbelieved (expired, or over the bound)"),
        Counter(23, "session_conflicts", "other live sessions of our schema seen while ours was alive (SessionConflict)"),
        Counter(24, "end_withdrawn", "ends of session disbelieved because data of the session came after them"),
        Counter(25, "unrequested", "retransmitted messages beyond the horizon (nothing asked for them), ignored"),
        Counter(26, "requests_heard", "requests heard on the request group (other handlers', and ours looped back)"),
        Counter(27, "nacks_suppressed", "gaps not NACKed because another handler's request for them was heard: the repair "
                                        "on the repair group fills them too"),
        Counter(28, "images_refused", "images whose end-of-image sequence lay beyond the receive window (not applied)"),
    ],
)
