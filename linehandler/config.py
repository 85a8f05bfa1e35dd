"""The line handler's configuration: one dataclass per TOML table, every field documented with its unit."""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

from decoders import CODECS, build_table
from decoders.ir import UnsupportedConstruct
from mdcommon.config import opt

__all__ = ["FeedConfig", "GroupConfig", "ChannelConfig", "HandlerConfig", "channel_table", "foreign_table"]


@dataclass
class FeedConfig:
    """Where one feed arrives: NIC, group, port, and optionally which senders it is accepted from."""

    interface: str = opt("lo", "network interface to join the group on")
    group: str = opt("239.194.1.1", "multicast group")
    port: int = opt(31001, "UDP port")
    sources: list = opt([], "accept this feed only from these sender IPv4 addresses (the plant's NIC, and a standby's): "
                            "a source-specific join, so the kernel drops other senders' datagrams; empty = any sender")


@dataclass
class GroupConfig:
    """A recovery group of the channel (docs/operations.md, "Anonymous recovery"): where it is sent and heard."""

    interface: str = opt("lo", "network interface the group is sent from and joined on")
    group: str = opt("", "multicast group; empty = not used")
    port: int = opt(0, "UDP port")
    sources: list = opt([], "hear the group only from these sender IPv4 addresses (a source-specific join); empty = any sender")
    ttl: int = opt(1, "multicast TTL of what is sent to the group (1: this LAN only)")


@dataclass
class ChannelConfig:
    """One channel: its A/B pair and the servers that can repair it."""

    name: str = opt("ch1", "channel name, used in logs and status")
    feed_a: FeedConfig = opt(FeedConfig(), "feed A")
    feed_b: FeedConfig = opt(FeedConfig(group="239.194.2.1", port=31002), "feed B")
    nack_servers: list = opt([], "re-request servers as host:port, tried in turn")
    image_servers: list = opt([], "initial-image servers as host:port (SoupBinTCP), tried in turn")
    image_username: str = opt("", "SoupBinTCP username for the image servers")
    image_password: str = opt("", "SoupBinTCP password for the image servers")
    request_group: GroupConfig = opt(GroupConfig(), "anonymous recovery: NACKs and image queries are multicast here to a pool "
                                                    "of servers (tried before nack_servers); other handlers' requests heard here "
                                                    "suppress ours")
    repair_group: GroupConfig = opt(GroupConfig(), "anonymous recovery: the pool's repairs and rejects arrive here (feed R); "
                                                   "set with request_group; its sources are the pool servers' addresses")
    schema: str = opt("", "a foreign MoldUDP64 feed: the module whose MESSAGES declare its messages (construct), e.g. "
                          "examples.itch.schema for an exchange's ITCH 5.0; any session name is taken, no image or pool; "
                          "empty = one of our channels (its schema checked from the session name)")


@dataclass
class RecoveryConfig:
    """How gaps are waited for, NACKed and given up (docs/architecture.md, "Recovery: the numbers")."""

    gap_wait_min_ms: float = opt(1.0, "shortest wait for the other feed before NACKing", "ms")
    gap_wait_max_ms: float = opt(10.0, "longest wait for the other feed before NACKing (uniform in between)", "ms")
    request_timeout_ms: float = opt(200.0, "a NACK not answered in this time failed", "ms")
    retries_per_server: int = opt(2, "failed NACKs before moving to the next server")
    max_outstanding_requests: int = opt(4, "NACKs in flight at once")
    max_request_messages: int = opt(2000, "most messages asked for in one NACK", "messages")
    requests_per_s: float = opt(50.0, "client-side limit on NACKs", "requests/s")
    messages_per_s: float = opt(200_000.0, "client-side limit on messages asked for", "messages/s")
    group_size: int = opt(8, "with a request group: how many handlers are expected to miss the same datagrams; shapes the "
                                 "random back-off before a NACK so that one asks and the others hear it")
    group_backoff_ms: float = opt(20.0, "with a request group: a NACK waits the shortest gap-wait plus a random back-off below "
                                        "this (wider than the gap-wait: the first request must reach the others in time)", "ms")
    coalesce_held_messages: int = opt(1000, "when requests_per_s cannot ask for every waiting gap, one NACK may cover several gaps "
                                      "with at most this many messages already held between two (and anything within "
                                      "max_request_messages if that is still too many NACKs); 0 = always one NACK per gap", "messages")
    server_holddown_s: float = opt(5.0, "a re-request server that stopped answering gets no new gaps for this long", "s")
    give_up_s: float = opt(10.0, "a gap not recovered in this time is resynced from an image or reported lost", "s")
    max_buffer_messages: int = opt(1_000_000, "messages held ahead of a gap", "messages")
    max_buffer_bytes: int = opt(256 << 20, "bytes held ahead of a gap (estimated)", "bytes")
    stale_after_ms: float = opt(3000.0, "a feed silent this long is stale (3 heartbeats by default)", "ms")
    resync_on_unrecoverable: bool = opt(True, "refresh the replica from an image after an unrecoverable gap")
    late_join_image: bool = opt(True, "join a running session from an initial image (else recover from sequence 1)")


@dataclass
class HandlerConfig:
    """`python -m linehandler run` configuration (TOML file, then flags)."""

    channel: ChannelConfig = opt(ChannelConfig(), "the channel (flags and single-channel files)")
    channels: list = opt([], "several channels: [[channels]] tables with the keys of [channel]; replaces [channel]")
    recovery: RecoveryConfig = opt(RecoveryConfig(), "recovery")
    keep_image: bool = opt(True, "keep the replica image (instrument -> fields)")
    rcvbuf_bytes: int = opt(4 << 20, "socket receive buffer per feed (capped by net.core.rmem_max)", "bytes")
    drop_a: float = opt(0.0, "TEST ONLY: drop this fraction of feed A datagrams in-process", "fraction")
    drop_b: float = opt(0.0, "TEST ONLY: drop this fraction of feed B datagrams in-process", "fraction")
    drop_seed: int = opt(1, "TEST ONLY: seed of the in-process drops")
    duration_s: float = opt(0.0, "stop by itself after this long; 0 = run until signalled", "s")
    stats_interval_s: float = opt(5.0, "interval between statistics lines; 0 = only at exit", "s")
    status_socket: str = opt("", "Unix socket path answering a JSON status snapshot (empty: none)")
    metrics_port: int = opt(0, "serve Prometheus metrics on this TCP port; 0 = off")
    metrics_address: str = opt("127.0.0.1", "address the metrics endpoint binds to")
    record_file: str = opt("", "write every delivered message, every event and, at exit, the final status as JSON lines to this file")
    image_file: str = opt("", "at exit, write each channel's replica image to this file (.csv or .json; FILE.<channel>.csv when several)")
    capture_file: str = opt("", "write every datagram received on A and B to this pcap (ns timestamps, real groups and ports)")
    capture_max_bytes: int = opt(1 << 30, "rotate the capture to FILE.1, FILE.2, ... at this size; 0 = never", "bytes")
    exit_on_session_end: bool = opt(False, "exit once every channel's session has ended")
    log_level: str = opt("info", "log level", choices=("debug", "info", "warning", "error"))
    log_json: bool = opt(False, "log JSON lines instead of key=value")

    def all_channels(self) -> list[ChannelConfig]:
        """The [[channels]] tables as ChannelConfig, or the single [channel] when there are none."""
        from mdcommon.config import load_table

        return [load_table(ChannelConfig, t, f"channels[{i}].") for i, t in enumerate(self.channels)] or [self.channel]


def channel_table(cc: ChannelConfig) -> Any:
    """The codecs a channel is decoded with: ours, or its foreign schema's."""
    return foreign_table(cc.schema) if cc.schema else CODECS


@functools.cache
def foreign_table(schema: str) -> Any:
    """The fast codecs of a foreign feed's schema module (its MESSAGES), derived once; ValueError saying why not."""
    try:
        messages = importlib.import_module(schema).MESSAGES
        return build_table(messages)
    except (ImportError, AttributeError, TypeError, ValueError, UnsupportedConstruct) as exc:
        raise ValueError(f"schema {schema!r}: {exc}") from None
