"""The relay's configuration: what comes in (`[input]`) and the plant it publishes through (`[plant]`)."""

from __future__ import annotations

from dataclasses import dataclass

from mdcommon.config import opt
from tickerplant.config import PlantConfig

__all__ = ["ItchInputConfig", "RelayConfig"]


@dataclass
class ItchInputConfig:
    """An ITCH 5.0 MoldUDP64 feed, from a capture."""

    pcap: str = opt("", "capture (pcap or pcapng) holding the ITCH feed's datagrams (A and B copies are arbitrated)")
    port: int = opt(26400, "UDP port of the ITCH feed in the capture")
    group: str = opt("", "destination group of the ITCH feed in the capture; empty = any")
    date: str = opt("", "session date (YYYY-MM-DD, UTC) that ITCH's times since midnight belong to; empty = the capture's first day")
    speed: float = opt(1.0, "replay at this multiple of the captured pace; 0 = as fast as the plant publishes")
    schema: str = opt("examples.itch.schema", "module whose MESSAGES declare the ITCH messages (construct)")


@dataclass
class RelayConfig:
    """`python -m relay itch` configuration (TOML file, then flags)."""

    input: ItchInputConfig = opt(ItchInputConfig(), "the ITCH input")
    plant: PlantConfig = opt(PlantConfig(), "the plant the normalized channel is published through (A/B, journal, re-requests, images, standby)")
    exit_when_done: bool = opt(True, "end the session and exit once the capture is published")
