"""The relay's configuration: what comes in (`[input]`) and the plant it publishes through (`[plant]`)."""

from __future__ import annotations

from dataclasses import dataclass

from linehandler.config import ChannelConfig, FeedConfig, RecoveryConfig
from mdcommon.config import opt
from tickerplant.config import PlantConfig, SourceConfig

__all__ = ["ItchInputConfig", "RelayConfig", "ChannelRelayConfig"]


@dataclass
class ItchInputConfig:
    """An ITCH 5.0 MoldUDP64 feed, from a capture (else live, `[upstream]`)."""

    pcap: str = opt("", "capture (pcap or pcapng) holding the ITCH feed's datagrams (A and B copies are arbitrated); empty = the live "
                        "feed of [upstream]")
    port: int = opt(26400, "UDP port of the ITCH feed in the capture")
    group: str = opt("", "destination group of the ITCH feed in the capture; empty = any")
    date: str = opt("", "session date (YYYY-MM-DD) whose midnight, US Eastern time, ITCH's times count from; empty = the date of the "
                        "capture's first frame there")
    speed: float = opt(1.0, "replay at this multiple of the captured pace; 0 = as fast as the plant publishes")
    schema: str = opt("examples.itch.schema", "module whose MESSAGES declare the ITCH messages (construct)")


@dataclass
class RelayConfig:
    """`python -m relay itch` configuration (TOML file, then flags)."""

    input: ItchInputConfig = opt(ItchInputConfig(), "the ITCH input from a capture (`pcap`), and the session date of either input")
    upstream: ChannelConfig = opt(ChannelConfig(name="itch", schema="examples.itch.schema",
                                                feed_a=FeedConfig(group="239.194.9.1", port=26400),
                                                feed_b=FeedConfig(group="239.194.10.1", port=26400)),
                                  "without input.pcap: the live ITCH feed, a line handler's foreign channel (its A/B groups, the "
                                  "exchange's MoldUDP64 re-request servers as nack_servers)")
    recovery: RecoveryConfig = opt(RecoveryConfig(), "recovery of the live ITCH feed (as a line handler's)")
    upstream_drop: float = opt(0.0, "TEST ONLY: drop this fraction of the live feed's datagrams on each of A and B in-process", "fraction")
    standby_window_messages: int = opt(1_000_000, "live, with plant.standby.enabled: output messages a standby relay keeps to "
                                                  "continue the active relay's session from where it stopped", "messages")
    plant: PlantConfig = opt(PlantConfig(), "the plant the normalized channel is published through (A/B, journal, re-requests, images, standby)")
    exit_when_done: bool = opt(True, "end the session and exit once the capture is published, or the live feed's session ended")


@dataclass
class ChannelRelayConfig:
    """`python -m relay channel` configuration: one of our channels in, filtered and delayed, our channel out."""

    upstream: ChannelConfig = opt(ChannelConfig(name="upstream"), "the channel relayed: its feeds, re-request and image servers")
    switch: bool = opt(False, "vendor switch: `upstream` and `vendor_b` carry the same messages; take upstream, and switch to the other "
                              "when the one taken goes stale or reports a gap (no duplicate, no gap for what both carried)")
    vendor_b: ChannelConfig = opt(ChannelConfig(name="vendor_b", feed_a=FeedConfig(group="239.194.3.1", port=31005),
                                                feed_b=FeedConfig(group="239.194.4.1", port=31006)),
                                  "with switch: the second vendor's channel")
    switch_window_messages: int = opt(200_000, "with switch: messages of the vendor not taken kept to continue from", "messages")
    recovery: RecoveryConfig = opt(RecoveryConfig(), "recovery of the upstream channel (as a line handler's)")
    delay_ms: float = opt(0.0, "republish each message this long after it arrived (a delay engine: delayed data can be given away)", "ms")
    instruments: list = opt([], "relay only these instrument ids; empty = all")
    max_queued_messages: int = opt(200_000_000, "most messages held for the delay, in memory and spilled (rate x delay must fit; going "
                                                "over stops the relay loudly)", "messages")
    delay_memory_bytes: int = opt(256 << 20, "delayed messages held in memory (encoded, about 40 bytes each); past this they are "
                                             "spilled to a file and read back in order", "bytes")
    spill_dir: str = opt("", "directory of the delay's spill file (unlinked at once: nothing is left behind); empty = the system's "
                             "temporary directory")
    plant: PlantConfig = opt(PlantConfig(source=SourceConfig(kind="none")), "the plant the relayed channel is published through; "
                             "with plant.standby.enabled, one of a hot-standby pair of relays (relay/standby_io.py)")
    standby_window_messages: int = opt(1_000_000, "with plant.standby.enabled: output messages a standby keeps to continue the "
                                                  "active relay's session from where it stopped", "messages")
    duration_s: float = opt(0.0, "stop by itself after this long; 0 = until signalled or the upstream session ends", "s")
    upstream_drop: float = opt(0.0, "TEST ONLY: drop this fraction of upstream datagrams on each feed in-process", "fraction")
    exit_on_session_end: bool = opt(True, "when the upstream session ends, publish what the delay holds, end ours and exit")
