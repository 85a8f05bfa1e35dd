"""Anonymous recovery on the test LAN: eight handlers with the same loss, unicast against multicast; a pool
server killed and a new one started; a bad apple flooding the request group. Figures in the run's summary.

Hosts: `plant`, `rtx1`..`rtx3`, `h1`..`h8`, `inject`. The correlated loss is one nftables rule per handler
host and feed, dropping every Nth datagram of the feed: every host counts the same datagrams, so all eight
lose the same ones on both feeds, as behind one bad switch port.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .checker import check
from .conftest import lan_of
from .daemons import POOL_GROUPS, ROOT, Cluster, Daemon
from .impair import Faults
from .test_scenarios import pct, recovery_ms
from .topology import NICS, Lan

HANDLERS = [f"h{i}" for i in range(1, 9)]
HOSTS = ["plant", "rtx1", "rtx2", "rtx3", *HANDLERS, "inject"]
RATE = 10_000  # eight handlers, two or three servers and the plant share two cores


@pytest.fixture
def lan() -> Iterator[Lan]:
    yield from lan_of(HOSTS)  # this module's hosts: eight handlers and a third server


def correlated_loss(faults: Faults, hosts: list[str], every_per_mille: int) -> list[str]:
    return [faults.loss(feed, every_per_mille, host=h, mode="every") for h in hosts for feed in ("A", "B")]


def wire_cost(mode: str, servers: list[Daemon], handlers: list[Daemon], plant: Daemon) -> dict:
    """Requests and repairs per gap, recovery times, and the nothing-lost check of every handler."""
    streams, rec = [], []
    for h in handlers:
        (v,), hr = check([plant.record], h.record, who=h.name)
        s = hr.stream()["stream"]
        assert s["gaps_unrecoverable"] == 0, (mode, h.name, s)
        streams.append(s)
        rec += recovery_ms(hr.events)
    status = [d.status() for d in servers]
    if mode == "multicast":
        repairs = sum(st["pool"]["answers"] for st in status)
        repair_bytes = sum(st["pool"]["bytes_sent"] for st in status)
    else:
        repairs = sum(st["server"]["served"] for st in status)
        repair_bytes = sum(st["server"]["bytes_sent"] for st in status)
    gaps = sum(s["gaps_recovered_by_nack"] for s in streams) / len(streams)  # the same gaps at every handler
    requests = sum(s["nacks_sent"] for s in streams)
    rec.sort()
    return {"mode": mode, "handlers": len(handlers), "gaps": gaps, "requests": requests, "requests_per_gap": requests / gaps,
            "repairs_per_gap": repairs / gaps, "repair_bytes_per_gap": repair_bytes / gaps,
            "suppressed": sum(s["nacks_suppressed"] for s in streams), "p50_ms": pct(rec, .5), "p99_ms": pct(rec, .99)}


def run_mode(cluster: Cluster, mode: str, seconds: float, rate: int) -> dict:
    pool = mode == "multicast"
    servers = [cluster.retransmitter(h, peer=p, pool=pool) for h, p in (("rtx1", "rtx2"), ("rtx2", "rtx1"))]
    handlers = [cluster.handler(h, pool=pool, servers=() if pool else ("rtx1", "rtx2")) for h in HANDLERS]
    plant = cluster.plant(rate=rate, duration_s=seconds, max_datagram_bytes=400)
    plant.wait(60)
    for h in handlers:
        h.wait(30)
    cost = wire_cost(mode, servers, handlers, plant)
    for d in servers:
        d.stop()
    return cost


def describe(c: dict) -> str:
    return (f"{c['mode']}: {c['gaps']:.0f} gaps at each of {c['handlers']} handlers, {c['requests_per_gap']:.2f} requests and "
            f"{c['repairs_per_gap']:.2f} repairs ({c['repair_bytes_per_gap']:,.0f} bytes) per gap, {c['suppressed']} NACKs "
            f"suppressed; recovery p50 {c['p50_ms']:.1f} ms p99 {c['p99_ms']:.1f} ms")


def test_13_eight_handlers_with_the_same_loss_cost_one_request_and_one_repair_per_gap_with_multicast(
        lan: Lan, tmp_path: Path, faults: Faults, figures) -> None:
    # Every 50th datagram on both feeds, the same at every handler, at half the rate: as many gaps as every 100th at
    # RATE, for half the CPU. Suppression is a race between hearing another's request and one's own back-off: with
    # eight handlers, two servers and the plant taking most of two cores at RATE, a 1.2-CPU quota pushed repairs per
    # gap to 1.22 in one run of two (suppression working, but late).
    correlated_loss(faults, HANDLERS, 20)
    runs = {}
    for mode in ("unicast", "multicast"):
        (tmp_path / mode).mkdir()
        runs[mode] = run_mode(Cluster(lan, tmp_path / mode), mode, 6, RATE // 2)
    unicast, multicast = runs["unicast"], runs["multicast"]
    for c in (unicast, multicast):
        figures(f"13 eight handlers, same loss, {describe(c)}")
    assert unicast["requests_per_gap"] > 6 and unicast["repairs_per_gap"] > 6  # one each per handler
    assert multicast["requests_per_gap"] <= 1.5 and multicast["repairs_per_gap"] <= 1.2, multicast


def test_14_a_pool_server_killed_and_a_new_one_started_mid_run_with_no_handler_change(
        lan: Lan, tmp_path: Path, faults: Faults, figures) -> None:
    cluster = Cluster(lan, tmp_path)
    hosts = HANDLERS[:4]
    correlated_loss(faults, hosts, 10)
    rtx1 = cluster.retransmitter("rtx1", peer="rtx2", pool=True)
    rtx2 = cluster.retransmitter("rtx2", peer="rtx1", pool=True)
    handlers = [cluster.handler(h, pool=True, servers=()) for h in hosts]
    plant = cluster.plant(rate=RATE, duration_s=9, max_datagram_bytes=400)
    time.sleep(3)
    rtx1.kill()  # kill -9: its pending answers go with it
    time.sleep(1.5)
    rtx3 = cluster.retransmitter("rtx3", peer="rtx2", pool=True)  # joins late: its mirror takes rtx2's image
    plant.wait(60)
    for h in handlers:
        h.wait(30)
    before = rtx3.status()["pool"]
    rtx2_pool = rtx2.status()["pool"]
    for h in handlers:
        (v,), hr = check([plant.record], h.record, who=h.name)
        s = hr.stream()["stream"]
        assert s["gaps_unrecoverable"] == 0, (h.name, s)
        rec = recovery_ms(hr.events)
        figures(f"14 pool server killed, another started: {h.name} {v.summary()}; {len(rec)} recoveries p50 {pct(rec, .5):.1f} ms "
                f"p99 {pct(rec, .99):.1f} ms, NACK timeouts {s['nack_timeouts']}")
    figures(f"14 rtx3 (started mid-run) answered {before['answers']} repairs, yielded {before['yielded']}; rtx2 answered "
            f"{rtx2_pool['answers']}, yielded {rtx2_pool['yielded']}")
    assert before["answers"] > 0 and before["requests"] > 0, before  # the new server took part, unannounced


def test_15_a_bad_apple_flooding_the_request_group_does_not_slow_the_others(lan: Lan, tmp_path: Path, faults: Faults,
                                                                             figures) -> None:
    cluster = Cluster(lan, tmp_path)
    hosts = HANDLERS[:4]
    correlated_loss(faults, hosts, 10)
    # rtx1 hears any host on the request group and keeps its books; rtx2 hears only the four handlers' addresses
    # (request_group.sources): the kernel drops the apple's requests before rtx2 reads them
    servers = [cluster.retransmitter("rtx1", peer="rtx2", pool=True), cluster.retransmitter("rtx2", peer="rtx1", pool=True, requesters=tuple(hosts))]
    handlers = [cluster.handler(h, pool=True, servers=()) for h in hosts]
    plant = cluster.plant(rate=RATE, duration_s=8, max_datagram_bytes=400)
    group, port = POOL_GROUPS["request"]
    feed_group, feed_port = ("239.194.1.1", 31001)
    # nice 19, as in scenario 11: on a LAN the apple is another host, not a process taking one of our two cores
    apple = lan.popen("inject", ["nice", "-n", "19", sys.executable, "-m", "tests.lan.bad_apple", "--interface", NICS["A"], "--group",
                                 feed_group, "--port", str(feed_port), "--seconds", "6", "--rate", "1000", "--server",
                                 f"{group}:{port}", "--multicast-if", NICS["A"]], cwd=ROOT, stdout=-1, text=True)
    out, _ = apple.communicate(timeout=30)
    pools = [d.status()["pool"] for d in servers]
    plant.wait(60)
    for h in handlers:
        h.wait(30)
    flood = json.loads(out.strip().splitlines()[-1])
    limited = pools[0]["suppressed"]
    assert flood["sent"] > 1000 and limited > flood["sent"] * 0.5, (flood, pools)
    assert pools[1]["suppressed"] == 0 and pools[1]["requests"] < pools[0]["requests"] - 1000, pools  # filtered in the kernel
    figures(f"15 the apple's requests: rtx1 (any source) heard {pools[0]['requests']:,} and refused {limited:,}; rtx2 (sources: the "
            f"handlers) heard {pools[1]['requests']:,}, refused {pools[1]['suppressed']}")
    everyone: list[float] = []
    slowest: list[str] = []
    for h in handlers:
        (v,), hr = check([plant.record], h.record, who=h.name)
        s = hr.stream()["stream"]
        rec = recovery_ms(hr.events)
        everyone += rec
        figures(f"15 bad apple on the request group ({flood['sent']:,} requests at 1,000/s, {limited:,} refused by rtx1's books): "
                f"{h.name} {v.summary()}; {len(rec)} recoveries p50 {pct(rec, .5):.1f} ms p90 {pct(rec, .9):.1f} ms p99 "
                f"{pct(rec, .99):.1f} ms; suppressed {s['nacks_suppressed']}, NACK timeouts {s['nack_timeouts']}")
        assert s["gaps_unrecoverable"] == 0 and s["nack_timeouts"] == 0 and len(rec) > 10, s
        slow = sorted((e for e in hr.events if e["event"] == "Recovered"), key=lambda e: -e["elapsed_ns"])[:3]
        slowest.append(f"{h.name}: slowest {[(e['first'], e['last'], round(e['elapsed_ns'] / 1e6)) for e in slow]}, "
                       f"nacks {s['nacks_sent']} rejects {s['rejects']} throttled {s['nacks_throttled']}")
        # a flood that slowed this handler would slow most of its recoveries, not one
        assert pct(rec, .9) < 250.0, f"{h.name}: recovery p90 {pct(rec, .9):.0f} ms under the flood; {slowest[-1]}"
    # p99 over the four handlers' recoveries together (about 600): one handler's scheduling stall on a busy CI machine
    # is one sample of them, not the p99 of a handler with 90 recoveries (seen once: 555 ms, its p50 42 ms)
    everyone.sort()
    assert pct(everyone, .99) < 500.0, f"recovery p99 {pct(everyone, .99):.0f} ms under the flood; {slowest}"
