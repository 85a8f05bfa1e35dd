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

from mdcommon import config as cfg
from mdcommon.logs import setup_logging

from .config import PlantConfig
from .runner_io import serve, validate

__all__ = ["main"]

log = logging.getLogger("tickerplant")


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

    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
