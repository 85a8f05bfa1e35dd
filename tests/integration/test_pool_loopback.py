"""Anonymous recovery on loopback: handlers that know no server address recover and join from a pool.

Two retransmission servers mirror the feed and hear the channel's request group; three line
handlers (processes, configured with the groups and no server address) lose datagrams on
both feeds independently, NACK to the request group, and are repaired on the repair group.
A fourth joins late, asking the request group who has an image. Every handler must deliver
every published message exactly once, in order, from its first one, and the servers' pool
figures must show repairs sent and some yielded to the other server or coalesced.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from mdcommon.status_io import fetch_status
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags, free_port, published, wait_for_port
from tests.integration.test_retransmit_limits import session_of

ROOT = Path(__file__).resolve().parents[2]


def group_flags(prefix: str, request: tuple[str, int], repair: tuple[str, int]) -> list[str]:
    return [f"--{prefix}request-group-group", request[0], f"--{prefix}request-group-port", str(request[1]),
            f"--{prefix}repair-group-group", repair[0], f"--{prefix}repair-group-port", str(repair[1])]


def records(path: Path) -> tuple[list[int], list[dict], dict]:
    """(delivered sequences, events, final status) from a handler's record file."""
    seqs, events, final = [], [], {}
    for line in path.read_text().splitlines():
        d = json.loads(line)
        if "final" in d:
            final = d["final"]
        elif "event" in d:
            events.append(d)
        else:
            seqs.append(d["sequence"])
    return seqs, events, final


def test_handlers_recover_and_join_from_a_pool_they_are_not_configured_with(tmp_path: Path) -> None:
    a, b = unique_feeds()
    request, repair = unique_feeds()
    servers = []
    statuses = []
    for i in range(2):
        udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
        status = tmp_path / f"rtx{i}.sock"
        statuses.append(status)
        servers.append((subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", a, b), *group_flags("", request, repair),
                                          "--request-port", str(udp), "--image-port", str(tcp), "--stats-interval-s", "0",
                                          "--status-socket", str(status), "--duration-s", "40"],
                                         cwd=ROOT, stderr=subprocess.PIPE, text=True), tcp))
    for _, tcp in servers:
        wait_for_port(tcp)
    record = tmp_path / "published.jsonl"
    handlers = []
    common = [*feed_flags("channel-", a, b), *group_flags("channel-", request, repair), "--stats-interval-s", "0",
              "--exit-on-session-end", "--duration-s", "30"]
    for i in range(3):
        handlers.append(subprocess.Popen([sys.executable, "-m", "linehandler", "run", *common, "--drop-a", "0.05", "--drop-b", "0.05",
                                          "--drop-seed", str(i + 1), "--record-file", str(tmp_path / f"h{i}.jsonl")],
                                         cwd=ROOT, stderr=subprocess.PIPE, text=True))
    time.sleep(1.0)
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "8000",
                              "--source-instruments", "300", "--source-burst-seconds", "0", "--duration-s", "5",
                              "--stats-interval-s", "0", "--end-of-session-linger-ms", "500", "--record-file", str(record)],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        session_of(statuses[0])
        time.sleep(2.0)
        late = subprocess.Popen([sys.executable, "-m", "linehandler", "run", *common, "--record-file", str(tmp_path / "late.jsonl")],
                                cwd=ROOT, stderr=subprocess.PIPE, text=True)
        handlers.append(late)
        assert plant.wait(timeout=30) == 0, plant.stderr.read()
        for h in handlers:
            assert h.wait(timeout=30) == 0, h.stderr.read()
        pools = [fetch_status(str(s))["pool"] for s in statuses]
    finally:
        for p, _ in servers:
            p.terminate()
            p.wait(timeout=10)
    truth = published(record)
    last = max(truth)
    for i in range(3):
        seqs, events, final = records(tmp_path / f"h{i}.jsonl")
        assert seqs == list(range(1, last + 1)), f"h{i}: {len(seqs)} of {last} delivered"
        assert not [e for e in events if e["event"] == "GapEvent"]
        stream = final["channels"]["ch1"]["stream"]
        feeds = final["channels"]["ch1"]["feeds"]
        assert stream["gaps_unrecoverable"] == 0 and feeds["R"]["first_arrivals"] > 0, (stream, feeds["R"])
        assert stream["nacks_sent"] + stream["nacks_suppressed"] > 0
    seqs, events, final = records(tmp_path / "late.jsonl")
    applied = [e for e in events if e["event"] == "ImageApplied"]
    assert len(applied) == 1 and seqs == list(range(applied[0]["sequence"] + 1, last + 1)), (applied, seqs[:3])
    assert sum(p["offers"] for p in pools) >= 1 and sum(p["answers"] for p in pools) > 0, pools
    print(f"\npool: {[{k: v for k, v in p.items() if v} for p in pools]}")
