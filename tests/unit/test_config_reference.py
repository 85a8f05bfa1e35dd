"""The configuration reference in docs/ is generated from the code and must be current."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mdcommon.config import describe, to_toml
from tools.config_reference import DAEMONS, render

ROOT = Path(__file__).resolve().parents[2]


def test_committed_reference_is_current() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == render(), "run: python -m tools.config_reference"


def test_every_key_has_a_doc() -> None:
    rows = [ln for ln in render().splitlines() if ln.startswith("| `")]
    assert len(rows) > 60
    assert all(not ln.rstrip().endswith("|  |") for ln in rows)


@pytest.mark.parametrize("command,cls", DAEMONS, ids=[c for c, _ in DAEMONS])
def test_every_documented_default_is_the_one_the_daemon_uses(command: str, cls: type) -> None:
    """The reference's defaults against `--print-config` of a daemon given no file and no flag."""
    effective = tomllib.loads(to_toml(cls()))
    for key, _, _, default in describe(cls):
        value = effective
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        assert value == default or (value is None and default is None), (command, key, default, value)


def test_feed_b_defaults_to_its_own_group_and_port() -> None:
    text = render()
    assert "| `feed_b.group` |  | `'239.194.2.1'` |" in text and "| `feed_b.port` |  | `31002` |" in text
    assert "| `channel.feed_b.group` |  | `'239.194.2.1'` |" in text
