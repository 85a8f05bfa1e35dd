"""`python -m linehandler`: run a line handler, or look at a running one.

    python -m linehandler run [--config handler.toml] [flags that override the file]
    python -m linehandler run --print-config
    python -m linehandler status --socket PATH [--once] [--json]
    python -m linehandler replay CAPTURE [--pace] [--delivered OUT.jsonl] [--image OUT.csv]
    python -m linehandler doctor [--config handler.toml] [--timeout-s 3]

`run` joins feeds A and B of each channel, arbitrates, recovers gaps from the
configured re-request and image servers, and prints per-feed statistics every
`--stats-interval-s`. `--drop-a P` / `--drop-b P` drop a fraction of a feed's datagrams
in-process, so recovery can be watched without root. SIGTERM/SIGINT stop it (exit 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mdcommon import config as cfg
from mdcommon.daemon_io import run_until_signalled
from mdcommon.logs import setup_logging
from mdcommon.status_view_io import cmd_status

from .checks import validate
from .config import HandlerConfig
from .handler_io import LineHandler

__all__ = ["main"]


def cmd_run(argv: list[str]) -> int:
    config = cfg.daemon_config("python -m linehandler run", __doc__, HandlerConfig, argv, validate)
    if isinstance(config, int):
        return config
    setup_logging(config.log_level, config.log_json)
    return run_until_signalled(LineHandler(config))


def cmd_doctor(argv: list[str]) -> int:
    """Check every feed of the configuration; exit 1 if anything would stop data arriving."""
    from mdcommon.doctor_io import (
        FAIL,
        check_firewall,
        check_interface_state,
        check_receive,
        check_rmem,
        check_rp_filter,
        check_source_routes,
        render,
    )

    timeout_s = 3.0
    if "--timeout-s" in argv:
        i = argv.index("--timeout-s")
        timeout_s = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    config = cfg.daemon_config("python -m linehandler doctor", "check why multicast does or does not arrive (options as for run; "
                               "--timeout-s S to listen longer)", HandlerConfig, argv, lambda c: None)
    if isinstance(config, int):
        return config
    channels = config.all_channels()
    findings = check_rmem(config.rcvbuf_bytes)
    feeds = {}
    for cc in channels:
        for what, feed in (("feed_a", cc.feed_a), ("feed_b", cc.feed_b)):
            name = f"{cc.name}.{what}"
            state = check_interface_state(feed.interface, name)
            findings += state
            if any(f.level == FAIL for f in state):
                continue
            findings += check_rp_filter(feed.interface, name)
            findings += check_source_routes(feed.interface, feed.sources, name)
            findings += check_firewall(feed.group, feed.port, name)
            feeds[name] = (feed.interface, feed.group, feed.port)
    findings += check_receive(feeds, config.rcvbuf_bytes, timeout_s)
    print(render(findings))
    return 1 if any(f.level == FAIL for f in findings) else 0


def _addr(text: str) -> tuple[str, int]:
    group, _, port = text.rpartition(":")
    return group, int(port)


def cmd_replay(argv: list[str]) -> int:
    from decoders import CODECS
    from decoders.pcap import PcapError
    from decoders.present import message_record

    from .replay import DEFAULT_FEED_A, DEFAULT_FEED_B, replay

    ap = argparse.ArgumentParser(prog="python -m linehandler replay",
                                 description="run a capture of feeds A and B through the handler core and report what a live handler saw")
    ap.add_argument("capture", help="pcap or pcapng file")
    ap.add_argument("--feed-a", type=_addr, default=DEFAULT_FEED_A, help="feed A as group:port (default 239.194.1.1:31001)")
    ap.add_argument("--feed-b", type=_addr, default=DEFAULT_FEED_B, help="feed B as group:port (default 239.194.2.1:31002)")
    ap.add_argument("--pace", action="store_true", help="replay at the capture's pace instead of as fast as possible")
    ap.add_argument("--speed", type=float, default=1.0, help="with --pace: speed factor (default 1.0)")
    ap.add_argument("--delivered", help="write the delivered stream as JSON lines to this file")
    ap.add_argument("--image", help="write the final image to this file (.csv or .json)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    out = open(args.delivered, "w") if args.delivered else None  # noqa: SIM115 - closed below
    on_message = (lambda seq, msg: out.write(json.dumps(message_record(CODECS, msg, sequence=seq)) + "\n")) if out else None
    pace = None
    if args.pace:
        start: list[float] = []

        def pace(ts_ns: int) -> None:
            if not start:
                start.extend((time.monotonic(), ts_ns / 1e9))
            delay = start[0] + (ts_ns / 1e9 - start[1]) / args.speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    try:
        report = replay(args.capture, args.feed_a, args.feed_b, on_message, pace, keep_image=args.image is not None)
    except (PcapError, OSError) as exc:
        print(f"linehandler replay: {exc}", file=sys.stderr)
        return 1
    finally:
        if out is not None:
            out.close()
    if args.image and report.image is not None:
        from mdcommon.image import write_image

        write_image(report.image, args.image)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        d = report.as_dict()
        print(f"datagrams A {d['datagrams']['A']:,}  B {d['datagrams']['B']:,}  other {d['other_datagrams']:,}   delivered {d['delivered']:,}")
        print(f"first arrivals: A {d['first_arrival_share'].get('A', 0):.1%}  B {d['first_arrival_share'].get('B', 0):.1%}")
        for f, c in d["feeds"].items():
            print(f"feed {f}: " + " ".join(f"{k}={v}" for k, v in c.items() if v))
        print("A minus B arrival: " + " ".join(f"{k}:{v}" for k, v in d["lead_lag_a_minus_b"].items() if v))
        lost = d["lost_on_both_feeds"]
        print(f"lost on both feeds: {len(lost)} ranges, {sum(b - a + 1 for a, b, _ in lost)} messages")
        for first, last, _reason in lost:
            print(f"  {first}..{last}")
        print("capture: " + " ".join(f"{k}={v}" for k, v in d["capture"].items() if v))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        return cmd_run(rest)
    if command == "status":
        return cmd_status(rest)
    if command == "replay":
        return cmd_replay(rest)
    if command == "doctor":
        return cmd_doctor(rest)
    print(f"linehandler: unknown command {command!r} (run, status, replay, doctor)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
