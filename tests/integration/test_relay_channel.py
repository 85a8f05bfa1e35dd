"""`python -m relay channel` on loopback: a plant, a relay that keeps 20 instruments and delays by 400 ms
(holding 2 KB in memory, spilling the rest to its file), and a line handler on the relay's output.

The downstream handler must deliver exactly the plant's messages of those instruments, in order, each
once (session events aside: the relay has its own session), and none earlier than the delay after it was
published upstream. The delay figures (how late after the 400 ms) are printed; they are not a timed
assertion beyond "never early" and a generous bound, since this machine is shared.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig
from linehandler.handler_io import LineHandler
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags

ROOT = Path(__file__).resolve().parents[2]
DELAY_MS = 400
KEEP = list(range(1, 21))


def test_a_relay_filters_and_delays_a_channel_and_a_handler_gets_exactly_that(tmp_path: Path) -> None:
    up_a, up_b = unique_feeds()
    out_a, out_b = unique_feeds()
    relay = subprocess.Popen([sys.executable, "-m", "relay", "channel", *feed_flags("upstream-", up_a, up_b), *feed_flags("plant-", out_a, out_b),
                              "--delay-ms", str(DELAY_MS), *[x for i in KEEP for x in ("--instruments", str(i))], "--plant-stats-interval-s", "0",
                              "--plant-end-of-session-linger-ms", "300", "--duration-s", "40",
                              "--delay-memory-bytes", "2048", "--spill-dir", str(tmp_path)],  # a few batches in memory: the rest spills
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    record = tmp_path / "published.jsonl"
    got: list[tuple[int, tuple]] = []
    lateness_ms: list[float] = []

    def on_message(channel: str, seq: int, msg: tuple) -> None:
        got.append((seq, msg))
        if msg[0] != b"S":
            lateness_ms.append((time.time_ns() - msg[1]) / 1e6 - DELAY_MS)

    config = HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=out_a[0], port=out_a[1]), feed_b=FeedConfig(group=out_b[0], port=out_b[1])),
                           stats_interval_s=0, exit_on_session_end=True)
    handler = LineHandler(config, on_message)
    try:
        time.sleep(1.0)  # the relay and this handler join before the plant starts
        plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", up_a, up_b), "--source-rate", "3000",
                                  "--source-instruments", "200", "--source-burst-seconds", "0", "--duration-s", "3",
                                  "--stats-interval-s", "0", "--end-of-session-linger-ms", "300", "--record-file", str(record)],
                                 cwd=ROOT, stderr=subprocess.PIPE, text=True)
        handler.run(duration_s=30)
        assert plant.wait(timeout=20) == 0, plant.stderr.read()[-2000:]
        assert relay.wait(timeout=20) == 0, relay.stderr.read()[-3000:]
        log = relay.stderr.read()
    finally:
        handler.close()
        for p in (relay,):
            if p.poll() is None:
                p.kill()
    spilled = re.search(r"spilled_batches=(\d+)", log)
    assert spilled and int(spilled.group(1)) > 10, log[-2000:]  # the delay went through its spill file
    assert sorted(x.name for x in tmp_path.iterdir()) == ["published.jsonl"]  # and left nothing behind
    published = []
    for line in record.read_text().splitlines():
        d = json.loads(line)
        if d["type"] != "system_event" and d["instrument_id"] in KEEP:
            published.append((d["type"], d["instrument_id"], d["timestamp_ns"]))
    delivered = [m for _, m in got if m[0] != b"S"]
    type_name = {b"R": "instrument_directory", b"Q": "quote", b"T": "trade", b"F": "field_update"}
    assert [(type_name[m[0]], m[2], m[1]) for m in delivered] == published  # those instruments, each once, in order
    assert [s for s, _ in got] == list(range(1, len(got) + 1))  # the relay's own session, from 1, no gap
    assert len(published) > 500
    lateness_ms.sort()
    p50, p99 = lateness_ms[len(lateness_ms) // 2], lateness_ms[int(len(lateness_ms) * 0.99)]
    print(f"\nrelay delay {DELAY_MS} ms: delivered {len(delivered):,} messages of {len(KEEP)} instruments; "
          f"late by p50 {p50:.2f} ms, p99 {p99:.2f} ms, min {lateness_ms[0]:.2f} ms")
    assert lateness_ms[0] >= -0.5  # never early (the clocks are the same host's; 0.5 ms for the publish stamp)
    assert p50 < 50, p50


def test_messages_lost_upstream_mark_every_instrument_maybe_stale_downstream(tmp_path: Path) -> None:
    """No retransmission server upstream and heavy in-process loss: the relay's handler gives gaps up, and the relay
    must say so downstream, a maybe_stale = 1 field update for every instrument it carried, never silence."""
    from decoders.schema.fields import FIELDS_BY_NAME

    stale_field = FIELDS_BY_NAME["maybe_stale"].field_id
    up_a, up_b = unique_feeds()
    out_a, out_b = unique_feeds()
    relay = subprocess.Popen([sys.executable, "-m", "relay", "channel", *feed_flags("upstream-", up_a, up_b), *feed_flags("plant-", out_a, out_b),
                              "--upstream-drop", "0.3", "--plant-stats-interval-s", "0", "--plant-end-of-session-linger-ms", "300",
                              "--duration-s", "30"], cwd=ROOT, stderr=(tmp_path / "relay.log").open("w"), text=True)  # a log per gap: a file, not a pipe
    handler = LineHandler(HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=out_a[0], port=out_a[1]),
                                                              feed_b=FeedConfig(group=out_b[0], port=out_b[1])),
                                        stats_interval_s=0, exit_on_session_end=True))
    try:
        time.sleep(1.0)
        plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", up_a, up_b), "--source-rate", "2000",
                                  "--source-instruments", "50", "--source-burst-seconds", "0", "--duration-s", "2",
                                  "--stats-interval-s", "0", "--end-of-session-linger-ms", "300"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        handler.run(duration_s=25)
        assert plant.wait(timeout=20) == 0
        assert relay.wait(timeout=20) == 0
        log = (tmp_path / "relay.log").read_text()
        replica = handler.replica()
    finally:
        handler.close()
        if relay.poll() is None:
            relay.kill()
    assert "upstream_gap" in log and "marked_maybe_stale" in log, log[-2000:]
    marked = {iid for iid, rec in replica.records.items() if rec.values.get(stale_field) == 1}
    assert marked and marked == set(replica.records), (len(marked), len(replica.records))


def test_an_image_refreshing_the_upstream_clears_the_mark_downstream(tmp_path: Path) -> None:
    """Loss upstream with an image server but no re-request server: every gap is given up, the relay marks its
    instruments maybe_stale, the upstream handler refreshes its replica from an image, and the relay publishes the
    refreshed records with maybe_stale = 0."""
    import socket

    from decoders.schema.fields import FIELDS_BY_NAME
    from tests.integration.test_end_to_end import free_port, wait_for_port

    stale_field = FIELDS_BY_NAME["maybe_stale"].field_id
    up_a, up_b = unique_feeds()
    out_a, out_b = unique_feeds()
    tcp = free_port(socket.SOCK_STREAM)
    server = subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", up_a, up_b), "--request-port",
                               str(free_port(socket.SOCK_DGRAM)), "--image-port", str(tcp), "--stats-interval-s", "0", "--duration-s", "30"],
                              cwd=ROOT, stderr=subprocess.DEVNULL)
    wait_for_port(tcp)
    relay = subprocess.Popen([sys.executable, "-m", "relay", "channel", *feed_flags("upstream-", up_a, up_b), *feed_flags("plant-", out_a, out_b),
                              "--upstream-image-servers", f"127.0.0.1:{tcp}", "--upstream-drop", "0.1", "--recovery-late-join-image",
                              "--plant-stats-interval-s", "0", "--plant-end-of-session-linger-ms", "300", "--duration-s", "30"],
                             cwd=ROOT, stderr=(tmp_path / "relay.log").open("w"))
    cleared: list[int] = []

    def on_message(channel: str, seq: int, msg: tuple) -> None:
        if msg[0] == b"F" and msg[3] == stale_field and msg[5] == 0:
            cleared.append(msg[2])

    handler = LineHandler(HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=out_a[0], port=out_a[1]),
                                                              feed_b=FeedConfig(group=out_b[0], port=out_b[1])),
                                        stats_interval_s=0, exit_on_session_end=True), on_message)
    try:
        time.sleep(1.0)
        plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", up_a, up_b), "--source-rate", "2000",
                                  "--source-instruments", "50", "--source-burst-seconds", "0", "--duration-s", "4",
                                  "--stats-interval-s", "0", "--end-of-session-linger-ms", "300"], cwd=ROOT, stderr=subprocess.DEVNULL)
        handler.run(duration_s=25)
        assert plant.wait(timeout=20) == 0
        assert relay.wait(timeout=20) == 0
    finally:
        handler.close()
        for p in (relay, server):
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
    log = (tmp_path / "relay.log").read_text()
    assert "marked_maybe_stale" in log and "refreshed_from_image" in log, log[-2000:]
    assert len(set(cleared)) == 50  # every instrument's record republished, and its mark cleared


def test_a_relay_that_joins_its_upstream_late_publishes_the_image_first_so_the_downstream_replica_is_whole(tmp_path: Path) -> None:
    """The plant has been publishing for 2 s when the relay starts: its line handler joins from a retransmission
    server's image, and the relay publishes that image's records (record images) before the live messages. A
    handler on the relay's channel from its first message must end with the plant's whole replica."""
    import socket

    from tests.integration.test_end_to_end import free_port, plant_image, wait_for_port

    up_a, up_b = unique_feeds()
    out_a, out_b = unique_feeds()
    tcp, udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    server = subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", up_a, up_b), "--request-port", str(udp),
                               "--image-port", str(tcp), "--stats-interval-s", "0", "--duration-s", "40"], cwd=ROOT, stderr=subprocess.DEVNULL)
    wait_for_port(tcp)
    record = tmp_path / "published.jsonl"
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", up_a, up_b), "--source-rate", "2000",
                              "--source-instruments", "300", "--source-burst-seconds", "0", "--duration-s", "6",
                              "--stats-interval-s", "0", "--end-of-session-linger-ms", "300", "--record-file", str(record)],
                             cwd=ROOT, stderr=subprocess.DEVNULL)
    handler = LineHandler(HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=out_a[0], port=out_a[1]),
                                                              feed_b=FeedConfig(group=out_b[0], port=out_b[1])),
                                        stats_interval_s=0, exit_on_session_end=True))
    relay = None
    try:
        time.sleep(2.0)  # the upstream is well under way
        relay = subprocess.Popen([sys.executable, "-m", "relay", "channel", *feed_flags("upstream-", up_a, up_b),
                                  *feed_flags("plant-", out_a, out_b), "--upstream-image-servers", f"127.0.0.1:{tcp}",
                                  "--upstream-nack-servers", f"127.0.0.1:{udp}", "--recovery-late-join-image",
                                  "--plant-stats-interval-s", "0", "--plant-end-of-session-linger-ms", "300", "--duration-s", "30"],
                                 cwd=ROOT, stderr=(tmp_path / "relay.log").open("w"))
        handler.run(duration_s=25)
        assert plant.wait(timeout=20) == 0
        assert relay.wait(timeout=20) == 0
    finally:
        handler.close()
        for p in (relay, server, plant):
            if p is not None and p.poll() is None:
                p.terminate()
    log = (tmp_path / "relay.log").read_text()
    assert "joined_from_image" in log and "upstream_gap" not in log, log[-2000:]
    truth, _ = plant_image(record)
    assert len(truth) == 300
    assert handler.replica() == truth  # every instrument, every field, as the plant has it


def test_a_capture_of_our_channel_replayed_onto_the_wire_goes_through_a_relay_like_the_live_feed(tmp_path: Path) -> None:
    """A relay's input from a pcap of our own channel: a handler captures a plant's A and B datagrams (--capture-file);
    later the capture is put back on the same groups by the wire replay, and a relay republishes it; a handler on
    the relay's channel gets exactly what the plant published."""
    from tests.integration.test_relay_standby_channel import message_keys, published_keys

    up_a, up_b = unique_feeds()
    out_a, out_b = unique_feeds()
    capture, record = tmp_path / "feed.pcap", tmp_path / "published.jsonl"
    capturer = subprocess.Popen([sys.executable, "-m", "linehandler", "run", *feed_flags("channel-", up_a, up_b), "--stats-interval-s", "0",
                                 "--exit-on-session-end", "--duration-s", "30", "--capture-file", str(capture)],
                                cwd=ROOT, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    plant = subprocess.run([sys.executable, "-m", "tickerplant", *feed_flags("", up_a, up_b), "--source-rate", "3000",
                            "--source-instruments", "50", "--source-burst-seconds", "0", "--duration-s", "2", "--stats-interval-s", "0",
                            "--end-of-session-linger-ms", "300", "--record-file", str(record)], cwd=ROOT, capture_output=True, timeout=30)
    assert plant.returncode == 0
    assert capturer.wait(timeout=20) == 0
    relay = subprocess.Popen([sys.executable, "-m", "relay", "channel", *feed_flags("upstream-", up_a, up_b), *feed_flags("plant-", out_a, out_b),
                              "--plant-stats-interval-s", "0", "--plant-end-of-session-linger-ms", "300", "--duration-s", "30"],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    got: list[tuple] = []
    handler = LineHandler(HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=out_a[0], port=out_a[1]),
                                                              feed_b=FeedConfig(group=out_b[0], port=out_b[1])),
                                        stats_interval_s=0, exit_on_session_end=True),
                          on_message=lambda ch, seq, msg: got.append(msg) if msg[0] != b"S" else None)
    try:
        time.sleep(1.0)
        replay = subprocess.run([sys.executable, "-m", "tickerplant", "replay", str(capture), "--speed", "1"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0, replay.stderr[-2000:]
        handler.run(duration_s=20)
        assert relay.wait(timeout=20) == 0, relay.stderr.read()[-2000:]
    finally:
        handler.close()
        if relay.poll() is None:
            relay.kill()
    want = published_keys(record)
    assert len(want) > 5000
    assert message_keys(got) == want
