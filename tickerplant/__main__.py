"""`python -m tickerplant`: publish one channel on feeds A and B.

    python -m tickerplant [--config plant.toml] [flags that override the file]
    python -m tickerplant --print-config       # the effective configuration as TOML

Runs until SIGTERM/SIGINT (or `--duration-s`): then flushes, publishes the
end-of-session event, repeats end-of-session packets for the linger, prints the final
counters and exits 0. The defaults run on one host without root: both feeds on `lo`,
groups 239.194.1.1:31001 (A) and 239.194.2.1:31002 (B), TTL 0.
"""

from __future__ import annotations

import logging
import selectors
import signal
import sys
import time

from mdcommon import config as cfg
from mdcommon.logs import event, setup_logging
from mdcommon.status_io import StatusServer
from mdcommon.validate import ConfigError, check_feed, check_port, check_unicast_port_free

from .config import PlantConfig
from .plant_io import Plant
from .source import RateSchedule, SyntheticMarket, read_json_lines

__all__ = ["main"]

log = logging.getLogger("tickerplant")
MAX_BATCH_PER_LOOP = 2000  # messages generated per loop turn, so timers and signals stay timely


def validate(config: PlantConfig) -> None:
    for name, feed in (("feed_a", config.feed_a), ("feed_b", config.feed_b)):
        check_feed(feed.interface, feed.group, feed.port, name)
        if not 0 <= feed.ttl <= 255:
            raise ConfigError(f"{name}.ttl {feed.ttl} outside 0..255")
    if (config.feed_a.group, config.feed_a.port) == (config.feed_b.group, config.feed_b.port) and config.feed_a.interface == config.feed_b.interface:
        raise ConfigError("feed_a and feed_b use the same interface, group and port: receivers could not tell them apart")
    if config.source.kind == "file" and not config.source.path:
        raise ConfigError("source.kind = \"file\" needs source.path")
    if config.heartbeat_interval_ms <= 0:
        raise ConfigError("heartbeat_interval_ms must be positive")
    if config.request_address:
        check_port(config.request_port, "request_port")
        check_unicast_port_free(config.request_address, config.request_port, what="request socket")


def stats_line(plant: Plant, elapsed_s: float, last: dict[str, int], interval_s: float) -> None:
    for name, _, _, counters in plant.feeds:
        now = counters.as_dict()
        rate = (now["messages"] - last.get(name, 0)) / interval_s if interval_s > 0 else 0.0
        last[name] = now["messages"]
        event(log, "stats", feed=name, uptime_s=f"{elapsed_s:.1f}", msg_per_s=f"{rate:.0f}", next_sequence=plant.sequencer.next_sequence,
              **{k: v for k, v in now.items() if v})


def doctor(argv: list[str]) -> int:
    from mdcommon.doctor_io import FAIL, check_sender, render

    config = cfg.daemon_config("python -m tickerplant doctor", "check the plant's feeds (interface, TTL, loopback)", PlantConfig, argv,
                               lambda c: None)
    if isinstance(config, int):
        return config
    findings = check_sender({name: (f.interface, f.group, f.port, f.ttl) for name, f in (("feed_a", config.feed_a), ("feed_b", config.feed_b))})
    print(render(findings))
    return 1 if any(f.level == FAIL for f in findings) else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["doctor"]:
        return doctor(argv[1:])
    if argv[:1] == ["status"]:
        from linehandler.__main__ import cmd_status

        return cmd_status(argv[1:])
    config = cfg.daemon_config("python -m tickerplant", __doc__, PlantConfig, sys.argv[1:] if argv is None else argv, validate)
    if isinstance(config, int):
        return config
    setup_logging(config.log_level, config.log_json)

    stop = {"requested": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    plant = Plant(config)
    sel = selectors.DefaultSelector()
    status = None
    if config.status_socket:
        status = StatusServer(config.status_socket, plant.status)
        sel.register(status.sock, selectors.EVENT_READ)
    if plant.request_sock is not None:
        sel.register(plant.request_sock, selectors.EVENT_READ)
    metrics = None
    if config.metrics_port:
        from mdcommon.metrics_io import Metrics
        from retransmit.server import SERVER_COUNTERS

        from .counters import FEED_COUNTERS

        metrics = Metrics("tickerplant", [FEED_COUNTERS, SERVER_COUNTERS], config.metrics_port, config.metrics_address)
    last_metrics = 0
    plant.start()
    event(log, "plant_started", session=plant.session.decode(),
          feed_a=f"{config.feed_a.interface}/{config.feed_a.group}:{config.feed_a.port}",
          feed_b=f"{config.feed_b.interface}/{config.feed_b.group}:{config.feed_b.port}", source=config.source.kind)

    src = config.source
    market = None
    schedule = None
    file_messages = None
    if src.kind == "synthetic":
        market = SyntheticMarket(src.instruments, src.seed, src.price_exponent)
        directory = list(market.directory(time.time_ns()))
        for i in range(0, len(directory), MAX_BATCH_PER_LOOP):
            plant.publish_many(directory[i : i + MAX_BATCH_PER_LOOP])
            plant.poll()
        plant.flush()
        schedule = RateSchedule(src.rate, src.burst_multiplier, src.burst_seconds)
    elif src.kind == "file":
        with open(src.path) as fh:
            file_messages = list(read_json_lines(fh, time.time_ns()))
        plant.publish_many(file_messages)
        plant.flush()

    start = time.monotonic_ns()
    sent = 0
    last_stats = start
    last_counts: dict[str, int] = {}
    stats_ns = int(config.stats_interval_s * 1e9)
    duration_ns = int(config.duration_s * 1e9)
    try:
        while not stop["requested"]:
            now = time.monotonic_ns()
            if duration_ns and now - start >= duration_ns:
                break
            backlog = False
            if schedule is not None and market is not None:
                due = schedule.due(now - start) - sent
                if due > 0:
                    n = min(due, MAX_BATCH_PER_LOOP)
                    backlog = due > n
                    plant.publish_many(market.next_messages(n, time.time_ns()))
                    sent += n
                    if not backlog:
                        plant.flush()  # the source has nothing more due: don't hold the batch for the next turn
            deadline = plant.poll()
            if metrics is not None and now - last_metrics >= 1_000_000_000:
                metrics.publish(plant.status())
                last_metrics = now
            if stats_ns and now - last_stats >= stats_ns:
                stats_line(plant, (now - start) / 1e9, last_counts, (now - last_stats) / 1e9)
                last_stats = now
            if backlog:
                timeout = 0.0
            else:
                wake = [last_stats + stats_ns] if stats_ns else []
                if deadline is not None:
                    wake.append(deadline)
                if schedule is not None and schedule.rate_per_s > 0:
                    wake.append(now + 200_000)  # pace the source in 0.2 ms steps
                if duration_ns:
                    wake.append(start + duration_ns)
                timeout = max(0.0, (min(wake) - time.monotonic_ns()) / 1e9) if wake else 0.5
            for key, _ in sel.select(timeout=min(timeout, 0.5)):
                if status is not None and key.fileobj is status.sock:
                    status.on_readable()
                elif key.fileobj is plant.request_sock:
                    plant.serve_requests()
    finally:
        plant.stop()
        if status is not None:
            status.close()
        if metrics is not None:
            metrics.publish(plant.status())
            metrics.close()
        sel.close()
    end = time.monotonic_ns()
    stats_line(plant, (end - start) / 1e9, {}, (end - start) / 1e9)
    event(log, "plant_stopped", session=plant.session.decode(), published=plant.sequencer.next_sequence - 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
