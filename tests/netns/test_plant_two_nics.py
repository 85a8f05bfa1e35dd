"""The plant on a host with two NICs (network namespaces, root): feed A only on NIC A, feed B only
on NIC B, and a NIC going down mid-run costs only its own feed, counted.

Topology: namespace `mdt-plant` with NICs plant-a (10.201.1.1/24) and plant-b (10.201.2.1/24),
each a veth to namespace `mdt-rx` (rx-a, rx-b). Every namespace is removed afterwards,
and leftovers of an aborted run (prefix mdt-) are removed first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.netns.conftest import sh

ROOT = Path(__file__).resolve().parents[2]
GROUP_A, GROUP_B, PORT_A, PORT_B = "239.194.1.1", "239.194.2.1", 31001, 31002


def run_plant(seconds: float, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", "mdt-plant", sys.executable, "-m", "tickerplant",
                             "--feed-a-interface", "plant-a", "--feed-a-ttl", "1", "--feed-b-interface", "plant-b", "--feed-b-ttl", "1",
                             "--source-rate", "3000", "--source-burst-seconds", "0", "--source-instruments", "50", "--duration-s", str(seconds),
                             "--stats-interval-s", "0", "--end-of-session-linger-ms", "300", *extra],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)


def capture(seconds: float) -> subprocess.Popen:
    p = subprocess.Popen(["ip", "netns", "exec", "mdt-rx", sys.executable, "-m", "tests.netns.capture", str(seconds), "rx-a", "rx-b"],
                         cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def covered(datagrams: list[list[int]]) -> list[int]:
    """The sequence numbers carried by data datagrams, in arrival order."""
    return [s for seq, count in datagrams if count not in (0, 0xFFFF) for s in range(seq, seq + count)]


def test_each_feed_leaves_only_through_its_own_nic(two_nic_hosts) -> None:
    cap = capture(4.0)
    plant = run_plant(2.0)
    assert plant.wait(timeout=20) == 0, plant.stderr.read()
    seen = json.loads(cap.communicate(timeout=20)[0])
    assert set(seen["rx-a"]) == {f"{GROUP_A}:{PORT_A}"}, seen["rx-a"].keys()
    assert set(seen["rx-b"]) == {f"{GROUP_B}:{PORT_B}"}, seen["rx-b"].keys()
    a, b = seen["rx-a"][f"{GROUP_A}:{PORT_A}"], seen["rx-b"][f"{GROUP_B}:{PORT_B}"]
    assert a == b and len(a) > 100  # the same datagrams, in the same order, on both NICs
    assert covered(a) == list(range(1, len(covered(a)) + 1))


def test_nic_a_down_mid_run_leaves_b_whole_and_counts_a_errors(two_nic_hosts, tmp_path: Path) -> None:
    record = tmp_path / "published.jsonl"
    cap = capture(5.0)
    plant = run_plant(3.0, "--record-file", str(record))
    time.sleep(1.2)
    sh("ip", "-n", "mdt-plant", "link", "set", "plant-a", "down")
    rc = plant.wait(timeout=20)
    err = plant.stderr.read()
    assert rc == 0, err
    seen = json.loads(cap.communicate(timeout=20)[0])
    a = seen["rx-a"].get(f"{GROUP_A}:{PORT_A}", [])
    b = seen["rx-b"][f"{GROUP_B}:{PORT_B}"]
    published = len(record.read_text().splitlines())
    assert covered(b) == list(range(1, published + 1))  # B carried every published message, in order
    assert len(covered(a)) < published // 2  # A stopped when its NIC went down
    assert "send_failed" in err and "feed=A" in err  # counted and logged, once a second at most
    final = [ln for ln in err.splitlines() if " stats feed=A" in ln][-1]
    assert "send_" in final, final
    assert any(f in final for f in ("send_enetunreach", "send_other_errors", "send_eperm", "send_enobufs"))
    print(f"\nNIC A down after 1.2 s: A carried {len(covered(a))} of {published} messages, B all; final A line: {final[-100:]}")
