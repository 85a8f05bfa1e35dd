"""The test LAN: built fresh for each scenario, removed afterwards even when the test fails.

Needs root, iproute2 and nftables; skips with the reason otherwise, and fails instead under
MD_REQUIRE_ALL=1 (set by .ci/run). Leftovers of an aborted run (namespaces named mdl-*)
are removed before building.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import need_root, need_tool

from .daemons import FEEDS, Cluster
from .impair import Faults
from .topology import Lan, namespaces

HOSTS = ["plant", "rtx1", "rtx2", "h1", "h2", "h3", "inject"]


_FIGURES: list[str] = []


@pytest.fixture
def figures() -> Callable[[str], None]:
    """Record a scenario's figures; they are printed in the run's summary."""
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter) -> None:
    if _FIGURES:
        terminalreporter.section("test LAN scenario figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


def lan_of(hosts: list[str]) -> Iterator[Lan]:
    """A test LAN of `hosts`, removed afterwards (a fixture's body: `yield from lan_of(...)`)."""
    need_root()
    need_tool("ip")
    need_tool("nft")
    need_tool("ss")
    net = Lan(hosts).build()
    try:
        yield net
    finally:
        net.teardown()
        assert not list(namespaces()), "namespaces left behind"


@pytest.fixture
def lan() -> Iterator[Lan]:
    yield from lan_of(HOSTS)


@pytest.fixture
def cluster(lan: Lan, tmp_path: Path) -> Cluster:
    return Cluster(lan, tmp_path)


@pytest.fixture
def faults(lan: Lan) -> Iterator[Faults]:
    f = Faults(lan, FEEDS)
    try:
        yield f
    finally:
        f.clear()
