"""The retransmission server's configuration: one dataclass per TOML table, every field with its unit."""

from __future__ import annotations

from dataclasses import dataclass

from linehandler.config import FeedConfig, GroupConfig
from mdcommon.config import opt

__all__ = ["ServerConfig", "LimitsConfig", "PoolConfig"]


@dataclass
class LimitsConfig:
    """Hard limits, so that no requester can turn the server into a flood."""

    max_request_messages: int = opt(2000, "most messages one request may ask for", "messages")
    requester_requests_per_s: float = opt(50.0, "per requester (its IP address, whatever its ports): requests", "requests/s")
    requester_messages_per_s: float = opt(100_000.0, "per requester: messages retransmitted", "messages/s")
    requester_bytes_per_s: float = opt(10_000_000.0, "per requester: bytes sent, rejects included", "bytes/s")
    global_requests_per_s: float = opt(2000.0, "all requesters together: requests", "requests/s")
    global_messages_per_s: float = opt(1_000_000.0, "all requesters together: messages", "messages/s")
    global_bytes_per_s: float = opt(100_000_000.0, "all requesters together: bytes", "bytes/s")
    burst_s: float = opt(0.2, "bucket depth, as seconds of the rate", "s")
    dedupe_window_ms: float = opt(50.0, "a repeat of an answered range inside this window is not answered again", "ms")
    max_requesters: int = opt(10_000, "requesters remembered (least recent forgotten first)")


@dataclass
class PoolConfig:
    """Anonymous recovery (docs/operations.md, "Anonymous recovery"): this server as one of a pool that hears
    requests on the request group and repairs on the repair group. Alike on every server of the pool."""

    answer_slot_ms: float = opt(4.0, "answer after a random wait below this, unless another server's repair for the range "
                                     "is seen first (must exceed the time a repair takes to reach the other servers)", "ms")
    repair_share: float = opt(0.5, "pool-wide budget of the repair group, as a share of the feed's measured bytes/s", "fraction")
    min_repair_bytes_per_s: float = opt(2_000_000.0, "the budget's floor (a quiet feed still gets repaired)", "bytes/s")
    requester_share: float = opt(0.25, "one requester's share of the budget (charged alike by every server of the pool)",
                                 "fraction")


@dataclass
class ServerConfig:
    """`python -m retransmit run` configuration (TOML file, then flags)."""

    channel: str = opt("ch1", "channel name, used in logs and status")
    feed_a: FeedConfig = opt(FeedConfig(), "feed A to mirror")
    feed_b: FeedConfig = opt(FeedConfig(group="239.194.2.1", port=31002), "feed B to mirror")
    repair_servers: list = opt([], "peer re-request servers (host:port) this mirror repairs its own gaps from")
    repair_image_servers: list = opt([], "peer image servers (host:port) this mirror joins from")
    request_address: str = opt("127.0.0.1", "address the UDP re-request socket binds to")
    request_port: int = opt(31101, "UDP port of the re-request socket")
    request_group: GroupConfig = opt(GroupConfig(), "anonymous recovery: hear requests and image queries on this group "
                                                    "(its sources: the handlers allowed to ask); empty group = off")
    repair_group: GroupConfig = opt(GroupConfig(), "anonymous recovery: send repairs and rejects to this group, and hear "
                                                   "the other pool servers' there; set with request_group")
    pool: PoolConfig = opt(PoolConfig(), "anonymous recovery: the pool's numbers")
    image_address: str = opt("127.0.0.1", "address the SoupBinTCP image listener binds to")
    image_port: int = opt(31102, "TCP port of the image listener")
    username: str = opt("", "image login username (empty: no authentication)")
    password: str = opt("", "image login password")
    max_clients: int = opt(16, "most image clients at once; more are refused")
    image_reuse_ms: float = opt(1000.0, "serve the last snapshot to clients logging in within this of it (it stays consistent with its own sequence; the handler NACKs the rest), so N late joiners cost one snapshot", "ms")
    idle_timeout_s: float = opt(10.0, "an image client that does not log in within this is closed", "s")
    slow_reader_timeout_s: float = opt(5.0, "an image client that reads nothing for this long is closed", "s")
    journal_max_messages: int = opt(2_000_000, "journal bound", "messages")
    journal_max_bytes: int = opt(512 << 20, "journal bound", "bytes")
    journal_max_age_s: float = opt(0.0, "journal bound by age; 0 = none", "s")
    journal_file: str = opt("", "keep the journal in this file too, so a restart keeps its history (empty: memory only)")
    max_datagram_bytes: int = opt(1400, "largest retransmission datagram", "bytes")
    limits: LimitsConfig = opt(LimitsConfig(), "limits")
    capture_file: str = opt("", "write every datagram the mirror receives on A and B to this pcap")
    capture_max_bytes: int = opt(1 << 30, "rotate the capture at this size; 0 = never", "bytes")
    duration_s: float = opt(0.0, "stop by itself after this long; 0 = run until signalled", "s")
    stats_interval_s: float = opt(5.0, "interval between statistics lines; 0 = only at exit", "s")
    status_socket: str = opt("", "Unix socket path answering a JSON status snapshot (empty: none)")
    metrics_port: int = opt(0, "serve Prometheus metrics on this TCP port; 0 = off")
    metrics_address: str = opt("127.0.0.1", "address the metrics endpoint binds to")
    log_level: str = opt("info", "log level", choices=("debug", "info", "warning", "error"))
    log_json: bool = opt(False, "log JSON lines instead of key=value")
