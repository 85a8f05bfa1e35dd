"""`python -m relay channel`: a line handler on the upstream channel, the layers (filter, delay), a plant out.

One loop, the line handler's: it delivers the upstream channel exactly once and in order (or says
what is missing), the layers hold each batch until it is due, and a ticker hands what is due to
the embedded plant, which sequences it into our own session, journals it and serves re-requests.
With the vendor switch, two upstream channels are handled in the same loop and the switch
(`switch.py`) decides which one's messages pass; a gap or staleness of the one taken switches.
Gaps upstream become quality downstream: when messages are lost upstream (a GapEvent, or a
switch across a gap), every instrument the relay has carried gets a field update `maybe_stale`
= 1, in order with the rest; when the upstream replica is refreshed from an image, its records
are published as field updates with `maybe_stale` = 0. Never silence. When the relay itself joins
the upstream late from an image, the image's records are published first as record images, so
the downstream replica is whole from the relay's first messages on.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from decoders import SYSTEM_EVENT
from decoders.schema.fields import FIELDS_BY_NAME, VALUE_BOOLEAN
from linehandler.config import HandlerConfig
from linehandler.events import QUALITY_STALE, GapEvent, ImageApplied, QualityChanged, SessionEnded
from linehandler.handler_io import LineHandler
from mdcommon.daemon_io import tighten_timer_slack
from mdcommon.logs import event

from .config import ChannelRelayConfig
from .layers import QueueFull, RelayLayers
from .plant_link_io import RelayOutput
from .switch import SwitchGap, VendorSwitch

__all__ = ["run_channel"]

_MAYBE_STALE = FIELDS_BY_NAME["maybe_stale"].field_id

log = logging.getLogger("relay")


def run_channel(config: ChannelRelayConfig) -> int:
    tighten_timer_slack()  # held batches are due to the microsecond: wake for them on time
    layers = RelayLayers(int(config.delay_ms * 1e6), set(config.instruments), config.max_queued_messages, config.delay_memory_bytes,
                         config.spill_dir)
    failure: list[str] = []
    channels = [config.upstream]
    switch: VendorSwitch | None = None
    if config.switch:
        switch = VendorSwitch(config.switch_window_messages)
        channels.append(config.vendor_b)
    names = [c.name for c in channels]
    hc = HandlerConfig(channels=[dataclasses.asdict(c) for c in channels] if switch else [], channel=config.upstream, recovery=config.recovery,
                       keep_image=True, stats_interval_s=0, exit_on_session_end=config.exit_on_session_end,
                       log_level=config.plant.log_level, log_json=config.plant.log_json,
                       drop_a=config.upstream_drop, drop_b=config.upstream_drop)
    seen: set[int] = set()  # instruments the relay has carried (after the filter): those a lost message may have touched
    marked: list[bool] = [False]  # instruments are marked maybe_stale downstream

    last_ts = [0]  # the timestamp of the last message taken: marks carry it, so two relays of a standby pair make the same ones

    def take(msgs: Any) -> None:
        try:
            layers.offer(msgs, time.monotonic_ns())
        except QueueFull as exc:
            failure.append(str(exc))
            handler.stop()
            return
        for m in msgs:
            if m[0] != SYSTEM_EVENT:
                seen.add(m[2])
        if msgs:
            last_ts[0] = msgs[-1][1]

    def mark_stale(why: str) -> None:
        """Messages were lost upstream: every instrument carried may be wrong downstream until an image refreshes it."""
        now = last_ts[0] or time.time_ns()
        take([(b"F", now, iid, _MAYBE_STALE, VALUE_BOOLEAN, 1) for iid in sorted(seen)])
        marked[0] = True
        event(log, "marked_maybe_stale", logging.WARNING, instruments=len(seen), why=why)

    def refreshed(channel: str) -> None:
        """The upstream replica was refreshed from an image: publish its records, and clear the mark."""
        keep = layers.instruments
        now = last_ts[0] or time.time_ns()
        out = []
        for iid, rec in sorted(handler.replica(channel).records.items()):
            if keep is None or iid in keep:
                out += [(b"F", now, iid, fid, rec.value_type(fid), v) for fid, v in sorted(rec.values.items()) if fid != _MAYBE_STALE]
                out.append((b"F", now, iid, _MAYBE_STALE, VALUE_BOOLEAN, 0))
        take(out)
        marked[0] = False
        event(log, "refreshed_from_image", instruments=len(out))

    def joined(channel: str) -> None:
        """The relay joined its upstream late, from an image: every record of it goes out first, as record images
        (directory included), so that a handler of ours that joined at our start holds the whole replica."""
        keep = layers.instruments
        now = time.time_ns()
        out = [rec.message(now) for iid, rec in sorted(handler.replica(channel).records.items()) if keep is None or iid in keep]
        take(out)
        event(log, "joined_from_image", instruments=len(out))

    def on_messages(channel: str, first: int, msgs: Any) -> None:
        take(msgs if switch is None else switch.offer(names.index(channel), msgs))

    def switch_over(reason: str) -> None:
        take(switch.switch(reason))
        for ev in switch.events:
            if isinstance(ev, SwitchGap):
                event(log, "switch_gap", logging.WARNING, to=names[ev.to], window_messages=ev.window_messages,
                      detail="the last message published was not carried by the vendor switched to: messages may be missing")
                mark_stale(f"switched to {names[ev.to]} across a gap")
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
            if switch is None:
                mark_stale(f"{channel}: lost {ev.first}-{ev.last} ({ev.reason})")
        elif isinstance(ev, ImageApplied) and (switch is None or names.index(channel) == switch.active):
            if marked[0]:
                refreshed(channel)
            else:
                joined(channel)  # the first image of a late join (a resync after a loss comes marked)
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
    out = RelayOutput(config.plant, handler, config.standby_window_messages)
    polled: list[int | None] = [None]

    def publish_due(now_ns: int) -> None:
        out.publish(layers.due(time.monotonic_ns()))
        polled[0] = out.poll()
        if out.ended:
            handler.stop()  # the pair's session was ended by the active relay

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
    signalled = out.signalled
    out.start()
    event(log, "relay_started", upstream=f"{config.upstream.feed_a.group}:{config.upstream.feed_a.port}",
          out=f"{config.plant.feed_a.group}:{config.plant.feed_a.port}", delay_ms=config.delay_ms,
          instruments=len(config.instruments) or "all")
    try:
        handler.run(config.duration_s)
        while layers.queued and not failure and not signalled:  # the upstream ended: what the delay holds leaves at its time
            wait_ns = min((layers.next_due_ns() or 0) - time.monotonic_ns(), 100_000_000)  # heartbeats and re-requests go on
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)
            publish_due(time.monotonic_ns())
            out.plant.serve_requests()
        if layers.queued:
            event(log, "delay_not_published", logging.WARNING, messages=layers.queued,
                  detail="stopped by a signal or an error with messages still held for the delay: they are not published")
    finally:
        out.close()
        layers.close()
        event(log, "relay_stopped", passed=layers.passed, filtered=layers.filtered, published=out.published,
              spilled_batches=layers.spilled_batches, spill_peak_bytes=layers.spill_peak_bytes, **out.status())
    if failure:
        event(log, "relay_failed", logging.ERROR, error=failure[0])
        return 1
    return 0
