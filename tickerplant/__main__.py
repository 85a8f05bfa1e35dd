"""`python -m tickerplant`: publish one channel on feeds A and B, or look at a running plant.

    python -m tickerplant run [--config plant.toml] [flags that override the file]
    python -m tickerplant run --print-config   # the effective configuration as TOML
    python -m tickerplant status --socket PATH [--once] [--json]
    python -m tickerplant doctor [--config plant.toml]
    python -m tickerplant replay CAPTURE [--map G:P=IFACE[:G:P]] [--speed X | --fast]   # a capture back onto the wire

The verbs are those of `python -m linehandler` and `python -m retransmit`; `run` may be
left out (`python -m tickerplant --config plant.toml`), as in earlier releases.

Runs until SIGTERM/SIGINT (or `--duration-s`): then flushes, publishes the
end-of-session event, repeats end-of-session packets for the linger, prints the final
counters and exits 0. With `--standby-enabled` the plant is one of a hot-standby group
(docs/standby.md): SIGUSR1 hands over to a standby; a standby exits when the group's
session ends. The defaults run on one host without root: both feeds on `lo`,
groups 239.194.1.1:31001 (A) and 239.194.2.1:31002 (B), TTL 0.
"""

from __future__ import annotations

import logging
import sys
import time

from mdcommon import config as cfg
from mdcommon.logs import event, setup_logging
from mdcommon.validate_io import ConfigError, check_feed, check_interface_address, check_port, check_unicast_port_free

from .config import PlantConfig
from .plant_io import Plant
from .runner_io import PlantRunner, install_signals

__all__ = ["main"]

log = logging.getLogger("tickerplant")


def validate(config: PlantConfig) -> None:
    for name, feed in (("feed_a", config.feed_a), ("feed_b", config.feed_b)):
        check_feed(feed.interface, feed.group, feed.port, name)
        check_interface_address(feed.interface, feed.source_address, f"{name}.source_address")
        if not 0 <= feed.ttl <= 255:
            raise ConfigError(f"{name}.ttl {feed.ttl} outside 0..255")
    if (config.feed_a.group, config.feed_a.port) == (config.feed_b.group, config.feed_b.port) and config.feed_a.interface == config.feed_b.interface:
        raise ConfigError("feed_a and feed_b use the same interface, group and port: receivers could not tell them apart")
    if config.source.kind == "file" and not config.source.path:
        raise ConfigError("source.kind = \"file\" needs source.path")
    if config.heartbeat_interval_ms <= 0:
        raise ConfigError("heartbeat_interval_ms must be positive")
    sb = config.standby
    if sb.enabled:
        if config.source.kind == "none":
            raise ConfigError("standby.enabled needs a deterministic input: source.kind \"synthetic\" or \"file\"")
        if sb.priority < 0:
            raise ConfigError("standby.priority must be >= 0")
        if sb.takeover_timeout_ms < 0:
            raise ConfigError("standby.takeover_timeout_ms must be 0 (3 × heartbeat) or positive")
        if sb.takeover_timeout_ms and sb.takeover_timeout_ms < 2 * config.heartbeat_interval_ms:
            raise ConfigError(f"standby.takeover_timeout_ms {sb.takeover_timeout_ms:g} is shorter than twice heartbeat_interval_ms "
                              f"{config.heartbeat_interval_ms:g}: a standby would take over whenever the active plant is idle")
        if sb.takeover_timeout_ms and sb.takeover_timeout_ms < 2 * config.max_batch_delay_us / 1000:
            raise ConfigError("standby.takeover_timeout_ms must be at least twice max_batch_delay_us")
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


VERBS = ("run", "status", "doctor", "replay")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        argv = argv[1:]
    elif argv and not argv[0].startswith("-") and argv[0] not in VERBS:
        print(f"tickerplant: unknown command {argv[0]!r} ({', '.join(VERBS)})", file=sys.stderr)
        return 2
    if argv[:1] == ["doctor"]:
        return doctor(argv[1:])
    if argv[:1] == ["replay"]:
        from mdcommon.replay_io import main as replay_main

        return replay_main(argv[1:])
    if argv[:1] == ["status"]:
        from mdcommon.status_view_io import cmd_status

        return cmd_status(argv[1:], "python -m tickerplant status")
    config = cfg.daemon_config("python -m tickerplant run", __doc__, PlantConfig, argv, validate)
    if isinstance(config, int):
        return config
    setup_logging(config.log_level, config.log_json)

    runner = PlantRunner(config)
    install_signals(runner)
    plant = runner.plant
    metrics = None
    if config.metrics_port:
        from mdcommon.metrics_io import Metrics
        from retransmit.server import SERVER_COUNTERS

        from .counters import FEED_COUNTERS

        metrics = Metrics("tickerplant", [FEED_COUNTERS, SERVER_COUNTERS], config.metrics_port, config.metrics_address)
    start = time.monotonic_ns()
    stats_ns = int(config.stats_interval_s * 1e9)
    clock = {"stats": start, "metrics": 0}
    last_counts: dict[str, int] = {}

    def periodic(now: int) -> int | None:
        if metrics is not None and now - clock["metrics"] >= 1_000_000_000:
            metrics.publish(runner.snapshot())
            clock["metrics"] = now
        if stats_ns and now - clock["stats"] >= stats_ns:
            stats_line(plant, (now - start) / 1e9, last_counts, (now - clock["stats"]) / 1e9)
            clock["stats"] = now
        return clock["stats"] + stats_ns if stats_ns else None

    runner.tickers.append(periodic)
    event(log, "plant_started", session=plant.session.decode() if plant.sending else "(standby: the group's)",
          feed_a=f"{config.feed_a.interface}/{config.feed_a.group}:{config.feed_a.port}",
          feed_b=f"{config.feed_b.interface}/{config.feed_b.group}:{config.feed_b.port}", source=config.source.kind,
          **({"standby_priority": config.standby.priority} if config.standby.enabled else {}))
    try:
        runner.run(config.duration_s)
    finally:
        runner.finish()
        if metrics is not None:
            metrics.publish(runner.snapshot())
            metrics.close()
    end = time.monotonic_ns()
    stats_line(plant, (end - start) / 1e9, {}, (end - start) / 1e9)
    event(log, "plant_stopped", session=plant.session.decode(), published=plant.sequencer.next_sequence - 1,
          **({"role": runner.core.state} if runner.core is not None else {}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
