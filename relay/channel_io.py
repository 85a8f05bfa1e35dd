"""`python -m relay channel`: a line handler on the upstream channel, the layers (filter, delay), a plant out.

One loop, the line handler's: it delivers the upstream channel exactly once and in order (or says
what is missing), the layers hold each batch until it is due, and a ticker hands what is due to
the embedded plant, which sequences it into our own session, journals it and serves re-requests.
With the vendor switch, two upstream channels are handled in the same loop and the switch
(`switch.py`) decides which one's messages pass; a gap or staleness of the one taken switches.
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
from linehandler.events import QUALITY_STALE, GapEvent, QualityChanged, SessionEnded
from linehandler.handler_io import LineHandler
from mdcommon.logs import event
from tickerplant.plant_io import Plant

from .config import ChannelRelayConfig
from .layers import QueueFull, RelayLayers
from .switch import SwitchGap, VendorSwitch

__all__ = ["run_channel"]

log = logging.getLogger("relay")


def _table(c: Any) -> dict:
    """A ChannelConfig as the [[channels]] table HandlerConfig.channels takes."""
    import dataclasses

    return dataclasses.asdict(c)


def run_channel(config: ChannelRelayConfig) -> int:
    layers = RelayLayers(int(config.delay_ms * 1e6), set(config.instruments), config.max_queued_messages)
    failure: list[str] = []
    channels = [config.upstream]
    switch: VendorSwitch | None = None
    if config.switch:
        switch = VendorSwitch(config.switch_window_messages)
        channels.append(config.vendor_b)
    names = [c.name for c in channels]
    hc = HandlerConfig(channels=[_table(c) for c in channels] if switch else [], channel=config.upstream, recovery=config.recovery,
                       keep_image=False, stats_interval_s=0, exit_on_session_end=config.exit_on_session_end,
                       log_level=config.plant.log_level, log_json=config.plant.log_json)

    def take(msgs: Any) -> None:
        try:
            layers.offer(0, msgs, time.monotonic_ns())
        except QueueFull as exc:
            failure.append(str(exc))
            handler.stop()

    def on_messages(channel: str, first: int, msgs: Any) -> None:
        take(msgs if switch is None else switch.offer(names.index(channel), msgs))

    def switch_over(reason: str) -> None:
        take(switch.switch(reason))
        for ev in switch.events:
            if isinstance(ev, SwitchGap):
                event(log, "switch_gap", logging.WARNING, to=names[ev.to], window_messages=ev.window_messages,
                      detail="the last message published was not carried by the vendor switched to: messages may be missing")
            else:
                event(log, "switched", logging.WARNING, to=names[ev.to], reason=ev.reason, resumed_after=ev.resumed_after_window)
        switch.events.clear()

    wanted: list[tuple[str, bool]] = []  # (why the one taken should be left, for staleness) while the other is stale too

    def other_ok(channel: str) -> bool:
        core = handler.channels[1 - names.index(channel)].core
        return core.expected is not None and core.quality != QUALITY_STALE  # it carries a live stream

    def on_event(channel: str, ev: Any) -> None:
        if isinstance(ev, GapEvent):
            event(log, "upstream_gap", logging.WARNING, channel=channel, first=ev.first, last=ev.last, reason=ev.reason)
        elif isinstance(ev, SessionEnded):
            event(log, "upstream_session_ended", channel=channel, session=ev.session.decode("ascii", "replace"))
        if switch is None:
            return
        taken = names.index(channel) == switch.active
        stale = isinstance(ev, QualityChanged) and ev.quality == QUALITY_STALE
        if stale and handler.channels[names.index(channel)].core.expected is None:
            return  # silent before it ever carried anything: waiting for a session is no failure of it
        if taken and (isinstance(ev, GapEvent) or stale):
            reason = f"{channel}: gap {ev.first}-{ev.last}" if isinstance(ev, GapEvent) else f"{channel}: stale ({ev.reason})"
            if other_ok(channel):
                wanted.clear()
                switch_over(reason)
            else:
                wanted[:] = [(reason, stale)]  # no better vendor now: stay, and switch when the other comes back
        elif isinstance(ev, QualityChanged) and not stale and wanted:
            if not taken:
                switch_over(wanted.pop()[0])
            elif wanted[0][1]:
                wanted.clear()  # the one taken came back before the other did: nothing to switch for

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
    if switch is not None:
        stale_ns = int(config.recovery.stale_after_ms * 1e6)
        other_since: list[int | None] = [None]

        def watch_vendors(now_ns: int) -> None:
            taken = handler.channels[switch.active].core
            other = handler.channels[1 - switch.active].core
            if taken.expected is None and other.expected is not None:
                # the vendor taken has carried nothing while the other is live: past stale_after, take the other
                other_since[0] = other_since[0] or now_ns
                if now_ns - other_since[0] >= stale_ns:
                    other_since[0] = None
                    switch_over(f"{names[switch.active]}: nothing received while {names[1 - switch.active]} is live")
            else:
                other_since[0] = None
            if config.exit_on_session_end and taken.ended and not taken.gaps:
                handler.stop()  # the vendor not taken may never end (it was killed)

        handler.tickers.append(watch_vendors)
    handler.wakeups += [layers.next_due_ns, lambda: polled[0]]
    if plant.request_sock is not None:
        handler.add_reader(plant.request_sock, lambda sock, mask, now: plant.serve_requests())
    signalled: list[bool] = []

    def on_signal(*_: Any) -> None:
        signalled.append(True)
        handler.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    plant.start()
    event(log, "relay_started", upstream=f"{config.upstream.feed_a.group}:{config.upstream.feed_a.port}",
          out=f"{config.plant.feed_a.group}:{config.plant.feed_a.port}", delay_ms=config.delay_ms,
          instruments=len(config.instruments) or "all")
    try:
        handler.run(config.duration_s)
        while layers.queue and not failure and not signalled:  # the upstream ended: what the delay holds leaves at its time
            wait_ns = min((layers.next_due_ns() or 0) - time.monotonic_ns(), 100_000_000)  # heartbeats and re-requests go on
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)
            publish_due(time.monotonic_ns())
            plant.serve_requests()
        if layers.queue:
            event(log, "delay_not_published", logging.WARNING, messages=layers.queued,
                  detail="stopped by a signal or an error with messages still held for the delay: they are not published")
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
