"""Hot-standby configurations the plant refuses (exit status 2, with the reason)."""

from __future__ import annotations

import pytest

from tickerplant.__main__ import main as plant_main

CASES = [
    (["--standby-enabled", "--source-kind", "none"], "needs a deterministic input"),
    (["--standby-enabled", "--standby-priority", "-1"], "standby.priority must be >= 0"),
    (["--standby-enabled", "--standby-takeover-timeout-ms", "50"], "shorter than twice heartbeat_interval_ms"),
    (["--standby-enabled", "--heartbeat-interval-ms", "10", "--standby-takeover-timeout-ms", "30", "--max-batch-delay-us", "20000"],
     "at least twice max_batch_delay_us"),
]


@pytest.mark.parametrize("flags,message", CASES, ids=[c[1] for c in CASES])
def test_refused(flags: list[str], message: str, capsys) -> None:
    assert plant_main(flags) == 2
    assert message in capsys.readouterr().err
