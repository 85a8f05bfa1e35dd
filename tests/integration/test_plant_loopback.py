"""The plant as a user runs it, on loopback: contiguous sequences, byte-identical A/B, clean stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from decoders import CODECS
from decoders.moldudp64 import decode_datagram
from tests.integration.mcast import collect, receiver, unique_feeds

ROOT = Path(__file__).resolve().parents[2]


def plant_cmd(a: tuple[str, int], b: tuple[str, int], *extra: str) -> list[str]:
    return [sys.executable, "-m", "tickerplant", "--feed-a-group", a[0], "--feed-a-port", str(a[1]),
            "--feed-b-group", b[0], "--feed-b-port", str(b[1]), "--stats-interval-s", "0", *extra]


def ended(got: dict[str, list[bytes]], packets: int = 1) -> bool:
    return all(sum(d[18:20] == b"\xff\xff" for d in v) >= packets for v in got.values())


def summarize(datagrams: list[bytes]) -> tuple[list[tuple], int, int]:
    msgs, eos, beats = [], 0, 0
    expected = 1
    for d in datagrams:
        _, seq, count, m = decode_datagram(d, CODECS)
        if count == 0xFFFF:
            eos += 1
        elif count == 0:
            beats += 1
            assert seq == expected
        else:
            assert seq == expected, f"gap or reorder: datagram starts at {seq}, expected {expected}"
            expected += count
            msgs += [(seq + i, x) for i, x in enumerate(m)]
    return msgs, eos, beats


@pytest.mark.parametrize("timing", [(), ("--max-batch-delay-us", "100", "--spin-us", "50")], ids=["sleeping", "spinning"])
def test_both_feeds_carry_the_same_contiguous_stream(tmp_path: Path, timing: tuple[str, ...]) -> None:
    """Also with the loop awake for the last 50 µs before each batch (--spin-us): the same stream, a clean stop."""
    a, b = unique_feeds()
    socks = {"A": receiver(*a), "B": receiver(*b)}
    record = tmp_path / "published.jsonl"
    proc = subprocess.Popen(plant_cmd(a, b, "--duration-s", "1.5", "--source-rate", "20000", "--source-instruments", "300",
                                      "--end-of-session-linger-ms", "300", "--record-file", str(record), *timing),
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    got = collect(socks, lambda g: ended(g, 2), timeout_s=20)
    rc = proc.wait(timeout=20)
    err = proc.stderr.read()
    assert rc == 0, err
    assert got["A"] == got["B"]  # byte-identical copies, in the same order
    msgs, eos, _ = summarize(got["A"])
    assert eos >= 2
    assert msgs[0][1][0] == b"S" and msgs[0][1][2] == ord("S")  # start of session first
    assert msgs[-1][1][0] == b"S" and msgs[-1][1][2] == ord("E")  # end of session last
    assert [m[1][0] for m in msgs[1:301]] == [b"R"] * 300  # then the directory
    published = [json.loads(line) for line in record.read_text().splitlines()]
    assert [p["sequence"] for p in published] == [s for s, _ in msgs]
    assert [p["type"] for p in published] == [CODECS.codec_for(m).name for _, m in msgs]
    assert "session_started" in err and "plant_stopped" in err


def test_sigterm_flushes_and_ends_the_session_with_exit_0() -> None:
    a, b = unique_feeds()
    socks = {"A": receiver(*a), "B": receiver(*b)}
    proc = subprocess.Popen(plant_cmd(a, b, "--source-rate", "5000", "--end-of-session-linger-ms", "200"),
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    got = collect(socks, ended, timeout_s=15)
    assert proc.wait(timeout=15) == 0
    for feed in "AB":
        msgs, eos, _ = summarize(got[feed])
        assert eos >= 1 and msgs[-1][1][2] == ord("E")


def test_heartbeats_when_idle() -> None:
    a, b = unique_feeds()
    socks = {"A": receiver(*a), "B": receiver(*b)}
    proc = subprocess.Popen(plant_cmd(a, b, "--source-kind", "none", "--heartbeat-interval-ms", "50", "--duration-s", "0.6",
                                      "--end-of-session-linger-ms", "100"), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    got = collect(socks, ended, timeout_s=15)
    assert proc.wait(timeout=15) == 0
    for feed in "AB":
        msgs, eos, beats = summarize(got[feed])
        assert len(msgs) == 2  # start and end of session
        assert 5 <= beats <= 14, beats  # ~11 in 0.6 s at 50 ms
