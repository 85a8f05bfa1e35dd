"""The `status` verb every daemon has: a running daemon's figures from its status socket, as JSON or a
live rich table. Shared by the three daemons' command lines, so it lives here, below them."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .status_io import fetch_status

__all__ = ["cmd_status", "status_table"]


def cmd_status(argv: list[str], prog: str = "python -m linehandler status") -> int:
    """`status --socket PATH`: one snapshot (`--once`, `--json`) or a live table of any of the three daemons."""
    ap = argparse.ArgumentParser(prog=prog, description="show a running daemon's figures (any of the three daemons)")
    ap.add_argument("--socket", required=True, help="the daemon's status_socket path")
    ap.add_argument("--once", action="store_true", help="print once and exit")
    ap.add_argument("--json", action="store_true", help="print the raw JSON snapshot")
    ap.add_argument("--interval-s", type=float, default=1.0, help="refresh interval [s] (default 1.0)")
    args = ap.parse_args(argv)
    try:
        snap = fetch_status(args.socket)
    except OSError as exc:
        print(f"cannot reach {args.socket}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(snap))
        return 0
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if args.once or not console.is_terminal:
        console.print(status_table(snap, None, 0.0))
        return 0
    last, t_last = snap, time.monotonic()
    with Live(status_table(snap, None, 0.0), console=console, refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(args.interval_s)
                snap = fetch_status(args.socket)
                now = time.monotonic()
                live.update(status_table(snap, last, now - t_last))
                last, t_last = snap, now
        except KeyboardInterrupt:
            return 0
        except OSError as exc:
            console.print(f"lost {args.socket}: {exc}")
            return 1


def status_table(snap: dict, previous: dict | None, dt: float, title: str | None = None):
    """A rich table of every channel and feed (handler and mirror), or of the plant's feeds; rates from `previous`.

    `title` names the daemon (the demo's "h2: late join"); the figures in the default title follow it.
    """
    from rich.table import Table

    def rate(path: list[str]) -> str:
        if previous is None or dt <= 0:
            return "-"
        a, b = snap, previous
        for p in path:
            a, b = a.get(p, {}) if isinstance(a, dict) else {}, b.get(p, {}) if isinstance(b, dict) else {}
        return f"{(a - b) / dt:,.0f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "-"

    daemon = snap.get("daemon", "?")
    if daemon == "tickerplant":
        t = Table(title=f"{title or 'tickerplant'}  session {snap['session']}  next sequence {snap['next_sequence']:,}", title_justify="left")
        for col in ("feed", "group", "msg/s", "datagrams", "messages", "heartbeats", "send errors"):
            t.add_column(col, justify="right")
        for f, c in snap["feeds"].items():
            errors = sum(v for k, v in c.items() if k.startswith("send_"))
            t.add_row(f, c["group"], rate(["feeds", f, "messages"]), f"{c['datagrams']:,}", f"{c['messages']:,}", str(c["heartbeats"]), str(errors))
        return t
    handler = snap["mirror"] if daemon == "retransmit" else snap
    base = ["mirror"] if daemon == "retransmit" else []
    figures = ""
    if daemon == "retransmit":
        sv = snap["server"]
        figures = (f"  journal {snap['journal']['first_sequence']:,}..{snap['journal']['next_sequence'] - 1:,}  requests {sv['requests']:,}  "
                   f"rejects {sum(v for k, v in sv.items() if k.startswith('rejected_')):,}  images served {snap['images']['images_served']}")
    t = Table(title=(title or daemon) + figures, title_justify="left")
    for col in ("channel", "feed", "quality", "delivered", "dgram/s", "first share", "dups", "missed", "gaps", "NACKs", "recovered", "lost",
                "lead/lag"):
        t.add_column(col, justify="right")
    for name, ch in handler["channels"].items():
        s = ch["stream"]
        firsts = {f: ch["feeds"][f]["first_arrivals"] for f in ("A", "B")}
        total = sum(firsts.values()) or 1
        lead = max(ch["lead_lag_a_minus_b"].items(), key=lambda kv: kv[1])[0] if any(ch["lead_lag_a_minus_b"].values()) else "-"
        quality = {"OK": "[green]OK", "MAYBE_STALE": "[yellow]MAYBE_STALE", "STALE": "[red]STALE"}.get(ch["quality"], ch["quality"])
        for f in ("A", "B"):
            c = ch["feeds"][f]
            t.add_row(name, f + (" [red](stale)" if c["stale"] else ""), quality if f == "A" else "",
                      f"{s['delivered']:,}" if f == "A" else "", rate(base + ["channels", name, "feeds", f, "datagrams"]), f"{firsts[f] / total:.0%}", f"{c['duplicates']:,}",
                      f"{c['missed']:,}", str(s["gaps_detected"]) if f == "A" else "", str(s["nacks_sent"]) if f == "A" else "",
                      str(s["gaps_recovered_by_nack"]) if f == "A" else "", str(s["messages_lost"]) if f == "A" else "", lead if f == "A" else "")
    return t
