"""Ticker plant: sequences market data and multicasts it twice, on feed A and feed B."""

from __future__ import annotations

from .config import FeedConfig, PlantConfig, SourceConfig, StandbyConfig
from .plant_io import Plant
from .sequencer import Sequencer
from .source import FileFeed, RateSchedule, SyntheticFeed, SyntheticMarket
from .standby import StandbyCore

__all__ = ["FeedConfig", "PlantConfig", "SourceConfig", "StandbyConfig", "Plant", "Sequencer", "RateSchedule", "SyntheticMarket",
           "SyntheticFeed", "FileFeed", "StandbyCore"]
