"""Plant, retransmission server and line handler together on loopback, as users run them."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from decoders import CODECS
from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig
from linehandler.events import GapEvent, ImageApplied
from linehandler.handler_io import LineHandler
from mdcommon.image import Image
from tests.integration.mcast import unique_feeds

ROOT = Path(__file__).resolve().parents[2]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def feed_flags(prefix: str, a: tuple[str, int], b: tuple[str, int]) -> list[str]:
    return [f"--{prefix}feed-a-group", a[0], f"--{prefix}feed-a-port", str(a[1]), f"--{prefix}feed-b-group", b[0], f"--{prefix}feed-b-port", str(b[1])]


def published(record: Path) -> dict[int, tuple]:
    """The plant's record file: every message it published, by sequence number."""
    out: dict[int, tuple] = {}
    for line in record.read_text().splitlines():
        d = json.loads(line)
        seq = d.pop("sequence")
        d.pop("msg_type")
        out[seq] = CODECS.by_name[d.pop("type")].from_dict(d)
    return out


def plant_image(record: Path) -> tuple[Image, int]:
    """The plant's image after every published message, and the last sequence number."""
    img = Image()
    msgs = published(record)
    for seq in sorted(msgs):
        img.apply(msgs[seq])
    return img, max(msgs, default=0)


def wait_for_port(port: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


@pytest.mark.parametrize("batched", [False, True], ids=["on_message", "on_messages"])
def test_late_joiner_under_loss_on_both_feeds_converges_to_the_plant_image(tmp_path: Path, batched: bool) -> None:
    a, b = unique_feeds()
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    record = tmp_path / "published.jsonl"
    server = subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", a, b), "--request-port", str(udp),
                               "--image-port", str(tcp), "--stats-interval-s", "0", "--duration-s", "30"],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for_port(tcp)
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "15000",
                              "--source-instruments", "500", "--source-burst-seconds", "0", "--duration-s", "4",
                              "--stats-interval-s", "0", "--end-of-session-linger-ms", "500", "--record-file", str(record)],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # join late, while the plant runs
        delivered: list[int] = []
        events: list = []
        config = HandlerConfig(
            channel=ChannelConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1]),
                                  nack_servers=[f"127.0.0.1:{udp}"], image_servers=[f"127.0.0.1:{tcp}"]),
            drop_a=0.05, drop_b=0.05, drop_seed=random.randrange(1000), stats_interval_s=0, exit_on_session_end=True,
        )
        if batched:  # a datagram's messages in one call
            handler = LineHandler(config, on_event=lambda ch, ev: events.append(ev),
                                  on_messages=lambda ch, first, msgs: delivered.extend(range(first, first + len(msgs))))
        else:
            handler = LineHandler(config, lambda ch, seq, msg: delivered.append(seq), lambda ch, ev: events.append(ev))
        try:
            handler.run(duration_s=20)
            replica = handler.replica()
            status = handler.status()["channels"]["ch1"]
        finally:
            handler.close()
        assert plant.wait(timeout=20) == 0
    finally:
        server.terminate()
        server.wait(timeout=10)
    truth, last = plant_image(record)
    applied = [e for e in events if isinstance(e, ImageApplied)]
    assert [e for e in events if isinstance(e, GapEvent)] == []
    assert len(applied) == 1 and applied[0].sequence > 0
    assert delivered == list(range(applied[0].sequence + 1, last + 1))  # exactly once, in order, after the image
    assert replica == truth
    stream = status["stream"]
    print(f"\nlate join: image at {applied[0].sequence}, then {len(delivered)} messages live; "
          f"gaps {stream['gaps_detected']} (other feed {stream['gaps_filled_by_other_feed']}, NACK {stream['gaps_recovered_by_nack']}), "
          f"NACKs {stream['nacks_sent']}, dropped in-process {handler.dropped}")
    assert stream["gaps_recovered_by_nack"] > 0  # 5 % x 5 %: some datagrams are lost on both feeds


def test_loss_on_a_only_needs_no_nack(tmp_path: Path) -> None:
    a, b = unique_feeds()
    delivered: list[int] = []
    events: list = []
    config = HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1]),
                                                 nack_servers=["127.0.0.1:9"]),  # never answers: any NACK would show
                           drop_a=0.05, stats_interval_s=0, exit_on_session_end=True)
    handler = LineHandler(config, lambda ch, seq, msg: delivered.append(seq), lambda ch, ev: events.append(ev))
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "20000", "--duration-s", "2",
                              "--stats-interval-s", "0", "--end-of-session-linger-ms", "300"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        handler.run(duration_s=15)
        stream = handler.status()["channels"]["ch1"]["stream"]
    finally:
        handler.close()
    assert plant.wait(timeout=15) == 0
    assert delivered == list(range(1, len(delivered) + 1)) and len(delivered) > 20000
    assert stream["nacks_sent"] == 0 and stream["gaps_unrecoverable"] == 0 and handler.dropped["A"] > 0
    assert not [e for e in events if isinstance(e, GapEvent)]


def test_one_handler_two_channels(tmp_path: Path) -> None:
    (a1, b1), (a2, b2) = unique_feeds(), unique_feeds()
    delivered: dict[str, list[int]] = {"x": [], "y": []}
    config = HandlerConfig(
        channels=[{"name": "x", "feed_a": {"group": a1[0], "port": a1[1]}, "feed_b": {"group": b1[0], "port": b1[1]}},
                  {"name": "y", "feed_a": {"group": a2[0], "port": a2[1]}, "feed_b": {"group": b2[0], "port": b2[1]}}],
        stats_interval_s=0, exit_on_session_end=True)
    handler = LineHandler(config, lambda ch, seq, msg: delivered[ch].append(seq))
    plants = [subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", str(rate), "--duration-s", "1.5",
                                "--source-seed", str(seed), "--stats-interval-s", "0", "--end-of-session-linger-ms", "300"],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
              for a, b, rate, seed in ((a1, b1, 5000, 1), (a2, b2, 8000, 2))]
    try:
        handler.run(duration_s=15)
    finally:
        handler.close()
    assert [p.wait(timeout=15) for p in plants] == [0, 0]
    for name in "xy":
        assert delivered[name] == list(range(1, len(delivered[name]) + 1)) and len(delivered[name]) > 5000
    assert len(delivered["y"]) > len(delivered["x"])  # each channel its own sequence space


def test_plant_hosted_request_server_repairs_a_mirror(tmp_path: Path) -> None:
    """The plant serves re-requests from its own journal; a retransmission server repairs its gaps from it."""
    a, b = unique_feeds()
    plant_udp, udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    status = tmp_path / "rtx.sock"
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "5000", "--duration-s", "4",
                              "--source-burst-seconds", "0", "--stats-interval-s", "0", "--end-of-session-linger-ms", "300",
                              "--request-address", "127.0.0.1", "--request-port", str(plant_udp)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the mirror joins late: messages 1..k come from the plant's journal
    server = subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", a, b), "--request-port", str(udp), "--image-port",
                               str(tcp), "--repair-servers", f"127.0.0.1:{plant_udp}", "--stats-interval-s", "0", "--status-socket", str(status),
                               "--duration-s", "20"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert plant.wait(timeout=20) == 0
        time.sleep(0.5)
        from mdcommon.status_io import fetch_status

        snap = fetch_status(str(status))
        stream = snap["mirror"]["channels"]["ch1"]["stream"]
        assert snap["journal"]["first_sequence"] == 1  # history from before it started, repaired from the plant
        assert stream["gaps_unrecoverable"] == 0 and stream["gaps_recovered_by_nack"] >= 1
        assert snap["journal"]["next_sequence"] > 10_000
    finally:
        server.terminate()
        server.wait(timeout=10)
