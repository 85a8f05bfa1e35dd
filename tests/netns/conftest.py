"""Two hosts with two NICs each side (network namespaces, root): `mdt-plant` (plant-a 10.201.1.1/24,
plant-b 10.201.2.1/24) wired by veths to `mdt-rx` (rx-a, rx-b). Everything is removed afterwards,
and leftovers of an aborted run (prefix mdt-) first."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import need_root, need_tool

PREFIX = "mdt-"


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout


def remove_ours() -> None:
    for line in sh("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@pytest.fixture
def two_nic_hosts():
    need_root()
    need_tool("ip")
    remove_ours()
    try:
        for ns in ("mdt-plant", "mdt-rx"):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for lan, net in (("a", 1), ("b", 2)):
            sh("ip", "-n", "mdt-plant", "link", "add", f"plant-{lan}", "type", "veth", "peer", "name", f"rx-{lan}", "netns", "mdt-rx")
            sh("ip", "-n", "mdt-plant", "addr", "add", f"10.201.{net}.1/24", "dev", f"plant-{lan}")
            sh("ip", "-n", "mdt-rx", "addr", "add", f"10.201.{net}.2/24", "dev", f"rx-{lan}")
            sh("ip", "-n", "mdt-plant", "link", "set", f"plant-{lan}", "up")
            sh("ip", "-n", "mdt-rx", "link", "set", f"rx-{lan}", "up")
        yield
    finally:
        remove_ours()
        assert not [ln for ln in sh("ip", "netns", "list").splitlines() if ln.startswith(PREFIX)]


