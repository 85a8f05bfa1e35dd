"""`python -m relay itch` on a live feed: a line handler over the ITCH schema in, the normalizer, a plant out.

The exchange's ITCH 5.0 MoldUDP64 feed is a foreign channel for the line handler (`schema` set:
decoded with the fast codecs derived from `examples/itch/schema.py`, any session name taken, no
image, no pool): it arbitrates the A and B copies, detects gaps and asks the exchange's MoldUDP64
re-request servers (`nack_servers`), exactly as for our own channels. What it delivers, in order
and exactly once, is normalized (`normalizer.py`) and published at once through the embedded plant.

Gaps upstream become quality downstream: ITCH has no image to refresh a book from, so a range
given up (a GapEvent) marks every instrument of the directory `maybe_stale` = 1 for the rest of
the session (its book may be missing orders from then on), in order with the rest, and logs it.
The upstream end of session ends ours and, with `exit_when_done`, the relay.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from decoders.schema.fields import FIELDS_BY_NAME, VALUE_BOOLEAN
from linehandler.config import HandlerConfig, foreign_table
from linehandler.events import GapEvent, SessionEnded
from linehandler.handler_io import LineHandler
from mdcommon.logs import event

from .config import RelayConfig
from .itch_feed import midnight_ns
from .normalizer import ItchNormalizer
from .plant_link_io import RelayOutput

__all__ = ["run_itch_live"]

_MAYBE_STALE = FIELDS_BY_NAME["maybe_stale"].field_id
log = logging.getLogger("relay")


def run_itch_live(config: RelayConfig) -> int:
    up = config.upstream
    table = foreign_table(up.schema)
    normalizer = ItchNormalizer(midnight_ns(config.input.date, time.time_ns()))
    pending: list[tuple] = []
    marked = [0]
    last_ts = [0]  # of the last normalized message: marks carry it, so two relays of a standby pair make the same ones

    def on_messages(channel: str, first: int, msgs: Any) -> None:
        for m in msgs:
            codec = table.by_type[m[0]]
            pending.extend(normalizer.on_message(codec.name, codec.to_dict(m)))

    def on_event(channel: str, ev: Any) -> None:
        if isinstance(ev, GapEvent):
            stocks = sorted(normalizer.books)
            event(log, "upstream_gap", logging.WARNING, first=ev.first, last=ev.last, reason=ev.reason, instruments=len(stocks),
                  detail="ITCH messages lost: every instrument's book may be wrong from here, marked maybe_stale for the session")
            now = (pending[-1][1] if pending else last_ts[0]) or time.time_ns()
            pending.extend((b"F", now, iid, _MAYBE_STALE, VALUE_BOOLEAN, 1) for iid in stocks)
            marked[0] += 1
        elif isinstance(ev, SessionEnded):
            event(log, "upstream_session_ended", session=ev.session.decode("ascii", "replace"))

    hc = HandlerConfig(channel=up, recovery=config.recovery, keep_image=False, stats_interval_s=0,
                       exit_on_session_end=config.exit_when_done, log_level=config.plant.log_level, log_json=config.plant.log_json,
                       drop_a=config.upstream_drop, drop_b=config.upstream_drop)
    handler = LineHandler(hc, on_event=on_event, on_messages=on_messages)
    out = RelayOutput(config.plant, handler, config.standby_window_messages)
    polled: list[int | None] = [None]

    def publish(now_ns: int) -> None:
        if pending:
            last_ts[0] = pending[-1][1]
            out.publish(pending)  # normalized messages leave with the datagram they came in (nothing keeps the list)
            pending.clear()
        polled[0] = out.poll()
        if out.ended:
            handler.stop()  # the pair's session was ended by the active relay

    handler.tickers.append(publish)
    handler.wakeups.append(lambda: polled[0])
    out.start()
    event(log, "relay_started", upstream=f"{up.feed_a.group}:{up.feed_a.port}", schema=up.schema,
          out=f"{config.plant.feed_a.group}:{config.plant.feed_a.port}")
    try:
        handler.run(config.plant.duration_s or None)
        publish(time.monotonic_ns())
    finally:
        out.close()
        c = normalizer.counters
        event(log, "relay_stopped", published=out.published, gaps_marked=marked[0], **out.status(),
              **{k: v for k, v in c.as_dict().items() if v})
    return 0
