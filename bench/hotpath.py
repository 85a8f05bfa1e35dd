"""Where the time goes on the hot paths: cProfile top-N of the plant's publish and the handler's receive.

  plant     `Plant.publish_many` of pre-generated messages (sequence, encode, send on A and B to lo)
  handler   `LineHandler`'s socket drain fed by `floor play` at `--handler-rate` of the C floor (25 %: under
            cProfile's own cost a handler fed faster falls behind and profiles its slow path instead):
            recv_into, arbitration, decode, delivery to a counting callback (the live loop the target is
            about); the losses and gaps are printed with the profile, so a run that fell behind shows

cProfile adds its own cost per Python call, so read the shares, not the absolute times.

    python bench/hotpath.py [--top 15] [--seconds 2]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

from common import compile_floor, groups
from side import c_floor, c_play, play_result, template

from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig, RecoveryConfig
from linehandler.handler_io import LineHandler
from mdcommon.logs import setup_logging
from tickerplant.config import FeedConfig as PlantFeed
from tickerplant.config import PlantConfig
from tickerplant.plant_io import Plant
from tickerplant.source import SyntheticMarket


def top(prof: cProfile.Profile, n: int) -> str:
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.strip_dirs().sort_stats("tottime").print_stats(n)
    lines = s.getvalue().splitlines()
    start = next((i for i, x in enumerate(lines) if "ncalls" in x), 0)
    head = [x for x in lines[:start] if "function calls" in x]
    return "\n".join(head + lines[start:]).rstrip()


def plant_profile(seconds: float, n: int) -> str:
    a, b = groups()
    config = PlantConfig(feed_a=PlantFeed(group=a[0], port=a[1]), feed_b=PlantFeed(group=b[0], port=b[1]), keep_image=False,
                         session_instance=1)
    market = SyntheticMarket(10_000, seed=1)
    pool = [market.next_messages(2000, time.time_ns()) for _ in range(50)]
    plant = Plant(config)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    i = 0
    prof.enable()
    while time.perf_counter() - t0 < seconds:
        plant.publish_many(pool[i % 50])
        i += 1
    prof.disable()
    plant.close()
    return top(prof, n)


def handler_profile(seconds: float, n: int, rate: float = 0.25) -> str:
    exe = compile_floor()
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "d.bin"
        template(file)
        _, c_recv = c_floor(exe, file, 1.0)
        a, b = groups()
        config = HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1])),
                               recovery=RecoveryConfig(late_join_image=False), stats_interval_s=0, keep_image=False)
        count = [0]

        def on_message(ch: str, seq: int, msg: tuple) -> None:
            count[0] += 1

        handler = LineHandler(config, on_message)
        p = c_play(exe, file, a, b, rate * c_recv / 2, seconds)
        prof = cProfile.Profile()
        prof.enable()
        handler.run(duration_s=seconds + 0.5)
        prof.disable()
        play_result(p)
        st = handler.status()["channels"]["ch1"]["stream"]
        handler.close()
    return (f"fed at {rate:.0%} of the C floor; delivered {st['delivered']:,}, gaps {st['gaps_detected']}, lost {st['messages_lost']}\n"
            + top(prof, n))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--which", default="plant,handler")
    ap.add_argument("--handler-rate", type=float, default=0.25, help="the handler's feed, as a fraction of the C receive floor")
    args = ap.parse_args(argv)
    setup_logging("error")
    for w in args.which.split(","):
        print(f"### {w} hot path, cProfile, top {args.top} by own time\n")
        print(plant_profile(args.seconds, args.top) if w == "plant" else handler_profile(args.seconds, args.top, args.handler_rate))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
