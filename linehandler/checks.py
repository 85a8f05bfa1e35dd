"""The line handler's configuration checked before anything opens: a clear ConfigError naming the field,
for `python -m linehandler run` and for the daemons that embed a line handler (relays)."""

from __future__ import annotations

from mdcommon.validate_io import ConfigError, check_feed

from .config import HandlerConfig, foreign_table
from .handler_io import parse_address

__all__ = ["validate"]


def validate(config: HandlerConfig) -> None:
    channels = config.all_channels()
    for cc in channels:
        for name, feed in (("feed_a", cc.feed_a), ("feed_b", cc.feed_b)):
            check_feed(feed.interface, feed.group, feed.port, f"{cc.name}.{name}", feed.sources)
        for addr in cc.nack_servers + cc.image_servers:
            try:
                parse_address(addr)
            except ValueError as exc:
                raise ConfigError(f"{cc.name}: server {exc}") from None
        if cc.schema:
            try:
                foreign_table(cc.schema)
            except ValueError as exc:
                raise ConfigError(f"{cc.name}: {exc}") from None
            if cc.image_servers or cc.request_group.group or cc.repair_group.group:
                raise ConfigError(f"{cc.name}: a foreign feed ({cc.schema}) has no initial images and no anonymous pool: "
                                  "give it nack_servers only (MoldUDP64 re-request servers)")
    for name in ("drop_a", "drop_b"):
        if not 0 <= getattr(config, name) < 1:
            raise ConfigError(f"{name} must be in [0, 1)")
    if config.recovery.gap_wait_min_ms > config.recovery.gap_wait_max_ms:
        raise ConfigError("recovery.gap_wait_min_ms is above recovery.gap_wait_max_ms")
    if not 1 <= config.recovery.max_request_messages <= 0xFFFF:
        raise ConfigError("recovery.max_request_messages must be in 1..65535 (a request's count is a 16-bit field)")
