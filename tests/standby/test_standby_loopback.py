"""Hot standby on loopback (no root): the same processes as in the namespace tests, on `lo`."""

from __future__ import annotations

import signal
import time

from decoders import SCHEMA_FINGERPRINT, make_session
from tests.standby.conftest import Group, check_handler, end_all, max_pause_ms, probe_result

RATE = 20_000


def test_takeover_after_kill_9_on_loopback(loopback_group: Group) -> None:
    g = loopback_group
    h = g.handler("h1")
    time.sleep(0.8)
    p1 = g.plant("p1", "p1", rate=RATE, priority=0)
    g.wait_state("p1", "ACTIVE")
    p2 = g.plant("p2", "p2", rate=RATE, priority=1)
    g.wait_state("p2", "STANDBY", synced=True)
    time.sleep(1.0)
    p1.signal(signal.SIGKILL)
    p1.wait()
    g.wait_state("p2", "ACTIVE", timeout_s=5)
    time.sleep(0.5)
    end_all(p2)
    assert p2.wait(timeout=20) == 0 and h.wait(timeout=30) == 0
    r = check_handler(h, seed=1, rate=RATE)
    assert r["stream"]["conflicts"] == 0 and r["stream"]["gaps_detected"] == 0
    print(f"\nloopback kill -9 at {RATE:,} msg/s: {r['count']:,} messages, no gap, no duplicate, pause {max_pause_ms(r):.1f} ms")


def test_a_standby_that_diverged_takes_over_in_a_new_session_never_the_same_one(loopback_group: Group) -> None:
    g = loopback_group
    h = g.handler("h1")
    time.sleep(0.8)
    p1 = g.plant("p1", "p1", rate=RATE, priority=0)
    g.wait_state("p1", "ACTIVE")
    p2 = g.plant("p2", "p2", rate=RATE, priority=1, seed=2)  # another input: its shadow cannot match what it mirrors
    st = g.wait_state("p2", "STANDBY", synced=True)
    time.sleep(0.5)
    st = g.status("p2")["standby"]
    assert st["diverged"] and st["shadow_mismatched"] > 0 and st["shadow_matched"] == 0
    p1.signal(signal.SIGKILL)
    p1.wait()
    after = g.wait_state("p2", "ACTIVE", timeout_s=5)
    assert after["session"] == make_session(SCHEMA_FINGERPRINT, 4243).decode()
    # a handler follows the new session once the old one has been silent past stale_after (3 s by default):
    # until then it cannot tell a crash from a stray second plant (what it holds of the new one meanwhile is
    # delivered when it switches)
    time.sleep(3.5)
    end_all(p2)
    assert p2.wait(timeout=20) == 0 and h.wait(timeout=30) == 0
    r = probe_result(h)
    changes = [e for e in r["events"] if e["event"] == "SessionChanged"]
    assert [(e["old"], e["new"]) for e in changes] == [(make_session(SCHEMA_FINGERPRINT, 4242).decode(), after["session"])]
    assert r["stream"]["conflicts"] == 0
    assert "standby_diverged" in p2.text()
