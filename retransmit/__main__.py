"""`python -m retransmit`: mirror a channel's feeds, answer NACKs, serve initial images.

    python -m retransmit run [--config server.toml] [flags that override the file]
    python -m retransmit run --print-config
    python -m retransmit status --socket PATH [--once] [--json]

`serve` is another name for `run` (earlier releases' verb).

Several can run on several hosts; give handlers the list (`nack_servers`,
`image_servers`), and give each server its peers (`repair_servers`,
`repair_image_servers`) so that it repairs its own gaps. SIGTERM/SIGINT stop it (exit 0).
"""

from __future__ import annotations

import sys

from linehandler.handler_io import parse_address
from mdcommon import config as cfg
from mdcommon.daemon_io import run_until_signalled
from mdcommon.logs import setup_logging
from mdcommon.validate_io import ConfigError, check_feed, check_port, check_unicast_port_free

from .config import ServerConfig
from .server_io import RetransmitServer

__all__ = ["main"]


def validate(config: ServerConfig) -> None:
    import socket

    for name, feed in (("feed_a", config.feed_a), ("feed_b", config.feed_b)):
        check_feed(feed.interface, feed.group, feed.port, name, feed.sources)
    check_port(config.request_port, "request_port")
    check_port(config.image_port, "image_port")
    check_unicast_port_free(config.request_address, config.request_port, socket.SOCK_DGRAM, "request socket")
    check_unicast_port_free(config.image_address, config.image_port, socket.SOCK_STREAM, "image listener")
    for addr in config.repair_servers + config.repair_image_servers:
        try:
            parse_address(addr)
        except ValueError as exc:
            raise ConfigError(f"repair server {exc}") from None
    if not 1 <= config.limits.max_request_messages <= 0xFFFF:
        raise ConfigError("limits.max_request_messages must be 1..65535")


def cmd_run(argv: list[str]) -> int:
    config = cfg.daemon_config("python -m retransmit run", __doc__, ServerConfig, argv, validate)
    if isinstance(config, int):
        return config
    setup_logging(config.log_level, config.log_json)
    return run_until_signalled(RetransmitServer(config))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] in ("run", "serve"):
        return cmd_run(argv[1:])
    if argv[0] == "status":
        from mdcommon.status_view_io import cmd_status

        return cmd_status(argv[1:], "python -m retransmit status")
    print(f"retransmit: unknown command {argv[0]!r} (run, status)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
