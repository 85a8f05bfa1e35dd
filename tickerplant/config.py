"""The plant's configuration: one dataclass per TOML table, every field documented with its unit."""

from __future__ import annotations

from dataclasses import dataclass

from mdcommon.config import opt

__all__ = ["FeedConfig", "SourceConfig", "JournalConfig", "StandbyConfig", "PlantConfig", "FEED_A_DEFAULT", "FEED_B_DEFAULT"]


@dataclass
class FeedConfig:
    """One of the two feeds: the NIC it leaves through, its group, port and TTL."""

    interface: str = opt("lo", "network interface the feed leaves through (IP_MULTICAST_IF)")
    group: str = opt("239.194.1.1", "multicast group")
    port: int = opt(31001, "UDP port")
    ttl: int = opt(0, "multicast TTL; 0 keeps datagrams on this host, 1 on the LAN", "hops")
    source_address: str = opt("", "bind the sender to this address of the NIC (empty: the kernel picks)")


FEED_A_DEFAULT = FeedConfig()
FEED_B_DEFAULT = FeedConfig(group="239.194.2.1", port=31002)


@dataclass
class SourceConfig:
    """What the plant publishes."""

    kind: str = opt("synthetic", "synthetic market, a JSON-lines file, or none (embedded API only)", choices=("synthetic", "file", "none"))
    instruments: int = opt(1000, "synthetic: number of instruments (ids 1..N)")
    rate: float = opt(10_000.0, "synthetic: base message rate", "messages/s")
    burst_multiplier: float = opt(5.0, "synthetic: opening-bell rate as a multiple of the base rate")
    burst_seconds: float = opt(2.0, "synthetic: length of the opening-bell burst", "s")
    seed: int = opt(1, "synthetic: random seed (same seed, same messages)")
    price_exponent: int = opt(-4, "synthetic: price exponent of every instrument (raw × 10**exponent)")
    path: str = opt("", "file: JSON-lines messages, one per line, e.g. {\"type\": \"quote\", \"instrument_id\": 1, ...}")
    origin_ns: int = opt(0, "time origin of the input (ns since the epoch): batch k of the input is due and stamped at origin + k × max_batch_delay_us; 0 = the start of the session (a standby learns it from the stream)", "ns")


@dataclass
class JournalConfig:
    """The bounded journal of sequenced messages that retransmission serves from."""

    max_messages: int = opt(1_000_000, "most messages kept", "messages")
    max_bytes: int = opt(256 << 20, "most message bytes kept", "bytes")
    max_age_s: float = opt(0.0, "drop messages older than this; 0 = no age bound", "s")


@dataclass
class StandbyConfig:
    """Hot standby (docs/standby.md): plants of a group consume the same input, one publishes,
    the others mirror its feeds and take over, decided from the feeds alone."""

    enabled: bool = opt(False, "take part in a hot-standby group: listen to the feeds, take over on silence, step back when another plant is ahead")
    priority: int = opt(0, "0 = the preferred primary (publishes first at a cold start, keeps publishing on a tie); n > 0 = standby, takes over after n × the takeover timeout")
    takeover_timeout_ms: float = opt(0.0, "silence of both feeds after which a standby takes over; 0 = 3 × heartbeat_interval_ms", "ms")
    mirror_rcvbuf_bytes: int = opt(4 << 20, "receive buffer of the standby's mirror sockets", "bytes")


@dataclass
class PlantConfig:
    """`python -m tickerplant` configuration (TOML file, then flags)."""

    feed_a: FeedConfig = opt(FEED_A_DEFAULT, "feed A")
    feed_b: FeedConfig = opt(FEED_B_DEFAULT, "feed B")
    source: SourceConfig = opt(SourceConfig(), "source")
    journal: JournalConfig = opt(JournalConfig(), "journal")
    standby: StandbyConfig = opt(StandbyConfig(), "hot standby")
    session_instance: int = opt(-1, "session instance (base36 part of the session name); -1 = seconds since 2024-01-01 at start; a hot-standby group shares one explicit instance")
    state_file: str = opt("", "file remembering the last session instance, so a restart within a second still gets a new one")
    max_datagram_bytes: int = opt(1400, "largest datagram, MoldUDP64 header included", "bytes")
    max_batch_delay_us: int = opt(1000, "longest a message waits for its datagram to fill", "µs")
    spin_us: int = opt(0, "busy-wait this long before each due batch instead of sleeping through it: the process's wake-up jitter off the latency, for a core kept busy; 0 = sleep", "µs")
    heartbeat_interval_ms: float = opt(1000.0, "idle time before a heartbeat, and between heartbeats", "ms")
    end_of_session_linger_ms: float = opt(1000.0, "how long end-of-session packets are repeated after a stop", "ms")
    end_of_session_interval_ms: float = opt(100.0, "interval between end-of-session packets during the linger", "ms")
    keep_image: bool = opt(True, "keep the current image of every instrument (for images and checks)")
    request_address: str = opt("", "serve MoldUDP64 re-requests from the plant's own journal on this address (empty: off; the retransmission tier's own repair source)")
    request_port: int = opt(31100, "UDP port of the plant's re-request socket")
    request_max_per_turn: int = opt(64, "most requests answered per loop turn, so publishing never waits on recovery", "requests")
    duration_s: float = opt(0.0, "stop by itself after this long (as on SIGTERM); 0 = run until signalled", "s")
    stats_interval_s: float = opt(5.0, "interval between statistics lines; 0 = only at exit", "s")
    status_socket: str = opt("", "Unix socket path answering a JSON status snapshot (empty: none)")
    metrics_port: int = opt(0, "serve Prometheus metrics on this TCP port; 0 = off")
    metrics_address: str = opt("127.0.0.1", "address the metrics endpoint binds to")
    record_file: str = opt("", "write every published message as JSON lines (sequence + fields) to this file; a hot standby also writes the ones it generates without sending")
    log_level: str = opt("info", "log level", choices=("debug", "info", "warning", "error"))
    log_json: bool = opt(False, "log JSON lines instead of key=value")
