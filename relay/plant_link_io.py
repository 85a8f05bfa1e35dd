"""A relay's output in its loop: the embedded plant, alone or as one of a hot-standby pair (standby_io.py).

One event loop (the line handler's) serves the plant's re-request socket and the standby's mirror
sockets, stops on SIGTERM/SIGINT, and at the end ends the plant's session after its last datagram
(a standby that never published just closes: the session is the active relay's to end).
"""

from __future__ import annotations

import signal
import time
from typing import Any

from linehandler.handler_io import LineHandler
from tickerplant.config import PlantConfig
from tickerplant.plant_io import Plant

from .standby_io import RelayStandby

__all__ = ["RelayOutput"]


class RelayOutput:
    """`publish(messages)` in order; `poll()` runs timers and says when next; `ended` once the group's session ended."""

    def __init__(self, config: PlantConfig, handler: LineHandler, standby_window_messages: int = 1_000_000) -> None:
        self.handler = handler
        self.plant = Plant(config)
        self.standby = RelayStandby(config, self.plant, handler, standby_window_messages) if config.standby.enabled else None
        self.signalled: list[bool] = []
        if self.plant.request_sock is not None:
            handler.add_reader(self.plant.request_sock, lambda sock, mask, now: self.plant.serve_requests())

        def on_signal(*_: Any) -> None:
            self.signalled.append(True)
            handler.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def start(self) -> None:
        if self.standby is None:
            self.plant.start()  # else the standby starts or continues a session when its role says so

    def publish(self, msgs: list[tuple]) -> None:
        if not msgs:
            return
        if self.standby is not None:
            self.standby.publish(msgs)
            return
        self.plant.publish_many(msgs)
        self.plant.flush()  # what is due leaves now, not a batch delay later

    def poll(self) -> int | None:
        """Heartbeats and the standby's role timers; the next deadline (monotonic ns)."""
        plant = self.plant
        if self.standby is None:
            return plant.poll()
        times = [self.standby.tick(time.monotonic_ns()), plant.poll() if plant.sending else None]
        return min((t for t in times if t is not None), default=None)

    @property
    def ended(self) -> bool:
        """The pair's session was ended by the active relay: nothing left for this one to do."""
        return self.standby is not None and self.standby.ended

    @property
    def published(self) -> int:
        return self.plant.sequencer.next_sequence - 1

    def status(self) -> dict[str, Any]:
        if self.standby is None:
            return {}
        st = self.standby.status()
        return {f"standby_{k}": v for k, v in st.items() if k in self.standby.figures or k == "state"}

    def close(self) -> None:
        """Close the handler's sockets, send what the plant holds and end its session."""
        plant = self.plant
        if self.standby is not None:
            self.standby.close()
        if plant.request_sock is not None:
            self.handler.remove_reader(plant.request_sock)
        self.handler.close()
        if plant.sending:
            plant.flush()
            plant.stop()
        else:
            plant.close()
