"""The multicast doctor on deliberately broken hosts (network namespaces, root): each cause diagnosed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.netns.conftest import sh

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def publishing(two_nic_hosts):
    plant = subprocess.Popen(["ip", "netns", "exec", "mdt-plant", sys.executable, "-m", "tickerplant", "--feed-a-interface", "plant-a",
                              "--feed-a-ttl", "1", "--feed-b-interface", "plant-b", "--feed-b-ttl", "1", "--source-rate", "1000",
                              "--heartbeat-interval-ms", "100", "--stats-interval-s", "0", "--duration-s", "60",
                              "--end-of-session-linger-ms", "0"], cwd=ROOT, stderr=subprocess.DEVNULL)
    yield
    plant.terminate()
    plant.wait(timeout=10)


def doctor(*extra: str) -> tuple[int, str]:
    r = subprocess.run(["ip", "netns", "exec", "mdt-rx", sys.executable, "-m", "linehandler", "doctor", "--channel-feed-a-interface", "rx-a",
                        "--channel-feed-b-interface", "rx-b", "--timeout-s", "1.5", *extra], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout


def line(out: str, check: str) -> str:
    return next(ln for ln in out.splitlines() if f" {check}:" in ln)


def test_healthy_host(publishing) -> None:
    rc, out = doctor()
    assert rc == 0, out
    assert line(out, "ch1.feed_a traffic").startswith("OK") and line(out, "ch1.feed_b traffic").startswith("OK")


def test_interface_down(publishing) -> None:
    sh("ip", "-n", "mdt-rx", "link", "set", "rx-a", "down")
    rc, out = doctor()
    assert rc == 1
    assert line(out, "ch1.feed_a interface").startswith("FAIL") and "rx-a is down" in out and "fix: ip link set rx-a up" in out
    assert line(out, "ch1.feed_b traffic").startswith("OK")  # the other feed is diagnosed as healthy


def test_firewall_drops_the_group(publishing) -> None:
    need_tool("nft")
    for cmd in (["add", "table", "inet", "mdt"], ["add", "chain", "inet", "mdt", "in", "{ type filter hook input priority 0 ; }"],
                ["add", "rule", "inet", "mdt", "in", "ip", "daddr", "239.194.1.1", "udp", "dport", "31001", "drop"]):
        sh("ip", "netns", "exec", "mdt-rx", "nft", *cmd)
    rc, out = doctor()
    assert rc == 1
    assert line(out, "ch1.feed_a firewall").startswith("WARN") and "239.194.1.1" in line(out, "ch1.feed_a firewall")
    assert line(out, "ch1.feed_a traffic").startswith("FAIL")
    assert line(out, "ch1.feed_b firewall").startswith("OK") and line(out, "ch1.feed_b traffic").startswith("OK")


def test_strict_rp_filter_with_an_unroutable_source(publishing) -> None:
    sh("ip", "-n", "mdt-rx", "addr", "flush", "dev", "rx-a")  # the plant's source is no longer routed back via rx-a
    sh("ip", "netns", "exec", "mdt-rx", "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.rx-a.rp_filter=1")
    rc, out = doctor()
    assert rc == 1
    assert line(out, "ch1.feed_a rp_filter").startswith("WARN") and "rp_filter=2" in out
    assert line(out, "ch1.feed_a traffic").startswith("FAIL")


def test_a_buffer_above_rmem_max_is_a_warning(publishing) -> None:
    """Asking for more than net.core.rmem_max allows (the machine's setting is left alone: it is not per namespace)."""
    cap = int(Path("/proc/sys/net/core/rmem_max").read_text())
    rc, out = doctor("--rcvbuf-bytes", str(cap * 2))
    assert line(out, "receive buffer").startswith("WARN") and f"sysctl -w net.core.rmem_max={cap * 2}" in out
    assert rc == 0  # a capped buffer loses bursts but does not stop data: a warning, not a failure
    rc, out = doctor("--rcvbuf-bytes", str(cap))
    assert line(out, "receive buffer").startswith("OK"), out


def test_plant_doctor_on_two_nics(two_nic_hosts) -> None:
    r = subprocess.run(["ip", "netns", "exec", "mdt-plant", sys.executable, "-m", "tickerplant", "doctor", "--feed-a-interface", "plant-a",
                        "--feed-b-interface", "plant-b"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout
    assert "WARN  feed_a ttl: TTL 0 on plant-a" in r.stdout and "fix: --feed-a-ttl 1" in r.stdout
    sh("ip", "-n", "mdt-plant", "addr", "flush", "dev", "plant-b")
    r = subprocess.run(["ip", "netns", "exec", "mdt-plant", sys.executable, "-m", "tickerplant", "doctor", "--feed-a-interface", "plant-a",
                        "--feed-b-interface", "plant-b", "--feed-a-ttl", "1", "--feed-b-ttl", "1"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert "WARN  feed_b route: plant-b has no IPv4 address" in r.stdout and "OK    feed_a route" in r.stdout
