"""Structured logs: `key=value` lines (or JSON with a flag), one line per state change.

Operators grep these for months, so every line is `ts level event key=value ...` with
the figures of the change in it, and nothing is logged per message at INFO.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

__all__ = ["setup_logging", "event", "CoreErrors"]

_JSON = False


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        ts = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}"
        if _JSON:
            return json.dumps({"ts": ts, "level": record.levelname.lower(), "logger": record.name, "event": record.getMessage(), **fields})
        parts = [ts, record.levelname.lower(), record.name, record.getMessage()]
        parts += [f"{k}={_text(v)}" for k, v in fields.items()]
        return " ".join(parts)


def _text(v: Any) -> str:
    s = str(v)
    return f'"{s}"' if (" " in s or not s) else s


def setup_logging(level: str = "info", json_lines: bool = False, stream: Any = None) -> None:
    """Configure the root logger once per daemon (stderr by default)."""
    global _JSON
    _JSON = json_lines
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one state change with its figures: `event(log, "feed_stale", feed="A", silent_ms=3000)`."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


class CoreErrors:
    """Exceptions a core raised on one input, counted, and logged with their traceback at most once a
    second: a daemon never dies on a datagram (issue 16), and a bug that one keeps hitting does not
    flood the log. The input is dropped; what the core promised about it is then broken, which is why
    the count is in every status snapshot and the stateful model tests exist to keep it at zero."""

    def __init__(self, logger: logging.Logger, where: str) -> None:
        self.logger = logger
        self.where = where
        self.count = 0
        self._last_log_ns = -(10**18)

    def record(self, exc: BaseException, now_ns: int) -> None:
        self.count += 1
        if now_ns - self._last_log_ns >= 1_000_000_000:
            self._last_log_ns = now_ns
            self.logger.error("core_error", exc_info=exc, extra={"fields": {"where": self.where, "count": self.count,
                                                                           "error": f"{type(exc).__name__}: {exc}"}})
