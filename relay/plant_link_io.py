"""The embedded plant in a relay's loop: one event loop (the line handler's) serves the plant's re-request
socket, stops on SIGTERM/SIGINT, and at the end ends the plant's session after its last datagram."""

from __future__ import annotations

import signal
from typing import Any

from linehandler.handler_io import LineHandler
from tickerplant.plant_io import Plant

__all__ = ["attach", "detach"]


def attach(handler: LineHandler, plant: Plant, signalled: list[bool]) -> None:
    """Serve the plant's re-requests from the handler's loop; a signal stops the loop (and is noted in `signalled`)."""
    if plant.request_sock is not None:
        handler.add_reader(plant.request_sock, lambda sock, mask, now: plant.serve_requests())

    def on_signal(*_: Any) -> None:
        signalled.append(True)
        handler.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def detach(handler: LineHandler, plant: Plant) -> None:
    """Close the handler's sockets, send what the plant holds and end its session (a standby that never
    published just closes: the session is the active one's to end)."""
    if plant.request_sock is not None:
        handler.remove_reader(plant.request_sock)
    handler.close()
    if plant.sending:
        plant.flush()
        plant.stop()
    else:
        plant.close()
