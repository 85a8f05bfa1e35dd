"""A line handler for the standby tests, run inside the receiver namespace.

Delivers through the real `LineHandler` (interfaces `lana` and `lanb`), and writes what the test
needs without a JSON line per message (100 k messages/s): the crc32 of every delivered
message's encoding in delivery order (`<out>.crc`), and a summary (`<out>`): first and last
sequence, whether delivery was contiguous, the events, the final counters, and the pauses
in delivery longer than 5 ms (the takeover gap as the handler saw it).

    python tests/standby/probe.py --out r.json --a 239.231.1.1 32001 --b 239.231.2.1 32002 [--interfaces lana lanb] [--duration-s 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import zlib
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from decoders import CODECS  # noqa: E402
from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig  # noqa: E402
from linehandler.handler_io import LineHandler  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--a", nargs=2, required=True)
    ap.add_argument("--b", nargs=2, required=True)
    ap.add_argument("--duration-s", type=float, default=60)
    ap.add_argument("--interfaces", nargs=2, default=["lana", "lanb"])
    args = ap.parse_args()
    crcs = array("I")
    state = {"first": None, "prev": None, "breaks": 0, "last_ns": None, "first_ts": None}
    pauses: list[tuple[int, float]] = []
    events: list[dict] = []
    encode, crc32, now = CODECS.encode, zlib.crc32, time.monotonic_ns

    def on_message(channel: str, seq: int, msg: tuple) -> None:
        t = now()
        if state["first"] is None:
            state["first"], state["first_ts"] = seq, msg[1]
        elif seq != state["prev"] + 1:
            state["breaks"] += 1
        last = state["last_ns"]
        if last is not None and t - last > 5_000_000:
            pauses.append((seq, (t - last) / 1e6))
        state["prev"], state["last_ns"] = seq, t
        crcs.append(crc32(encode(msg)))

    def on_event(channel: str, ev: object) -> None:
        if type(ev).__name__ in ("QualityChanged", "FeedStale", "FeedRecovered"):
            return
        d = {"event": type(ev).__name__}
        for f in dataclasses.fields(ev):
            v = getattr(ev, f.name)
            d[f.name] = v.decode(errors="replace") if isinstance(v, bytes) else v
        if len(events) < 1000:
            events.append(d)

    config = HandlerConfig(
        channel=ChannelConfig(feed_a=FeedConfig(interface=args.interfaces[0], group=args.a[0], port=int(args.a[1])),
                              feed_b=FeedConfig(interface=args.interfaces[1], group=args.b[0], port=int(args.b[1]))),
        stats_interval_s=0, exit_on_session_end=True, keep_image=False)
    handler = LineHandler(config, on_message, on_event)
    try:
        handler.run(duration_s=args.duration_s)
        status = handler.status()["channels"]["ch1"]
    finally:
        handler.close()
    with open(args.out + ".crc", "wb") as fh:
        crcs.tofile(fh)
    Path(args.out).write_text(json.dumps({
        "first": state["first"], "last": state["prev"], "count": len(crcs), "contiguous": state["breaks"] == 0,
        "first_timestamp_ns": state["first_ts"], "pauses_over_5ms": pauses, "events": events,
        "stream": status["stream"], "feeds": {f: status["feeds"][f] for f in ("A", "B")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
