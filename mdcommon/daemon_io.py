"""Running a daemon object until SIGTERM/SIGINT: the same few lines for every `python -m ... run/serve`."""

from __future__ import annotations

import signal
from typing import Protocol

__all__ = ["Daemon", "run_until_signalled"]


class Daemon(Protocol):
    def run(self) -> None: ...
    def stop(self) -> None: ...
    def log_stats(self) -> None: ...
    def close(self) -> None: ...


def run_until_signalled(daemon: Daemon) -> int:
    """Run; a signal asks the loop to stop; final statistics are logged and everything closed; exit 0."""
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.stop())
    try:
        daemon.run()
    finally:
        daemon.log_stats()
        daemon.close()
    return 0
