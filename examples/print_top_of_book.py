"""Print top of book for a few symbols as a line handler delivers it (the library API).

    python examples/print_top_of_book.py [--symbols SYM000001,SYM000002] [--seconds 10]

Run a plant first (`python -m tickerplant run`); add `--image-server 127.0.0.1:31102` when a
retransmission server runs, to start from an initial image instead of the live stream.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linehandler.config import ChannelConfig, HandlerConfig  # noqa: E402
from linehandler.events import GapEvent, QualityChanged  # noqa: E402
from linehandler.handler_io import LineHandler  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", default="SYM000001,SYM000002,SYM000003")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--nack-server", action="append", default=[])
    ap.add_argument("--image-server", action="append", default=[])
    args = ap.parse_args()
    wanted = set(args.symbols.split(","))
    ids: dict[int, tuple[str, int]] = {}

    def on_message(channel: str, seq: int, msg: tuple) -> None:
        if msg[0] == b"R" and msg[3] in wanted:
            ids[msg[2]] = (msg[3], msg[4])
        elif msg[0] == b"Q" and msg[2] in ids:
            symbol, exp = ids[msg[2]]
            scale = 10**-exp
            # fixed-point: integer division keeps prices exact, no floats
            bid = f"{msg[3] // scale}.{msg[3] % scale:0{-exp}d}"
            ask = f"{msg[5] // scale}.{msg[5] % scale:0{-exp}d}"
            print(f"{seq:>10} {symbol:10} {msg[4]:>6} @ {bid:>12}  x  {ask:<12} @ {msg[6]}")

    def on_event(channel: str, ev: object) -> None:
        if isinstance(ev, (GapEvent, QualityChanged)):
            print(f"{channel}: {ev}")

    config = HandlerConfig(channel=ChannelConfig(nack_servers=args.nack_server, image_servers=args.image_server), stats_interval_s=0)
    handler = LineHandler(config, on_message, on_event)
    try:
        handler.run(duration_s=args.seconds)
        for iid, (symbol, _) in sorted(ids.items()):
            rec = handler.replica().records.get(iid)
            print(f"replica {symbol}: {rec.values if rec else 'not seen'}")
    finally:
        handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
