"""Ticker plant: sequences market data and multicasts it twice, on feed A and feed B."""

from __future__ import annotations

from .config import FeedConfig, PlantConfig, SourceConfig
from .plant_io import Plant
from .sequencer import Sequencer
from .source import RateSchedule, SyntheticMarket

__all__ = ["FeedConfig", "PlantConfig", "SourceConfig", "Plant", "Sequencer", "RateSchedule", "SyntheticMarket"]
