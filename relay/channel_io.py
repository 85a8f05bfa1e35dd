"""`python -m relay channel`: a line handler on the upstream channel, the layers (filter, delay), a plant out.

One loop, the line handler's: it delivers the upstream channel exactly once and in order (or says
what is missing), the layers hold each batch until it is due, and a ticker hands what is due to
the embedded plant, which sequences it into our own session, journals it and serves re-requests.
An upstream gap is logged as a warning; telling the downstream handlers which instruments it
touched (MAYBE_STALE until an image) is not built yet, nor is rebuilding the downstream image
when the relay itself joins the upstream late.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from linehandler.config import HandlerConfig
from linehandler.events import GapEvent, SessionEnded
from linehandler.handler_io import LineHandler
from mdcommon.logs import event
from tickerplant.plant_io import Plant

from .config import ChannelRelayConfig
from .layers import QueueFull, RelayLayers

__all__ = ["run_channel"]

log = logging.getLogger("relay")


def run_channel(config: ChannelRelayConfig) -> int:
    layers = RelayLayers(int(config.delay_ms * 1e6), set(config.instruments), config.max_queued_messages)
    failure: list[str] = []
    hc = HandlerConfig(channel=config.upstream, recovery=config.recovery, keep_image=False, stats_interval_s=0,
                       exit_on_session_end=config.exit_on_session_end, log_level=config.plant.log_level, log_json=config.plant.log_json)

    def on_messages(channel: str, first: int, msgs: Any) -> None:
        try:
            layers.offer(first, msgs, time.monotonic_ns())
        except QueueFull as exc:
            failure.append(str(exc))
            handler.stop()

    def on_event(channel: str, ev: Any) -> None:
        if isinstance(ev, GapEvent):
            event(log, "upstream_gap", logging.WARNING, first=ev.first, last=ev.last, reason=ev.reason)
        elif isinstance(ev, SessionEnded):
            event(log, "upstream_session_ended", session=ev.session.decode("ascii", "replace"))

    handler = LineHandler(hc, on_event=on_event, on_messages=on_messages)
    plant = Plant(config.plant)
    polled: list[int | None] = [None]

    def publish_due(now_ns: int) -> None:
        due = layers.due(time.monotonic_ns())
        if due:
            plant.publish_many(due)
            plant.flush()  # a delayed batch leaves when due, not a batch delay later
        polled[0] = plant.poll()

    handler.tickers.append(publish_due)
    handler.wakeups += [layers.next_due_ns, lambda: polled[0]]
    if plant.request_sock is not None:
        handler.add_reader(plant.request_sock, lambda sock, mask, now: plant.serve_requests())
    signal.signal(signal.SIGTERM, lambda *_: handler.stop())
    signal.signal(signal.SIGINT, lambda *_: handler.stop())
    plant.start()
    event(log, "relay_started", upstream=f"{config.upstream.feed_a.group}:{config.upstream.feed_a.port}",
          out=f"{config.plant.feed_a.group}:{config.plant.feed_a.port}", delay_ms=config.delay_ms,
          instruments=len(config.instruments) or "all")
    try:
        handler.run(config.duration_s)
        while layers.queue and not failure:  # the upstream ended: what the delay holds still leaves at its time
            wait = (layers.next_due_ns() or 0) - time.monotonic_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
            publish_due(time.monotonic_ns())
    finally:
        if plant.request_sock is not None:
            handler.remove_reader(plant.request_sock)
        handler.close()
        plant.flush()
        plant.stop()
        event(log, "relay_stopped", passed=layers.passed, filtered=layers.filtered, published=plant.sequencer.next_sequence - 1)
    if failure:
        event(log, "relay_failed", logging.ERROR, error=failure[0])
        return 1
    return 0
