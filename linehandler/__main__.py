"""`python -m linehandler`: run a line handler, or look at a running one.

    python -m linehandler run [--config handler.toml] [flags that override the file]
    python -m linehandler run --print-config
    python -m linehandler status --socket PATH [--once] [--json]

`run` joins feeds A and B of each channel, arbitrates, recovers gaps from the
configured re-request and image servers, and prints per-feed statistics every
`--stats-interval-s`. `--drop-a P` / `--drop-b P` drop a fraction of a feed's datagrams
in-process, so recovery can be watched without root. SIGTERM/SIGINT stop it (exit 0).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from mdcommon import config as cfg
from mdcommon.logs import setup_logging
from mdcommon.status_io import fetch_status
from mdcommon.validate import ConfigError, check_interface, check_multicast_group, check_port

from .config import ChannelConfig, HandlerConfig
from .handler_io import LineHandler, parse_address

__all__ = ["main"]


def validate(config: HandlerConfig) -> None:
    channels = [cfg.load_table(ChannelConfig, t, f"channels[{i}].") for i, t in enumerate(config.channels)] or [config.channel]
    for cc in channels:
        for name, feed in (("feed_a", cc.feed_a), ("feed_b", cc.feed_b)):
            check_interface(feed.interface, f"{cc.name}.{name}.interface")
            check_multicast_group(feed.group, f"{cc.name}.{name}.group")
            check_port(feed.port, f"{cc.name}.{name}.port")
        for addr in cc.nack_servers + cc.image_servers:
            try:
                parse_address(addr)
            except ValueError as exc:
                raise ConfigError(f"{cc.name}: server {exc}") from None
    for name in ("drop_a", "drop_b"):
        if not 0 <= getattr(config, name) < 1:
            raise ConfigError(f"{name} must be in [0, 1)")
    if config.recovery.gap_wait_min_ms > config.recovery.gap_wait_max_ms:
        raise ConfigError("recovery.gap_wait_min_ms is above recovery.gap_wait_max_ms")


def cmd_run(argv: list[str]) -> int:
    config = cfg.daemon_config("python -m linehandler run", __doc__, HandlerConfig, argv, validate)
    if isinstance(config, int):
        return config
    setup_logging(config.log_level, config.log_json)
    handler = LineHandler(config)
    signal.signal(signal.SIGTERM, lambda *_: handler.stop())
    signal.signal(signal.SIGINT, lambda *_: handler.stop())
    try:
        handler.run()
    finally:
        handler.log_stats()
        handler.close()
    return 0


def cmd_status(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m linehandler status", description="show a running daemon's figures")
    ap.add_argument("--socket", required=True, help="the daemon's status_socket path")
    ap.add_argument("--once", action="store_true", help="print once and exit")
    ap.add_argument("--json", action="store_true", help="print the raw JSON snapshot")
    ap.add_argument("--interval-s", type=float, default=1.0, help="refresh interval [s] (default 1.0)")
    args = ap.parse_args(argv)
    while True:
        try:
            snap = fetch_status(args.socket)
        except OSError as exc:
            print(f"cannot reach {args.socket}: {exc}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(snap))
        else:
            print(render(snap))
        if args.once:
            return 0
        time.sleep(args.interval_s)


def render(snap: dict) -> str:
    """A plain table of every channel and feed."""
    lines = [f"{'channel':10} {'feed':4} {'datagrams':>10} {'first':>10} {'dups':>10} {'missed':>8} {'malformed':>9} {'stale':>5}"]
    for name, ch in snap.get("channels", {}).items():
        for feed, f in ch["feeds"].items():
            lines.append(f"{name:10} {feed:4} {f['datagrams']:>10} {f['first_arrivals']:>10} {f['duplicates']:>10} {f['missed']:>8} "
                         f"{f['malformed']:>9} {str(f['stale']):>5}")
        s = ch["stream"]
        lines.append(f"{name:10} quality={ch['quality']} next={ch['expected']} delivered={s['delivered']} gaps_open={ch['gaps_open']} "
                     f"nacks={s['nacks_sent']} recovered={s['gaps_recovered_by_nack']} lost={s['messages_lost']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        return cmd_run(rest)
    if command == "status":
        return cmd_status(rest)
    print(f"linehandler: unknown command {command!r} (run, status)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
