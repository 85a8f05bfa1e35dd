"""The multicast doctor on loopback: healthy, silent, another schema version, a capped buffer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from mdcommon.doctor_io import check_receive, check_rmem, check_sender, check_source_routes
from mdcommon.mcast_send_io import open_sender
from mdcommon.validate_io import rmem_max
from tests.conftest import need_root, need_tool
from tests.integration.mcast import unique_feeds

ROOT = Path(__file__).resolve().parents[2]


def test_no_publisher_is_a_failure_with_a_fix() -> None:
    a, b = unique_feeds()
    found = check_receive({"feed_a": ("lo", *a)}, 1 << 20, 0.3)
    assert [f.level for f in found] == ["OK", "FAIL"] and "no datagram" in found[1].detail and found[1].fix


def test_another_schema_version_is_named() -> None:
    a, _ = unique_feeds()
    stop = threading.Event()

    def send() -> None:
        s = open_sender("lo")
        s.setblocking(True)
        while not stop.is_set():
            s.sendto(b"ZZZZ000001" + bytes(10), a)
            time.sleep(0.02)
        s.close()

    t = threading.Thread(target=send)
    t.start()
    try:
        found = check_receive({"feed_a": ("lo", *a)}, 1 << 20, 0.5)
    finally:
        stop.set()
        t.join()
    assert found[-1].level == "FAIL" and "another schema version" in found[-1].detail and "ZZZZ000001" in found[-1].detail


def test_capped_buffer_and_sender_findings() -> None:
    cap = rmem_max() or 212992
    assert check_rmem(cap * 2)[0].level == "WARN" and f"net.core.rmem_max={cap * 2}" in check_rmem(cap * 2)[0].fix
    found = check_sender({"feed_a": ("nosuch0", "239.1.1.1", 1, 0), "feed_b": ("lo", "239.1.1.2", 1, 0)})
    assert found[0].level == "FAIL" and "interfaces here" in found[0].detail


def test_doctor_command_with_a_running_plant() -> None:
    a, b = unique_feeds()
    flags = ["--feed-a-group", a[0], "--feed-a-port", str(a[1]), "--feed-b-group", b[0], "--feed-b-port", str(b[1])]
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *flags, "--source-rate", "1000", "--duration-s", "20",
                              "--stats-interval-s", "0", "--end-of-session-linger-ms", "0"], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = subprocess.run([sys.executable, "-m", "linehandler", "doctor", "--timeout-s", "2", *[f.replace("--feed", "--channel-feed") for f in flags]],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        plant.terminate()
        plant.wait(timeout=10)
    assert r.returncode == 0, r.stdout
    assert r.stdout.count("OK ") >= 9 and "FAIL" not in r.stdout


def test_route_back_to_each_accepted_sender() -> None:
    ok = check_source_routes("lo", ["127.0.0.1"], "ch1.feed_a")
    assert [f.level for f in ok] == ["OK"] and "routed back through lo" in ok[0].detail
    assert check_source_routes("lo", [], "ch1.feed_a") == []


DOCTOR_IN_NETNS = """
import json, sys
from mdcommon.doctor_io import check_interface_state, check_source_routes
print(json.dumps([f.__dict__ for f in check_interface_state("lo", "a") + check_source_routes("lo", ["192.0.2.7"], "a")]))
"""


def test_a_down_interface_and_an_unroutable_sender_in_a_fresh_namespace() -> None:
    """A new network namespace has only `lo`, down, and no route anywhere: what a freshly cabled host looks like."""
    need_root()
    need_tool("ip")
    ns = f"mdd-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"], check=True)
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", DOCTOR_IN_NETNS], cwd=ROOT, capture_output=True,
                           text=True, timeout=30)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert found[0]["level"] == "FAIL" and found[0]["detail"] == "lo is down" and found[0]["fix"] == "ip link set lo up"
    assert found[1]["level"] == "WARN" and "no route back to sender 192.0.2.7" in found[1]["detail"]
