"""Every example configuration loads; every systemd unit points at a real command."""

from __future__ import annotations

from pathlib import Path

import pytest

from linehandler.config import HandlerConfig
from mdcommon import config as cfg
from retransmit.config import ServerConfig
from tickerplant.config import PlantConfig

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"plant": PlantConfig, "handler": HandlerConfig, "rtx": ServerConfig}


@pytest.mark.parametrize("path", sorted((ROOT / "examples").rglob("*.toml")), ids=lambda p: p.name)
def test_example_config_loads(path: Path) -> None:
    kind = next(k for k in KINDS if k in path.name)
    config = cfg.load(KINDS[kind], path)
    if kind == "handler":
        for i, t in enumerate(config.channels):
            cfg.load_table(__import__("linehandler.config", fromlist=["ChannelConfig"]).ChannelConfig, t, f"channels[{i}].")


@pytest.mark.parametrize("unit", sorted((ROOT / "examples" / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_units_run_our_commands(unit: Path) -> None:
    text = unit.read_text()
    assert "ExecStart=/opt/ticker-plant/.venv/bin/python -m " in text and "KillSignal=SIGTERM" in text
    module = text.split("ExecStart=/opt/ticker-plant/.venv/bin/python -m ")[1].split()[0]
    assert (ROOT / module / "__main__.py").exists()
