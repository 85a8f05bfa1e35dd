"""Relays on the test LAN (issue 20): a vendor switch with one vendor killed.

Hosts: `plant` and `plant2`, two vendors publishing the same messages (the same synthetic input from the same
origin) on two channels, each A on LAN A and B on LAN B; `relay1`, a `relay channel --switch` taking the first
vendor and republishing on a third channel; `h1`, a line handler on the relay's channel.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from linehandler.config import ChannelConfig, RecoveryConfig
from relay.config import ChannelRelayConfig
from tickerplant.config import PlantConfig, SourceConfig

from .conftest import lan_of
from .daemons import FEEDS, Cluster, handler_feeds, plant_feeds
from .topology import Lan

VENDOR_B = {"A": ("239.194.5.1", 31005), "B": ("239.194.6.1", 31006)}
RELAYED = {"A": ("239.194.7.1", 31007), "B": ("239.194.8.1", 31008)}
HOSTS = ["plant", "plant2", "relay1", "h1"]


@pytest.fixture
def lan() -> Iterator[Lan]:
    yield from lan_of(HOSTS)


def published(record: Path) -> list[tuple]:
    out = []
    for line in record.read_text().splitlines():
        d = json.loads(line)
        if d.get("type") not in (None, "system_event"):
            out.append((d["type"], d["instrument_id"], d["timestamp_ns"]))
    return out


def test_16_the_relay_switches_vendor_when_the_one_taken_is_killed_with_nothing_lost_or_doubled(lan: Lan, tmp_path: Path, figures) -> None:
    cluster = Cluster(lan, tmp_path)
    up = ChannelConfig(name="vendor_a", feed_a=handler_feeds(FEEDS)["A"], feed_b=handler_feeds(FEEDS)["B"])
    vb = ChannelConfig(name="vendor_b", feed_a=handler_feeds(VENDOR_B)["A"], feed_b=handler_feeds(VENDOR_B)["B"])
    out = PlantConfig(source=SourceConfig(kind="none"), stats_interval_s=0, end_of_session_linger_ms=500,
                      record_file=str(tmp_path / "relay1.record.jsonl"))
    out.feed_a, out.feed_b = plant_feeds("relay1", RELAYED)
    relay = cluster.relay("relay1", ChannelRelayConfig(upstream=up, vendor_b=vb, switch=True, plant=out,
                                                        recovery=RecoveryConfig(stale_after_ms=1500), duration_s=60))
    h1 = cluster.handler("h1", servers=(), groups=RELAYED)
    time.sleep(1.0)  # the relay joined both vendors
    origin = time.time_ns() + 500_000_000
    vendor_a = cluster.plant("plant", rate=5_000, duration_s=6, origin_ns=origin)
    vendor_b = cluster.plant("plant2", rate=5_000, duration_s=6, origin_ns=origin, feeds=VENDOR_B)
    time.sleep(3.0)
    vendor_a.kill()  # kill -9, mid-stream
    assert vendor_b.wait(60) == 0
    assert relay.wait(60) == 0, relay.log_text()[-3000:]
    assert h1.wait(60) == 0
    log = relay.log_text()
    switched = [x for x in log.splitlines() if " switched " in x]
    assert len(switched) == 1 and "to=vendor_b" in switched[0] and "switch_gap" not in log, log[-3000:]
    want = published(vendor_b.record)
    got = published(h1.record)
    assert got == want  # every message once, in order, across the switch, two hops of real LAN
    assert len(want) > 20_000
    figures(f"16 vendor switch on the LAN: vendor A killed after 3 s; h1 got all {len(got):,} messages once, in order; "
            f"{switched[0].split('switched', 1)[1].strip()}")
