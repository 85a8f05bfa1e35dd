"""Accepting a feed only from the plant's address: another sender's well-formed datagrams of our own
session never reach the handler (the kernel drops them at the source-specific join).

On loopback, 127.0.0.2 plays the other host: it is an address of `lo` a socket can send from. The
plant binds its senders to 127.0.0.1 (`feed_*.source_address`): left to itself, the kernel may give
multicast on `lo` the source address of another NIC.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from decoders import CODECS
from decoders.moldudp64 import decode_header, encode_datagram, encode_heartbeat
from linehandler.config import HandlerConfig
from linehandler.events import GapEvent, SequenceConflict
from linehandler.handler_io import LineHandler
from mdcommon.mcast_recv_io import open_receiver
from mdcommon.mcast_send_io import open_sender
from mdcommon.validate_io import ConfigError, check_feed
from tests.integration.mcast import collect, unique_feeds
from tests.integration.test_end_to_end import feed_flags, free_port
from tests.unit.handler_harness import quote

ROOT = Path(__file__).resolve().parents[2]
FORGED_SEQUENCE = 1_000_000


def test_a_source_specific_join_receives_only_the_listed_sender() -> None:
    (group, port), _ = unique_feeds()
    only_plant, _ = open_receiver("lo", group, port, 1 << 20, ["127.0.0.1"])
    anyone, _ = open_receiver("lo", group, port, 1 << 20)
    plant, other = open_sender("lo", source_address="127.0.0.1"), open_sender("lo", source_address="127.0.0.2")
    try:
        for i in range(5):
            plant.sendto(b"plant%d" % i, (group, port))
            other.sendto(b"other%d" % i, (group, port))
        got = collect({"only": only_plant, "any": anyone}, lambda g: len(g["any"]) >= 10 and len(g["only"]) >= 5, 5)
    finally:
        for s in (only_plant, anyone, plant, other):
            s.close()
    assert got["only"] == [b"plant%d" % i for i in range(5)]
    assert sorted(got["any"]) == sorted([b"plant%d" % i for i in range(5)] + [b"other%d" % i for i in range(5)])


def test_sources_must_be_unicast_ipv4_addresses() -> None:
    check_feed("lo", "239.194.1.1", 31001, "ch1.feed_a", ["127.0.0.1", "10.1.2.3"])
    for bad in (["plant"], ["239.1.1.1"], ["0.0.0.0"], ["10.1.1.1", "10.1.1.1"]):
        with pytest.raises(ConfigError, match="sources"):
            check_feed("lo", "239.194.1.1", 31001, "ch1.feed_a", bad)


def test_forged_datagrams_from_another_host_reach_only_the_unfiltered_channel(tmp_path: Path) -> None:
    """From 127.0.0.2, to both groups, with the plant's own session: a heartbeat claiming sequence
    1,000,000, then a well-formed quote at a sequence the plant has not reached yet. The channel that
    accepts only 127.0.0.1 never sees either and delivers the plant's stream exactly. The channel that
    accepts any sender holds the heartbeat unbelieved (no gap, nothing lost), but the forged quote is the first copy of its sequence: it is delivered,
    and the plant's real message there is a SequenceConflict. Only the source filter keeps forged data out.
    (The heartbeat is beyond the receive window, so the open channel never believes it at all.)"""
    a, b = unique_feeds()

    def channel(name: str, sources: list[str]) -> dict:  # a [[channels]] table, as in a config file
        return {"name": name, "feed_a": {"group": a[0], "port": a[1], "sources": sources},
                "feed_b": {"group": b[0], "port": b[1], "sources": sources},
                "nack_servers": [f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"]}  # nobody answers: a gap would wait its 10 s give-up

    config = HandlerConfig(channels=[channel("filtered", ["127.0.0.1"]), channel("open", [])], stats_interval_s=0,
                           exit_on_session_end=True)
    delivered: dict[str, list[int]] = {"filtered": [], "open": []}
    events: dict[str, list] = {"filtered": [], "open": []}
    handler = LineHandler(config, lambda ch, seq, msg: delivered[ch].append(seq), lambda ch, ev: events[ch].append(ev))
    spy, _ = open_receiver("lo", a[0], a[1], 1 << 20)  # learns the session and position the forger copies
    forger = open_sender("lo", source_address="127.0.0.2")
    forged_at: list[int] = []

    def forge() -> None:
        got = collect({"a": spy}, lambda g: len(g["a"]) >= 20, 10)["a"]
        session, seq, count = decode_header(got[-1])
        ahead = seq + count + 2000  # about 0.4 s ahead of the plant at 5,000 msg/s
        for d in (encode_heartbeat(session, FORGED_SEQUENCE), encode_datagram(session, ahead, [CODECS.encode(quote(7))])):
            for group in (a, b):
                forger.sendto(d, group)
        forged_at.append(ahead)

    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "5000",
                              "--feed-a-source-address", "127.0.0.1", "--feed-b-source-address", "127.0.0.1",
                              "--duration-s", "2", "--stats-interval-s", "0", "--source-burst-multiplier", "1",
                              "--end-of-session-linger-ms", "300"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    thread = threading.Thread(target=forge)
    thread.start()
    try:
        handler.run(duration_s=20)
    finally:
        thread.join()
        handler.close()
        spy.close()
        forger.close()
    assert plant.wait(timeout=15) == 0
    assert forged_at, "the forger never learned the session"
    n = len(delivered["filtered"])
    assert n > forged_at[0] and delivered["filtered"] == list(range(1, n + 1))
    assert delivered["open"] == delivered["filtered"]  # same sequences; one of the open channel's messages may be forged
    filtered, opened = (ch.core for ch in handler.channels)
    assert not [e for e in events["filtered"] if isinstance(e, (GapEvent, SequenceConflict))]
    assert filtered.counters["announced_withdrawn"] == 0 and filtered.counters["conflicts"] == 0
    assert not [e for e in events["open"] if isinstance(e, GapEvent)]
    # the forged heartbeat is far beyond the receive window: held, never believed (nothing to withdraw)
    assert opened.counters["announced_withdrawn"] == 0
    assert opened.feed_counters[0]["unconfirmed"] >= 2 and opened.feed_counters[1]["unconfirmed"] >= 1
    conflicts = [e for e in events["open"] if isinstance(e, SequenceConflict)]
    held = opened.feed_counters[0]["unconfirmed"] + opened.feed_counters[1]["unconfirmed"]
    # the quote, 2,000 ahead, is inside the window once the handler has measured the stream's rate (10,000 at
    # 5,000 msg/s), beyond it before (the window starts at 1,000): delivered and reported as a conflict, or held
    if conflicts:
        assert conflicts[0].first == forged_at[0] and opened.counters["conflicts"] >= 1
    else:
        assert held >= 5 and opened.counters["claims_dropped"] + len(opened.claims) >= 2
