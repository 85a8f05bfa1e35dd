"""The README's main job (`./scripts/demo` runs examples/demo.py): it runs, shows every daemon, and loses nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_shows_every_daemon_and_both_handlers_lose_nothing() -> None:
    r = subprocess.run([sys.executable, "examples/demo.py", "--seconds", "7"], cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    for title in ("plant  session", "retransmission server  journal", "h1: from the start", "h2: joins late from an image"):
        assert title in out, title
    finals = re.findall(r"^(h[12]): delivered ([\d,]+) messages, lost (\d+), next sequence ([\d,]+), quality (\w+)$", out, re.M)
    assert [f[0] for f in finals] == ["h1", "h2"], out[-2000:]
    assert all(lost == "0" and quality == "OK" for _, _, lost, _, quality in finals)
    assert finals[0][3] == finals[1][3]  # both reached the end of the session
