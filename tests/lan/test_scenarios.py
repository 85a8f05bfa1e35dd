"""The system on a network, failing the way production fails: one scenario per test.

Hosts (namespaces): `plant`, `rtx1`, `rtx2`, `h1`..`h3`, `inject`, each with a NIC on LAN A
and one on LAN B. Real daemons run in them from TOML files; faults are injected per feed
(the plant's switch port) or per host (the host's NIC). Each test ends with the
nothing-lost checker on every handler, and prints its figures in the run's summary.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from decoders.moldudp64 import decode_header
from decoders.pcap import read_udp

from .checker import assert_replica_equals, check, plant_image, read_published
from .daemons import FEEDS, REQUEST_PORT, ROOT, Cluster, Daemon
from .impair import Faults
from .topology import NICS, Lan

RATE = 20_000  # messages/s where the scenario is not about rate


def servers(cluster: Cluster) -> tuple[Daemon, Daemon]:
    return cluster.retransmitter("rtx1", peer="rtx2"), cluster.retransmitter("rtx2", peer="rtx1")


def finish(plant: Daemon, *handlers: Daemon) -> None:
    plant.wait(60)
    for h in handlers:
        h.wait(30)


def recovery_ms(record_events: list[dict]) -> list[float]:
    return sorted(e["elapsed_ns"] / 1e6 for e in record_events if e["event"] == "Recovered")


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def test_1_loss_on_feed_a_only_is_filled_by_feed_b_without_a_nack(cluster: Cluster, faults: Faults, figures) -> None:
    servers(cluster)
    # B's copy trails A's by the plant's time between its two sendmmsg calls, which this shared 2-core machine can
    # stretch past the default shortest gap-wait (1 ms): CI once saw 2 NACKs, and a 1.2-CPU quota 3 in a run. On a
    # LAN the skew is the two paths'; here it is the scheduler's, so the handlers wait 20-50 ms for B. Even that a
    # CI machine outlasted once (1 NACK for 3 gaps): a VM's CPU can stall longer than any wait worth having. So up
    # to 2 NACKs pass; a handler that did not take B's copies would NACK each of A's ~200 losses. The wait itself is
    # tested with a fake clock (tests/unit/test_handler_core.py).
    hs = [cluster.handler(h, recovery={"gap_wait_min_ms": 20.0, "gap_wait_max_ms": 50.0}) for h in ("h1", "h2")]
    rule = faults.loss("A", 50)
    plant = cluster.plant(rate=RATE, duration_s=4)
    finish(plant, *hs)
    dropped = faults.dropped(rule)
    assert dropped > 50
    for h in hs:
        (v,), hr = check([plant.record], h.record, who=h.name)
        s = hr.stream()
        assert s["stream"]["nacks_sent"] <= 2 and s["stream"]["gaps_unrecoverable"] == 0, s["stream"]
        assert s["feeds"]["A"]["missed"] > 0
        figures(f"1 A-only 5% loss: {h.name} {v.summary()}; A datagrams dropped {dropped}, A missed {s['feeds']['A']['missed']:,} "
                f"messages, filled by B {s['stream']['gaps_filled_by_other_feed']} gaps, NACKs {s['stream']['nacks_sent']}")


def test_2_independent_loss_on_both_feeds_is_recovered_with_nacks_near_the_product(cluster: Cluster, faults: Faults, figures) -> None:
    servers(cluster)
    hs = [cluster.handler(h) for h in ("h1", "h2")]
    for h in hs:
        for feed in ("A", "B"):
            faults.loss(feed, 50, host=h.name)
    plant = cluster.plant(rate=RATE, duration_s=5, max_datagram_bytes=400)
    finish(plant, *hs)
    published = len(read_published(plant.record))
    for h in hs:
        (v,), hr = check([plant.record], h.record, who=h.name)
        s = hr.stream()["stream"]
        assert s["gaps_unrecoverable"] == 0 and s["gaps_recovered_by_nack"] > 0, s
        expected = 0.05 * 0.05 * published
        ratio = s["messages_requested"] / expected
        rec = recovery_ms(hr.events)
        figures(f"2 5%+5% loss: {h.name} {v.summary()}; NACKed {s['messages_requested']:,} messages in {s['nacks_sent']} NACKs, "
                f"{ratio:.2f}x the product of the loss rates ({expected:.0f}); rejects {s['rejects']}, NACK timeouts {s['nack_timeouts']}; "
                f"recovery p50 {pct(rec, .5):.1f} ms p99 {pct(rec, .99):.1f} ms")
        assert 0.3 < ratio < 3.0, f"NACKed {s['messages_requested']} messages, expected about {expected:.0f}"


def test_2b_the_same_datagrams_lost_on_both_feeds_are_recovered_in_coalesced_nacks(cluster: Cluster, faults: Faults, figures) -> None:
    servers(cluster)
    h1 = cluster.handler("h1")
    for feed in ("A", "B"):
        faults.loss(feed, 50, host="h1", mode="every")  # every 20th datagram, counted alike on both feeds: the same ones
    plant = cluster.plant(rate=RATE, duration_s=5, max_datagram_bytes=400)
    finish(plant, h1)
    (v,), hr = check([plant.record], h1.record, who="h1")
    s = hr.stream()["stream"]
    rec = recovery_ms(hr.events)
    seconds = 5.0
    figures(f"2b 5% on both feeds, same datagrams: h1 {v.summary()}; {s['gaps_detected']:,} gaps ({s['gaps_detected'] / seconds:.0f}/s, "
            f"over the client's 50 NACKs/s) in {s['nacks_sent']:,} NACKs for {s['messages_requested']:,} messages; recovery p50 "
            f"{pct(rec, .5):.0f} ms p99 {pct(rec, .99):.0f} ms")
    # more gaps than the client may send NACKs: coalescing under the limit (50/s, burst 10) is what recovers them all
    # (one NACK per gap: the backlog drains at 50/s and the last gaps wait about 10 s, at the give-up bound)
    assert s["gaps_unrecoverable"] == 0 and s["gaps_detected"] / seconds > 50 and s["nacks_sent"] <= 50 * (seconds + 1) + 10
    assert pct(rec, .99) < 1000.0


def test_3_a_200ms_burst_lost_on_both_feeds_is_recovered_by_nack(cluster: Cluster, faults: Faults, figures) -> None:
    servers(cluster)
    hs = [cluster.handler(h) for h in ("h1", "h2")]
    plant = cluster.plant(rate=RATE, duration_s=4)
    time.sleep(1.5)
    rules = [faults.block("A"), faults.block("B")]
    time.sleep(0.2)
    dropped = [faults.dropped(r) for r in rules]
    for r in rules:
        faults.remove(r)
    finish(plant, *hs)
    assert min(dropped) > 0
    for h in hs:
        (v,), hr = check([plant.record], h.record, who=h.name)
        s = hr.stream()["stream"]
        assert s["gaps_recovered_by_nack"] >= 1 and s["gaps_unrecoverable"] == 0
        rec = recovery_ms(hr.events)
        figures(f"3 200 ms burst on A and B ({dropped[0]} + {dropped[1]} datagrams): {h.name} {v.summary()}; "
                f"{s['messages_requested']:,} messages NACKed, slowest recovery {max(rec):.0f} ms")


def test_4_feed_a_down_for_10s_b_carries_everything_and_a_comes_back(cluster: Cluster, lan: Lan, figures) -> None:
    servers(cluster)
    hs = [cluster.handler(h, recovery={"stale_after_ms": 1000.0}) for h in ("h1", "h2")]
    plant = cluster.plant(rate=RATE, duration_s=13)
    time.sleep(1.0)
    lan.switch_port("plant", "A", False)
    time.sleep(10.0)
    lan.switch_port("plant", "A", True)
    finish(plant, *hs)
    for h in hs:
        (v,), hr = check([plant.record], h.record, who=h.name)
        feed_events = [(e["event"], e["feed"]) for e in hr.events if e["event"] in ("FeedStale", "FeedRecovered")]
        assert feed_events == [("FeedStale", "A"), ("FeedRecovered", "A")], feed_events
        s = hr.stream()
        assert s["stream"]["nacks_sent"] == 0 and s["feeds"]["A"]["stale"] is False
        figures(f"4 feed A down 10 s: {h.name} {v.summary()}; A missed {s['feeds']['A']['missed']:,} messages; "
                f"events {feed_events}; NACKs 0")


def test_5_reordering_and_duplication_on_both_feeds_leave_the_stream_exact(cluster: Cluster, faults: Faults, figures) -> None:
    for seed, feed in enumerate(("A", "B"), 1):
        faults.relay(feed, delay_ms=2.0, jitter_ms=1.5, reorder=0.1, dup=0.05, seed=seed)
    servers(cluster)
    hs = [cluster.handler(h) for h in ("h1", "h2")]
    plant = cluster.plant(rate=RATE, duration_s=4)
    finish(plant, *hs)
    relays = faults.relay_counts()
    assert all(r["duplicated"] > 0 and r["reordered"] > 0 for r in relays), relays
    for h in hs:
        (v,), hr = check([plant.record], h.record, who=h.name)
        s = hr.stream()
        assert s["stream"]["gaps_unrecoverable"] == 0
        figures(f"5 reorder+dup: {h.name} {v.summary()}; duplicates A {s['feeds']['A']['duplicates']:,} B "
                f"{s['feeds']['B']['duplicates']:,}; NACKs {s['stream']['nacks_sent']}; relays {relays}")


def test_6_a_late_joiner_at_full_rate_converges_to_the_plant_image(cluster: Cluster, figures) -> None:
    servers(cluster)
    plant = cluster.plant(rate=100_000, instruments=20_000, duration_s=8)
    time.sleep(3.0)
    h1 = cluster.handler("h1")
    finish(plant, h1)
    (v,), hr = check([plant.record], h1.record, who="h1")
    assert len(v.images) == 1 and v.covered_by_image > 0
    compared = assert_replica_equals(plant_image(read_published(plant.record)), h1.image, "h1")
    s = hr.stream()["stream"]
    figures(f"6 late join, plant asked for 100 k msg/s and reaching {v.last / 8 / 1000:.0f} k (its limit on this machine), 20 k "
            f"instruments: h1 {v.summary()}; replica equal on {compared:,} instruments; NACKed {s['messages_requested']:,}")


def test_7_rtx1_killed_during_recovery_rtx2_takes_over(cluster: Cluster, faults: Faults, figures) -> None:
    rtx1, _ = servers(cluster)
    h1 = cluster.handler("h1")
    for feed in ("A", "B"):
        faults.loss(feed, 200, host="h1")
    plant = cluster.plant(rate=RATE, duration_s=6)
    time.sleep(2.0)
    rtx1.kill()
    finish(plant, h1)
    (v,), hr = check([plant.record], h1.record, who="h1")
    s = hr.stream()["stream"]
    assert s["server_failovers"] >= 1 and s["gaps_unrecoverable"] == 0, s
    rec = recovery_ms(hr.events)
    figures(f"7 rtx1 killed: h1 {v.summary()}; failovers {s['server_failovers']}, NACK timeouts {s['nack_timeouts']}, "
            f"recoveries {len(rec)}, slowest {max(rec):.0f} ms")


def received_sequences(capture: Path) -> set[int]:
    seen: set[int] = set()
    for _, _, _, _, _, payload in read_udp(capture):
        _, seq, count = decode_header(payload)
        if count < 0xFFFE:
            seen.update(range(seq, seq + count))
    return seen


def test_8_all_servers_down_live_flows_losses_reported_exactly_then_resync(cluster: Cluster, faults: Faults, figures) -> None:
    rtx1, rtx2 = servers(cluster)
    capture = cluster.dir / "h1.pcap"
    h1 = cluster.handler("h1", recovery={"give_up_s": 1.0, "request_timeout_ms": 100.0}, capture_file=str(capture))
    plant = cluster.plant(rate=RATE)  # until the resync is done: a server back rebuilds its history at its own pace
    time.sleep(1.5)
    rtx1.kill()
    rtx2.kill()
    rules = [faults.block(feed, host="h1") for feed in ("A", "B")]
    time.sleep(0.2)
    for r in rules:
        faults.remove(r)
    deadline = time.monotonic() + 10
    while h1.status()["channels"]["ch1"]["stream"]["gaps_unrecoverable"] == 0:  # given up after give_up_s, live data flowing
        assert time.monotonic() < deadline, "the gap was never reported"
        time.sleep(0.1)
    time.sleep(0.5)
    mid = h1.status()["channels"]["ch1"]
    # back, with the plant as its only repair source (its peer is still dead): it rebuilds its history from the plant, then
    # serves the image. A server whose rebuild gave up a range serves no image (its replica would miss it); with the dead
    # peer listed first, the tail of the rebuild was sometimes asked of it until the give-up
    cluster.retransmitter("rtx1")
    deadline = time.monotonic() + 40  # the handler retries every image_retry (5 s) until one is served
    while h1.status()["channels"]["ch1"]["stream"]["images_applied"] == 0:
        assert time.monotonic() < deadline, "no resync from an image once a server came back"
        time.sleep(0.2)
    time.sleep(1.0)  # live data after the resync, then the end of the session
    plant.stop()
    finish(plant, h1)
    seen = received_sequences(capture)
    published = read_published(plant.record)
    missing = sorted(set(published) - seen)
    holes: list[tuple[int, int]] = []
    for seq in missing:
        if holes and holes[-1][1] == seq - 1:
            holes[-1] = (holes[-1][0], seq)
        else:
            holes.append((seq, seq))
    assert holes, "the block dropped nothing"
    (v,), hr = check([plant.record], h1.record, allow_gap=lambda a, b, _: (a, b) in holes, who="h1")
    assert [(a, b) for a, b, _ in v.gaps] == holes, f"reported {v.gaps}, never received {holes}"
    assert mid["stream"]["gaps_unrecoverable"] == len(holes) and mid["expected"] > holes[-1][1] + 5000, "live data stopped"
    assert v.images, "no resync from an image once a server came back"
    assert hr.count("ImageFailed"), "the image fetch while servers were down should have failed loudly"
    compared = assert_replica_equals(plant_image(published), h1.image, "h1")
    figures(f"8 all servers down: h1 {v.summary()}; never received {holes}, reported exactly; "
            f"{len(hr.count('ImageFailed'))} image failures while down; replica equal on {compared:,} instruments after resync")


def test_9_plant_restart_is_a_new_session_and_handlers_follow(cluster: Cluster, figures) -> None:
    servers(cluster)
    hs = [cluster.handler(h, exit_on_session_end=False) for h in ("h1", "h2")]
    state = str(cluster.dir / "plant.session")
    first = cluster.plant(rate=RATE, duration_s=3, state_file=state)
    first.wait(30)
    second = cluster.plant(rate=RATE, duration_s=3, state_file=state, name="plant-2")
    second.wait(30)
    last = max(read_published(second.record))
    for h in hs:
        deadline = time.monotonic() + 10
        while (h.status()["channels"]["ch1"]["expected"] or 0) <= last and time.monotonic() < deadline:
            time.sleep(0.1)
        h.stop()
        verdicts, hr = check([first.record, second.record], h.record, who=h.name)
        assert hr.stream()["stream"]["session_changes"] == 1
        figures(f"9 plant restarted: {h.name} session 1 {verdicts[0].summary()}; session 2 {verdicts[1].summary()}")


def old_build(dest: Path) -> Path:
    """The project as built from another schema version: the quote gains a field."""
    for pkg in ("decoders", "linehandler", "mdcommon", "retransmit", "tickerplant"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    schema = dest / "decoders" / "schema" / "messages.py"
    text = schema.read_text()
    anchor = '"trade_id" / Int64ub * "trade id, unique per instrument and day",'
    assert anchor in text
    schema.write_text(text.replace(anchor, anchor + '\n    "venue" / Int8ub * "trading venue id",'))
    return dest


def test_10_a_handler_of_another_schema_version_refuses_the_feed(cluster: Cluster, figures) -> None:
    servers(cluster)
    old = cluster.handler("h1", cwd=old_build(cluster.dir / "old"), exit_on_session_end=False)
    good = cluster.handler("h2")
    plant = cluster.plant(rate=RATE, duration_s=3)
    finish(plant, good)
    old.stop()
    check([plant.record], good.record, who="h2")
    hr_lines = [json.loads(line) for line in old.record.read_text().splitlines()]
    assert not [d for d in hr_lines if "sequence" in d], "the old build delivered messages"
    mismatches = [d for d in hr_lines if d.get("event") == "SchemaMismatch"]
    final = next(d["final"] for d in hr_lines if "final" in d)["channels"]["ch1"]
    assert len(mismatches) == 1 and final["stream"]["delivered"] == 0
    for feed in ("A", "B"):
        c = final["feeds"][feed]
        assert c["schema_mismatch"] == c["datagrams"] > 0 and c["messages"] == 0
    assert "SchemaMismatch" in old.log_text() and "WARNING" in old.log_text().upper()
    figures(f"10 schema skew: old build refused {final['feeds']['A']['schema_mismatch']:,} + {final['feeds']['B']['schema_mismatch']:,} "
            f"datagrams, delivered 0, one SchemaMismatch event {mismatches[0]}")


def bad_apple(cluster: Cluster, faults: Faults, lan: Lan, figures, label: str, rate: float, guard: int = 0, limits=None) -> None:
    rtx1 = cluster.retransmitter("rtx1", peer="rtx2", limits=limits)
    rtx2 = cluster.retransmitter("rtx2", peer="rtx1", limits=limits)
    guards = [faults.guard_requests(h, REQUEST_PORT, guard) for h in ("rtx1", "rtx2")] if guard else []
    hs = [cluster.handler(h) for h in ("h1", "h2")]
    for h in hs:
        for feed in ("A", "B"):
            faults.loss(feed, 50, host=h.name)
    # Half the usual rate: the plant, two handlers and two servers (each also journaling the feed) take about 1.6
    # of this machine's 2 cores at 20,000 msg/s, before the apple and the servers' answers to it. A CI machine that
    # lost a fifth of its CPU to a neighbour then fell behind everywhere and its recovery p99 read 541 ms with no
    # NACK timed out; the same starvation reproduced with a 1.2-CPU cgroup quota (p50 409 ms at 20,000, p99 25-54 ms
    # at 10,000). The bound below is about the apple, not about a machine short of CPU.
    plant = cluster.plant(rate=RATE // 2, duration_s=8, max_datagram_bytes=400)
    group, port = FEEDS["A"]
    # The apple runs at the lowest CPU priority: on a LAN it is another host, and here it shares two cores with six
    # daemons. At full speed it would otherwise take a core the servers and handlers need, and the figures would
    # measure this machine's scheduler rather than what the servers' limits and the guard let through.
    apple = lan.popen("inject", ["nice", "-n", "19", sys.executable, "-m", "tests.lan.bad_apple", "--interface", NICS["A"], "--group", group, "--port",
                                 str(port), "--seconds", "6", "--rate", str(rate), "--server", f"{Lan.addr('rtx1', 'A')}:{REQUEST_PORT}",
                                 "--server", f"{Lan.addr('rtx2', 'A')}:{REQUEST_PORT}"], cwd=ROOT, stdout=-1, text=True)
    out, _ = apple.communicate(timeout=30)
    server_status = [rtx1.status()["server"], rtx2.status()["server"]]
    kernel_dropped = sum(faults.dropped(g) for g in guards)
    finish(plant, *hs)
    flood = json.loads(out.strip().splitlines()[-1])
    received = sum(s["requests"] for s in server_status)  # what got past the kernel (socket buffer, guard)
    limited = sum(s["rejected_rate_limited"] + s["suppressed"] for s in server_status)
    assert flood["sent"] > 1000 and limited > received * 0.5, (flood, server_status)
    for h in hs:
        (v,), hr = check([plant.record], h.record, who=h.name)
        s = hr.stream()["stream"]
        rec = recovery_ms(hr.events)
        figures(f"11 bad apple, {label} ({flood['sent']:,} NACKs sent, {kernel_dropped:,} dropped by the guard, {received:,} reached "
                f"the servers, {limited:,} refused by their limits): {h.name} {v.summary()}; {len(rec)} recoveries p50 "
                f"{pct(rec, .5):.1f} ms p90 {pct(rec, .9):.1f} ms p99 {pct(rec, .99):.1f} ms max {max(rec):.1f} ms; NACK timeouts "
                f"{s['nack_timeouts']}, rejects {s['rejects']}, throttled {s['nacks_throttled']}")
        assert s["gaps_unrecoverable"] == 0 and len(rec) > 10
        # the bound: nothing lost, no request unanswered, p99 within a request timeout plus a server's retry-after
        # (p99 10-55 ms here at 10,000 msg/s, also under a 1.2-CPU quota; 500 ms is far from both)
        assert s["nack_timeouts"] <= 1 and pct(rec, .99) < 500.0, f"recovery p99 {pct(rec, .99):.0f} ms under the flood"


def test_11a_a_bad_apple_nacking_at_20x_its_limit_does_not_slow_the_others(cluster: Cluster, faults: Faults, lan: Lan, figures) -> None:
    # 20x the server's per-requester limit; at 5,000/s to each server (100x) two Python servers sharing this
    # 2-core machine with everything else cannot drain their sockets: that flood is what the kernel guard is for (11b)
    bad_apple(cluster, faults, lan, figures, "1,000 NACKs/s to each server", rate=1000)


def test_11b_a_full_speed_nack_flood_is_held_off_by_the_per_source_kernel_guard(cluster: Cluster, faults: Faults, lan: Lan,
                                                                                   figures) -> None:
    bad_apple(cluster, faults, lan, figures, "full speed behind the nft per-source guard", rate=0, guard=500)


def test_12_malformed_datagrams_on_both_groups_are_counted_and_the_stream_stays_exact(cluster: Cluster, lan: Lan, figures) -> None:
    """h1 and h2 accept any sender: they count every hostile datagram. h3 accepts each feed only from the
    plant's NIC on that LAN (a source-specific join): the kernel drops the inject host's datagrams, so h3
    counts none of them."""
    servers(cluster)
    hs = [cluster.handler(h) for h in ("h1", "h2")]
    filtered = cluster.handler("h3", sources=("plant",))
    # The plant runs until both injectors are done: they start together (each imports scapy, which takes
    # seconds on a busy machine) and learn the live session from their feed, so it must still be live then.
    plant = cluster.plant(rate=RATE)
    plant.wait_status()
    injectors = {}
    for feed in ("A", "B"):
        group, port = FEEDS[feed]
        injectors[feed] = lan.popen("inject", [sys.executable, "-m", "tests.lan.inject", "--interface", NICS[feed], "--group", group,
                                               "--port", str(port), "--repeat", "20", "--seed", str(ord(feed))],
                                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent = {}
    for feed, p in injectors.items():
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, f"injector on {feed}: {err}"
        sent[feed] = json.loads(out.strip().splitlines()[-1])
    time.sleep(1.0)  # the stream goes on after the last hostile datagram
    plant.stop()
    finish(plant, *hs, filtered)
    for h in [*hs, filtered]:
        (v,), hr = check([plant.record], h.record, who=h.name)
        s = hr.stream()
        for feed in ("A", "B"):
            c = s["feeds"][feed]
            for counter in ("malformed", "schema_mismatch", "old_session"):
                expected = 0 if h is filtered else sent[feed][counter]
                assert c[counter] == expected, (h.name, feed, counter, c[counter], expected)
        figures(f"12 hostile datagrams ({sum(sent[f]['malformed'] for f in sent)} malformed, "
                f"{sum(sent[f]['schema_mismatch'] for f in sent)} other schema, {sum(sent[f]['old_session'] for f in sent)} old session): "
                f"{h.name}{' (sources: the plant only)' if h is filtered else ''} {v.summary()}; counted malformed "
                f"A {s['feeds']['A']['malformed']} B {s['feeds']['B']['malformed']}")
