"""The numbers of one channel's recovery and of what it believes, in nanoseconds and messages.

The handler's configuration (`linehandler/config.py`, `[recovery]`) is in the units people
type; `handler_io.py` turns it into this. The defaults follow the anchors in
docs/architecture.md ("Recovery: the numbers").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RecoveryPolicy"]


@dataclass
class RecoveryPolicy:
    """All durations in ns."""

    gap_wait_min_ns: int = 1_000_000
    gap_wait_max_ns: int = 10_000_000
    request_timeout_ns: int = 200_000_000
    backoff_max_ns: int = 2_000_000_000
    retries_per_server: int = 2
    max_outstanding_requests: int = 4
    max_request_messages: int = 2000
    requests_per_s: float = 50.0
    request_burst: float = 10.0
    messages_per_s: float = 200_000.0
    message_burst: float = 20_000.0
    give_up_ns: int = 10_000_000_000
    max_buffer_messages: int = 1_000_000
    max_buffer_bytes: int = 256 << 20
    stale_after_ns: int = 3_000_000_000
    resync_on_unrecoverable: bool = True
    image_retry_ns: int = 5_000_000_000
    server_holddown_ns: int = 5_000_000_000  # a server that stopped answering gets no new gaps for this long
    coalesce_held_messages: int = 1000  # when requests are scarce, one may span gaps with this many held messages between two
    max_resync_history: int = 1_000_000
    conflict_ring_datagrams: int = 4096  # recent first-copy datagrams kept to compare later copies with (conflict detection)
    # The receive window (linehandler/claims.py): a claim more than this far beyond the horizon waits for the stream to
    # continue it. Sized from the stream's own rate (what it publishes in ahead_window_ns), within these bounds.
    ahead_window_ns: int = 2_000_000_000
    min_ahead_messages: int = 1000
    max_ahead_messages: int = 1_000_000  # a retransmission server's journal holds 1 M messages by default
    max_claims_datagrams: int = 16_384  # datagrams held unbelieved: far-ahead claims, another live session's
    max_claims_bytes: int = 32 << 20
    # Anonymous recovery (docs/operations.md, "Anonymous recovery"): with a request group, a gap's NACK waits
    # gap_wait_min plus a truncated exponential back-off below group_backoff_ns, shaped by how many handlers are
    # expected to miss the same datagrams (RFC 5401)
    group_size_estimate: int = 8
    group_backoff_ns: int = 20_000_000
    max_refused_sessions: int = 64  # distinct other sessions reported by name (each once); beyond, counted only
