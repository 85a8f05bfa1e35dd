"""A hot-standby group in network namespaces (root): two plant hosts and a receiver host, each with
a NIC on LAN A (`lana`) and one on LAN B (`lanb`), the bridges in their own namespace.

    mds-<pid>-p1   plant 1   a: 10.231.1.1  b: 10.231.2.1
    mds-<pid>-p2   plant 2   a: 10.231.1.2  b: 10.231.2.2
    mds-<pid>-rx   handlers  a: 10.231.1.9  b: 10.231.2.9
    mds-<pid>-sw   the bridges br-a, br-b

Namespaces are named `mds-<pid>-...` (this suite's prefix: other suites' namespaces are never
touched) and removed in `finally`, those of aborted runs (pid gone) first. `partition(host, peer)`
drops the peer's traffic in the host's prerouting with nftables: the host no longer sees the
peer, the peer still sees it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mdcommon.status_io import fetch_status
from tests.conftest import need_root, need_tool

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "mds-"
RUN = f"{PREFIX}{os.getpid()}-"
HOSTS = {"p1": 1, "p2": 2, "rx": 9}
NETS = {"a": "10.231.1", "b": "10.231.2"}
GROUP_A, GROUP_B = ("239.231.1.1", 32001), ("239.231.2.1", 32002)


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout


def _alive(pid: str) -> bool:
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


def remove_leftovers() -> None:
    for line in sh("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(RUN) or (name.startswith(PREFIX) and not _alive(name[len(PREFIX):].split("-", 1)[0])):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def ns(host: str) -> str:
    return RUN + host


def addr(host: str, lan: str) -> str:
    return f"{NETS[lan]}.{HOSTS[host]}"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    record: Path | None = None

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def wait(self, timeout: float = 20) -> int:
        return self.popen.wait(timeout=timeout)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@dataclass
class Group:
    """Plants and handlers of one test: in the namespaces (`netns`), or all on loopback."""

    tmp: Path
    netns: bool = True
    feeds: tuple = (GROUP_A, GROUP_B)
    procs: list[Proc] = field(default_factory=list)

    @property
    def nics(self) -> tuple[str, str]:
        return ("lana", "lanb") if self.netns else ("lo", "lo")

    def popen(self, host: str, name: str, argv: list[str]) -> Proc:
        log = self.tmp / f"{name}.log"
        fh = open(log, "w")  # noqa: SIM115 - handed to the child, closed when the test ends
        prefix = ["ip", "netns", "exec", ns(host)] if self.netns else []
        p = subprocess.Popen([*prefix, sys.executable, *argv], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        proc = Proc(name, p, log)
        self.procs.append(proc)
        return proc

    def plant(self, host: str, name: str, *flags: str, rate: float = 100_000, seed: int = 1, priority: int = 0,
              takeover_ms: float = 60, heartbeat_ms: float = 20) -> Proc:
        record = self.tmp / f"{name}.jsonl"
        (ga, pa), (gb, pb) = self.feeds
        ttl = "1" if self.netns else "0"
        argv = ["-m", "tickerplant",
                "--feed-a-interface", self.nics[0], "--feed-a-group", ga, "--feed-a-port", str(pa), "--feed-a-ttl", ttl,
                "--feed-b-interface", self.nics[1], "--feed-b-group", gb, "--feed-b-port", str(pb), "--feed-b-ttl", ttl,
                "--source-rate", str(rate), "--source-burst-seconds", "0", "--source-instruments", "1000", "--source-seed", str(seed),
                "--session-instance", "4242", "--heartbeat-interval-ms", str(heartbeat_ms), "--standby-enabled",
                "--standby-priority", str(priority), "--standby-takeover-timeout-ms", str(takeover_ms),
                "--stats-interval-s", "0", "--end-of-session-linger-ms", "300", "--no-keep-image",
                "--status-socket", str(self.tmp / f"{name}.sock"), *flags]  # no record file: 100 k JSON lines/s would cost more than the plant
        proc = self.popen(host, name, argv)
        proc.record = record
        return proc

    def handler(self, name: str) -> Proc:
        out = self.tmp / f"{name}.json"
        proc = self.popen("rx", name, [str(Path(__file__).parent / "probe.py"), "--out", str(out), "--a", *map(str, self.feeds[0]),
                                       "--b", *map(str, self.feeds[1]), "--interfaces", *self.nics])
        proc.record = out
        return proc

    def status(self, name: str) -> dict:
        return fetch_status(str(self.tmp / f"{name}.sock"))

    def wait_state(self, name: str, state: str, timeout_s: float = 15, synced: bool = False) -> dict:
        """Poll the plant's status socket until its standby role is `state` (and, if `synced`, its shadow caught up)."""
        deadline = time.monotonic() + timeout_s
        last: dict = {}
        while time.monotonic() < deadline:
            try:
                last = self.status(name)
                sb = last["standby"]
                if sb["state"] == state and (not synced or last["next_sequence"] + 5000 >= sb["peer_next"] > 1):
                    return last
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{name} not {state} after {timeout_s} s: {last.get('standby')}")

    def partition(self, host: str, peer: str) -> None:
        """`host` stops seeing `peer` (both NICs); `peer` still sees `host`."""
        rules = f"""table inet mds_partition {{
            chain prerouting {{ type filter hook prerouting priority -300; policy accept;
                ip saddr {{ {addr(peer, 'a')}, {addr(peer, 'b')} }} drop
            }}
        }}"""
        subprocess.run(["ip", "netns", "exec", ns(host), "nft", "-f", "-"], input=rules, check=True, text=True, timeout=10)

    def heal(self, host: str) -> None:
        sh("ip", "netns", "exec", ns(host), "nft", "delete", "table", "inet", "mds_partition")

    def stop_all(self) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.kill()
                p.popen.wait(timeout=10)


def build() -> None:
    sw = ns("sw")
    sh("ip", "netns", "add", sw)
    sh("ip", "-n", sw, "link", "set", "lo", "up")
    for lan in NETS:
        sh("ip", "-n", sw, "link", "add", f"br-{lan}", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", f"br-{lan}", "up")
    for host in HOSTS:
        h = ns(host)
        sh("ip", "netns", "add", h)
        sh("ip", "-n", h, "link", "set", "lo", "up")
        for lan in NETS:
            port = f"{host}-{lan}"
            sh("ip", "-n", h, "link", "add", f"lan{lan}", "type", "veth", "peer", "name", port, "netns", sw)
            sh("ip", "-n", h, "addr", "add", f"{addr(host, lan)}/24", "dev", f"lan{lan}")
            sh("ip", "-n", h, "link", "set", f"lan{lan}", "up")
            sh("ip", "-n", sw, "link", "set", port, "master", f"br-{lan}")
            sh("ip", "-n", sw, "link", "set", port, "up")


@pytest.fixture
def loopback_group(tmp_path: Path):
    """The same group on loopback (no root): plants and handlers on `lo`, TTL 0, groups of this test alone."""
    from tests.integration.mcast import unique_feeds

    g = Group(tmp_path, netns=False, feeds=unique_feeds())
    try:
        yield g
    finally:
        g.stop_all()


@pytest.fixture
def group(tmp_path: Path):
    need_root()
    need_tool("ip")
    need_tool("nft")
    remove_leftovers()
    g = Group(tmp_path)
    try:
        build()
        yield g
    finally:
        g.stop_all()
        remove_leftovers()
        assert not [ln for ln in sh("ip", "netns", "list").splitlines() if ln.startswith(RUN)]


# -- reading the results ----------------------------------------------------------


def published(record: Path) -> dict[int, dict]:
    """A plant's record file: every message it sequenced (sent or, as a standby, generated), by sequence."""
    out: dict[int, dict] = {}
    for line in record.read_text().splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue  # the last line of a plant killed with -9 may be torn
        out[d.pop("sequence")] = d
    return out


def expected_stream(*records: Path) -> dict[int, dict]:
    """The group's stream: the union of the plants' records, which must agree wherever they overlap."""
    out: dict[int, dict] = {}
    for r in records:
        for seq, msg in published(r).items():
            if seq in out:
                assert out[seq] == msg, f"plants disagree at {seq}: {out[seq]} vs {msg}"
            out[seq] = msg
    return out


def probe_result(proc: Proc) -> dict:
    assert proc.record is not None
    return json.loads(proc.record.read_text())


def end_all(*procs: Proc) -> None:
    for p in procs:
        p.signal(signal.SIGTERM)


def expected_crcs(first_seq: int, count: int, first_timestamp_ns: int, seed: int, rate: float, instruments: int = 1000,
                  batch_us: int = 1000) -> list[int]:
    """crc32 of the encoding of messages first_seq .. first_seq+count-1 of the deterministic stream, regenerated here
    exactly as a plant generates it (origin recovered from the first delivered message)."""
    import zlib

    from decoders import CODECS
    from tickerplant.sequencer import Sequencer
    from tickerplant.source import RateSchedule, SyntheticFeed, SyntheticMarket

    feed = SyntheticFeed(SyntheticMarket(instruments, seed, -4), RateSchedule(rate, 5.0, 0.0), batch_us * 1000, 0)
    feed.origin_ns = feed.origin_from(first_seq, first_timestamp_ns)
    out: list[int] = []
    seq = 1
    batch = [Sequencer.start_of_session_event(feed.origin_ns)]
    end = first_seq + count
    while seq < end:
        for m in batch:
            if first_seq <= seq < end:
                out.append(zlib.crc32(CODECS.encode(m)))
            seq += 1
        batch = feed.next()
    return out


def delivered_crcs(proc: Proc) -> list[int]:
    from array import array

    assert proc.record is not None
    a = array("I")
    data = Path(str(proc.record) + ".crc").read_bytes()
    a.frombytes(data)
    return list(a)


def check_handler(proc: Proc, seed: int, rate: float) -> dict:
    """The handler's delivered stream equals the deterministic stream: contiguous from 1, no gap event,
    every message (but the end-of-session event, stamped by the wall clock) byte-identical."""
    r = probe_result(proc)
    assert r["first"] == 1 and r["contiguous"], r
    assert [e for e in r["events"] if e["event"] == "GapEvent"] == []
    got = delivered_crcs(proc)
    assert len(got) == r["count"] == r["last"]
    want = expected_crcs(1, r["count"] - 1, r["first_timestamp_ns"], seed, rate)
    bad = [i + 1 for i, (x, y) in enumerate(zip(got, want)) if x != y]
    assert not bad, f"{len(bad)} delivered messages differ from the expected stream, first at sequence {bad[0]}"
    return r


def max_pause_ms(r: dict) -> float:
    return max((ms for _, ms in r["pauses_over_5ms"]), default=0.0)
