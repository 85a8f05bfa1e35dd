"""The configuration reference in docs/ is generated from the code and must be current."""

from __future__ import annotations

from pathlib import Path

from tools.config_reference import render

ROOT = Path(__file__).resolve().parents[2]


def test_committed_reference_is_current() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == render(), "run: python -m tools.config_reference"


def test_every_key_has_a_doc() -> None:
    rows = [ln for ln in render().splitlines() if ln.startswith("| `")]
    assert len(rows) > 60
    assert all(not ln.rstrip().endswith("|  |") for ln in rows)
