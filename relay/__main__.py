"""python -m relay MODE: an upstream feed in, one of our channels out, through a plant (A/B, journal,
re-requests, images, hot standby), so everything downstream works unchanged.

Modes:
  itch    normalize a NASDAQ TotalView-ITCH 5.0 MoldUDP64 feed: an order-by-order book per stock (add,
          execute, execute with price, cancel, delete, replace), published as our instrument directory
          (from the stock directory), top-of-book quotes and trades.
          Live (`--upstream-feed-a-group` ..., the default): a line handler reads the exchange's feed as
          a foreign channel (`--upstream-schema examples.itch.schema`): A/B arbitration, gaps asked of
          the exchange's MoldUDP64 re-request servers (`--upstream-nack-servers`); a range lost marks
          every instrument `maybe_stale` for the rest of the session (ITCH has no image to refresh a
          book from). The upstream end of session ends ours.
          From a capture (`--input-pcap`): the capture's A and B copies are arbitrated by sequence
          number; it is replayed at the captured pace (`--input-speed`, 0 = as fast as the plant
          publishes), and the session ends when the capture is out. The same capture gives the same
          output, so two relays with the same `--plant-source-origin-ns` form a hot-standby pair.

  channel one of our channels in (a line handler: arbitration, recovery, late join), our channel out:
          only the `--instruments` given (repeat the flag), each message republished `--delay-ms` after it arrived (a
          delay engine: delayed data can be given away), in our own session, with its own journal,
          re-requests and images. When the upstream session ends, what the delay holds still
          leaves at its time, then ours ends. With `--switch`, `--vendor-b-*` is a second vendor of
          the same messages: the relay takes the upstream and switches to the other when the one taken
          goes stale or reports a gap, with no duplicate and no gap for messages both carried.

          The delay holds its messages encoded: in memory up to `--delay-memory-bytes`, then in a spill
          file (`--spill-dir`) read back in order, so a 15-minute delay needs disk, not memory.
          Messages lost upstream mark every instrument carried `maybe_stale` downstream until an image
          refreshes the upstream replica.

          A capture of one of our channels comes in through the wire: `python -m tickerplant replay
          CAPTURE` puts it back on its groups, and the relay takes it like the live feed.
          A relay that joins its upstream late, from an image, publishes the image's records first
          (record images), so the downstream replica is whole.
          Two relays with `--plant-standby-enabled` (priorities 0 and 1) on the same upstream and output
          groups form a hot-standby pair: one publishes, the other computes the same messages, compares
          them with the active's, and continues its session from the next sequence number when it goes
          silent (relay/standby_io.py; live `itch` relays pair the same way). Both must carry the
          upstream from the same point (docs/standby.md, "Relays").

    python -m relay itch --upstream-feed-a-group 233.54.12.111 --upstream-feed-b-group 233.54.12.112 --plant-feed-a-group 239.194.5.1 ...
    python -m relay itch --input-pcap itch.pcap --input-port 26400 --plant-feed-a-group 239.194.5.1 ...
    python -m relay itch --config relay.toml          # [input], [upstream] and [plant] tables; --print-config shows them
    python -m relay channel --upstream-feed-a-group 239.194.5.1 --upstream-feed-b-group 239.194.6.1 \\
        --delay-ms 900000 --plant-feed-a-group 239.194.7.1 --plant-feed-b-group 239.194.8.1   # 15 minutes late
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import time
from typing import Any

from linehandler.checks import validate as validate_handler
from linehandler.config import HandlerConfig
from mdcommon import config as cfg
from mdcommon.logs import event, setup_logging
from mdcommon.validate_io import ConfigError
from tickerplant.runner_io import PlantRunner, serve
from tickerplant.runner_io import validate as validate_plant

from .channel_io import run_channel
from .config import ChannelRelayConfig, RelayConfig
from .itch_feed import ItchFeed, midnight_ns, read_capture
from .itch_live_io import run_itch_live

log = logging.getLogger("relay")
MODES = ("itch", "channel")


def _groups(*feeds_of: Any) -> set[tuple[str, int]]:
    """(group, port) of the A and B feeds of each channel or plant config given."""
    return {(f.group, f.port) for c in feeds_of for f in (c.feed_a, c.feed_b)}


def validate(config: RelayConfig) -> None:
    if not config.input.pcap:
        up = config.upstream
        if not up.schema:
            raise ConfigError("upstream.schema: a live ITCH feed is read with the ITCH schema (examples.itch.schema)")
        handler_config = HandlerConfig(channel=up, recovery=config.recovery, drop_a=config.upstream_drop, drop_b=config.upstream_drop)
        validate_handler(handler_config)
        if _groups(up) & _groups(config.plant):
            raise ConfigError("the relay would publish on a group it reads: give the plant's feeds other groups or ports")
    if config.input.speed < 0:
        raise ConfigError("input.speed must be 0 (as fast as possible) or positive")
    if config.input.date:
        try:
            datetime.date.fromisoformat(config.input.date)
        except ValueError:
            raise ConfigError(f"input.date {config.input.date!r} is not YYYY-MM-DD") from None
    validate_plant(config.plant, embedded=not config.input.pcap)  # live: the standby is the relay's (standby_io.py)


def validate_channel(config: ChannelRelayConfig) -> None:
    if not 0 <= config.delay_ms < 1e9:  # NaN fails too
        raise ConfigError("delay_ms must be a number of milliseconds, 0 or more")
    if config.max_queued_messages < 1 or config.switch_window_messages < 1 or config.delay_memory_bytes < 1:
        raise ConfigError("max_queued_messages, delay_memory_bytes and switch_window_messages must be positive")
    if config.spill_dir and not os.path.isdir(config.spill_dir):
        raise ConfigError(f"spill_dir {config.spill_dir!r} is not a directory")
    if config.switch and _groups(config.upstream) & _groups(config.vendor_b):
        raise ConfigError("upstream and vendor_b read the same group and port: a vendor switch needs two channels")
    try:
        config.instruments = [int(i) for i in config.instruments]
    except (TypeError, ValueError):
        raise ConfigError(f"instruments {config.instruments!r}: instrument ids are integers") from None
    ins = [config.upstream, config.vendor_b] if config.switch else [config.upstream]
    if _groups(*ins) & _groups(config.plant):
        raise ConfigError("the relay would publish on a group it reads: give the plant's feeds other groups or ports")
    if config.upstream.schema or (config.switch and config.vendor_b.schema):
        raise ConfigError("relay channel relays our channels: an exchange's feed goes through `relay itch` (upstream.schema must be empty)")
    if config.switch and config.upstream.name == config.vendor_b.name:
        raise ConfigError("upstream and vendor_b need different names")
    validate_plant(config.plant, embedded=True)


def run_itch(config: RelayConfig) -> int:
    inp = config.input
    if not inp.pcap:
        return run_itch_live(config)
    try:
        capture = read_capture(inp.pcap, inp.port, inp.group, inp.schema)
    except (OSError, ValueError, ImportError, AttributeError) as exc:
        print(f"python -m relay itch: cannot read {inp.pcap}: {exc}", file=sys.stderr)
        return 2
    if not capture.messages:
        print(f"python -m relay itch: no ITCH messages on port {inp.port} in {inp.pcap}", file=sys.stderr)
        return 2
    from decoders.pcap import read_udp

    first_ns = next(iter(read_udp(inp.pcap)))[0]
    midnight = midnight_ns(inp.date, first_ns)
    feeds: list[ItchFeed] = []
    event(log, "capture_read", pcap=inp.pcap, session=capture.session.decode("ascii", "replace"), datagrams=capture.datagrams,
          messages=sum(len(r) for _, r in capture.messages), duplicates=capture.duplicates, malformed=capture.malformed,
          undecodable=capture.undecodable, other_session=capture.other_session, gaps=len(capture.gaps))
    for first, last in capture.gaps:
        event(log, "capture_gap", logging.WARNING, first=first, last=last,
              detail="ITCH messages missing from the capture: the books of the stocks they touched may be wrong from here")

    def factory(origin_ns: int) -> ItchFeed:
        feed = ItchFeed(capture, midnight, origin_ns, inp.speed, time.time_ns)
        feeds.append(feed)
        return feed

    def setup(runner: PlantRunner) -> None:
        def done(now: int) -> Any:
            if config.exit_when_done and feeds and feeds[-1].done and runner.plant.sending:
                c = feeds[-1].normalizer.counters
                event(log, "capture_published", **{k: v for k, v in c.as_dict().items() if v})
                runner.stop()
            return None

        runner.tickers.append(done)

    return serve(config.plant, factory, setup)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    mode, rest = argv[0], argv[1:]
    if mode not in MODES:
        print(f"relay: unknown mode {mode!r} (modes: {', '.join(MODES)})", file=sys.stderr)
        return 2
    if mode == "channel":
        chan = cfg.daemon_config("python -m relay channel", __doc__, ChannelRelayConfig, rest, validate_channel)
        if isinstance(chan, int):
            return chan
        setup_logging(chan.plant.log_level, chan.plant.log_json)
        return run_channel(chan)
    config = cfg.daemon_config(f"python -m relay {mode}", __doc__, RelayConfig, rest, validate)
    if isinstance(config, int):
        return config
    setup_logging(config.plant.log_level, config.plant.log_json)
    return run_itch(config)


if __name__ == "__main__":
    sys.exit(main())
