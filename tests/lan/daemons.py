"""The daemons as a user runs them: real processes in the LAN's hosts, configured by TOML files.

    cluster = Cluster(lan, tmp_path)
    rtx1 = cluster.retransmitter("rtx1", peer="rtx2")
    plant = cluster.plant(rate=20_000, duration_s=6)
    h1 = cluster.handler("h1")
    plant.wait(); h1.wait()

Every daemon writes its log to `<name>.log`, answers on a status socket, and the plant and
handlers write record files that `checker` reads. Addresses come from `topology`: feed A on
LAN A, feed B on LAN B, NACKs and images over LAN A.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from linehandler.config import ChannelConfig, GroupConfig, HandlerConfig
from linehandler.config import FeedConfig as HandlerFeed
from mdcommon.config import to_toml
from mdcommon.status_io import fetch_status
from retransmit.config import ServerConfig
from tickerplant.config import FeedConfig as PlantFeed
from tickerplant.config import PlantConfig

from .topology import NICS, Lan

ROOT = Path(__file__).resolve().parents[2]
FEEDS = {"A": ("239.194.1.1", 31001), "B": ("239.194.2.1", 31002)}
# anonymous recovery (docs/operations.md): the request and repair groups, on LAN A
POOL_GROUPS = {"request": ("239.194.3.1", 31003), "repair": ("239.194.3.2", 31004)}
PLANT_REQUEST_PORT = 31100
REQUEST_PORT = 31101
IMAGE_PORT = 31102


def plant_feeds(host: str, feeds: dict[str, tuple[str, int]]) -> tuple[PlantFeed, PlantFeed]:
    """A publisher's A and B feeds on `host`: feed A out of its NIC on LAN A, B on LAN B."""
    a, b = (PlantFeed(interface=NICS[f], group=feeds[f][0], port=feeds[f][1], ttl=1, source_address=Lan.addr(host, f)) for f in "AB")
    return a, b


def handler_feeds(groups: dict[str, tuple[str, int]], sources: tuple[str, ...] = ()) -> dict[str, HandlerFeed]:
    return {f: HandlerFeed(interface=NICS[f], group=groups[f][0], port=groups[f][1], sources=[Lan.addr(h, f) for h in sources])
            for f in "AB"}


@dataclasses.dataclass
class Daemon:
    name: str
    host: str
    proc: subprocess.Popen
    dir: Path

    @property
    def record(self) -> Path:
        return self.dir / f"{self.name}.record.jsonl"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def socket(self) -> Path:
        return self.dir / f"{self.name}.sock"

    @property
    def image(self) -> Path:
        return self.dir / f"{self.name}.image.csv"

    def status(self) -> dict[str, Any]:
        return fetch_status(str(self.socket))

    def wait_status(self, timeout_s: float = 10) -> dict[str, Any]:
        """Wait until the daemon answers on its status socket (it is up and configured)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            try:
                return self.status()
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} did not answer on {self.socket}; log:\n{self.log_text()}") from None
                time.sleep(0.05)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.log_text()}")

    def wait(self, timeout_s: float = 60) -> int:
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} still running after {timeout_s} s; log tail:\n{self.log_text()[-3000:]}") from None
        assert code == 0, f"{self.name} exited with {code}; log:\n{self.log_text()[-3000:]}"
        return code

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


class Cluster:
    def __init__(self, lan: Lan, workdir: Path) -> None:
        self.lan = lan
        self.dir = workdir
        self.daemons: list[Daemon] = []

    def _start(self, name: str, host: str, module: list[str], config: Any, extra: list[str], cwd: Path = ROOT,
               env: dict[str, str] | None = None) -> Daemon:
        path = self.dir / f"{name}.toml"
        path.write_text(to_toml(config))
        log = open(self.dir / f"{name}.log", "w")  # noqa: SIM115 - the child owns it
        proc = self.lan.popen(host, [sys.executable, "-m", *module, "--config", str(path), *extra], cwd=cwd, stderr=log, stdout=log,
                              env=env)
        log.close()
        d = Daemon(name, host, proc, self.dir)
        self.daemons.append(d)
        return d

    def plant(self, host: str = "plant", *, rate: float = 20_000, instruments: int = 1000, duration_s: float = 0, seed: int = 1,
              name: str | None = None, feeds: dict[str, tuple[str, int]] = FEEDS, origin_ns: int = 0, **overrides: Any) -> Daemon:
        name = name or host
        c = PlantConfig()
        c.feed_a, c.feed_b = plant_feeds(host, feeds)
        c.source.instruments, c.source.rate, c.source.seed, c.source.burst_seconds = instruments, rate, seed, 0.0
        c.source.origin_ns = origin_ns
        c.request_address, c.request_port = Lan.addr(host, "A"), PLANT_REQUEST_PORT
        c.duration_s, c.stats_interval_s, c.end_of_session_linger_ms = duration_s, 0, 500
        c.record_file, c.status_socket = str(self.dir / f"{name}.record.jsonl"), str(self.dir / f"{name}.sock")
        for k, v in overrides.items():
            setattr(c, k, v)
        return self._start(name, host, ["tickerplant"], c, [])

    def retransmitter(self, host: str, *, peer: str | None = None, plant: str = "plant", limits: dict[str, Any] | None = None,
                      pool: bool = False, requesters: tuple[str, ...] = (), **overrides: Any) -> Daemon:
        """A retransmission server on `host`; with `pool`, also one of the anonymous pool on the recovery groups, hearing
        requests only from the `requesters` hosts when some are given (a source-specific join)."""
        c = ServerConfig()
        if pool:
            c.request_group, c.repair_group = (GroupConfig(interface=NICS["A"], group=g, port=p) for g, p in POOL_GROUPS.values())
            c.request_group.sources = [Lan.addr(h, "A") for h in requesters]
        for feed, attr in (("A", "feed_a"), ("B", "feed_b")):
            group, port = FEEDS[feed]
            getattr(c, attr).interface, getattr(c, attr).group, getattr(c, attr).port = NICS[feed], group, port
        me = Lan.addr(host, "A")
        c.request_address, c.request_port, c.image_address, c.image_port = me, REQUEST_PORT, me, IMAGE_PORT
        c.repair_servers = ([f"{Lan.addr(peer, 'A')}:{REQUEST_PORT}"] if peer else []) + [f"{Lan.addr(plant, 'A')}:{PLANT_REQUEST_PORT}"]
        c.repair_image_servers = [f"{Lan.addr(peer, 'A')}:{IMAGE_PORT}"] if peer else []
        c.stats_interval_s, c.status_socket = 0, str(self.dir / f"{host}.sock")
        for k, v in (limits or {}).items():
            setattr(c.limits, k, v)
        for k, v in overrides.items():
            setattr(c, k, v)
        d = self._start(host, host, ["retransmit", "run"], c, [])
        d.wait_status()
        self.lan.wait_tcp_port(host, IMAGE_PORT)
        return d

    def relay(self, host: str, config: Any, mode: str = "channel") -> Daemon:
        """`python -m relay MODE` on `host` with `config` (a relay config dataclass), its log in `<host>.log`."""
        return self._start(host, host, ["relay", mode], config, [])

    def handler(self, host: str, *, servers: tuple[str, ...] = ("rtx1", "rtx2"), cwd: Path = ROOT, env: dict[str, str] | None = None,
                recovery: dict[str, Any] | None = None, sources: tuple[str, ...] = (), pool: bool = False,
                groups: dict[str, tuple[str, int]] = FEEDS, **overrides: Any) -> Daemon:
        """A line handler on `host` (of the channel on `groups`); with `sources` (host names), each feed is accepted only from
        those hosts' NIC on its LAN; with `pool`, it recovers through the recovery groups (and from `servers` only if some are
        given)."""
        feeds = handler_feeds(groups, sources)
        c = HandlerConfig(channel=ChannelConfig(feed_a=feeds["A"], feed_b=feeds["B"],
                                                nack_servers=[f"{Lan.addr(s, 'A')}:{REQUEST_PORT}" for s in servers],
                                                image_servers=[f"{Lan.addr(s, 'A')}:{IMAGE_PORT}" for s in servers]))
        if pool:
            c.channel.request_group, c.channel.repair_group = (GroupConfig(interface=NICS["A"], group=g, port=p)
                                                               for g, p in POOL_GROUPS.values())
        c.stats_interval_s, c.exit_on_session_end = 0, True
        c.record_file, c.status_socket, c.image_file = (str(self.dir / f"{host}.record.jsonl"), str(self.dir / f"{host}.sock"),
                                                        str(self.dir / f"{host}.image.csv"))
        for k, v in (recovery or {}).items():
            setattr(c.recovery, k, v)
        for k, v in overrides.items():
            setattr(c, k, v)
        d = self._start(host, host, ["linehandler", "run"], c, [], cwd=cwd, env=env)
        d.wait_status()
        return d
