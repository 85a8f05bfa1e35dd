"""Plant and live handler against the machine's floor, side by side, every ratio taken in the same repetition.

The datagrams are the plant's own (SyntheticMarket → Sequencer, up to 1,400 bytes, about 33
messages each), sent on an A and a B group on loopback. In each repetition:

  C floor          `floor play` (sendmmsg, A then B) flat out  →  `floor recv` (recvmmsg, A and B)
  Python sender    a bare `sendto` loop of the same datagrams   →  `floor recv`
  Python receiver  `floor play` flat out                        →  a bare `recv_into` loop (selector, A and B)
  plant, hot path  `Plant.publish_many` of pre-generated messages (sequence + encode + send A and B) → `floor recv`
  plant, full      the same with the synthetic source generating the messages (what `python -m tickerplant` runs)
  handler ceiling  `floor play` paced at a rate  →  `LineHandler` (the daemon's loop, A and B, arbitration,
                   decode, delivery to a callback); the highest rate tried with zero loss. Rates tried: the
                   target (90 % of the C receive floor), then up or down.

Figures are datagrams/s counted over both feeds (one datagram sent on A and on B counts twice) and
messages/s counted once (distinct messages). Ratios: plant sends/s ÷ C sendmmsg sends/s and ÷ Python
sendto sends/s; handler datagrams/s ÷ C recvmmsg datagrams/s and ÷ Python recv_into datagrams/s.

    python bench/side.py [--seconds 2] [--repeats 3] [--json out.json]

Targets (issue 18): handler live >= 90 % of the C floor's datagrams/s with zero loss; plant full path >= 50 %, hot path >= 70 %.
"""

from __future__ import annotations

import argparse
import selectors
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Samples, compile_floor, fmt, groups, self_cpu_s, summarize

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig, RecoveryConfig
from linehandler.handler_io import LineHandler
from mdcommon.logs import setup_logging
from mdcommon.mcast_recv_io import open_receiver
from mdcommon.mcast_send_io import open_sender
from tickerplant.config import FeedConfig as PlantFeed
from tickerplant.config import PlantConfig
from tickerplant.plant_io import Plant
from tickerplant.sequencer import Sequencer
from tickerplant.source import SyntheticMarket

HANDLER_TARGET = 0.90
PLANT_TARGET = 0.70


def template(path: Path, n_messages: int = 150_000) -> tuple[list[bytes], int]:
    """The plant's datagrams for `n_messages` messages, from sequence 1, written for `floor play`."""
    market = SyntheticMarket(10_000, seed=11)
    seq = Sequencer(make_session(SCHEMA_FINGERPRINT, 1), CODECS, max_datagram_bytes=1400)
    dgs = [bytes(d) for d in seq.publish_many(market.next_messages(n_messages, time.time_ns()), 0) + seq.flush(0)]
    dgs = [d for d in dgs if int.from_bytes(d[18:20], "big") not in (0, 0xFFFF)]
    path.write_bytes(b"".join(struct.pack(">H", len(d)) + d for d in dgs))
    return dgs, sum(int.from_bytes(d[18:20], "big") for d in dgs)


class CRecv:
    """`floor recv` on A and B in a child process: datagrams and the span between first and last."""

    def __init__(self, exe: Path, a, b, seconds: float) -> None:
        self.p = subprocess.Popen([str(exe), "recv", f"{a[0]},{b[0]}", f"{a[1]},{b[1]}", str(seconds)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.p.stderr.readline()

    def result(self) -> tuple[int, float]:
        out = self.p.communicate(timeout=120)[0].split()
        return int(out[0]), float(out[1])


def c_play(exe: Path, file: Path, a, b, rate: float, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([str(exe), "play", str(file), a[0], str(a[1]), b[0], str(b[1]), str(rate), str(seconds)],
                            stdout=subprocess.PIPE, text=True)


def play_result(p: subprocess.Popen) -> tuple[int, int, float]:
    u, m, s = p.communicate(timeout=120)[0].split()
    return int(u), int(m), float(s)


def c_floor(exe: Path, file: Path, seconds: float) -> tuple[float, float]:
    """(C sends/s over A+B, C receives/s over A+B)."""
    a, b = groups()
    rx = CRecv(exe, a, b, seconds + 1.5)
    unique, _, dt = play_result(c_play(exe, file, a, b, 0, seconds))
    got, rdt = rx.result()
    return 2 * unique / dt, got / max(rdt, 1e-9)


def py_recv_floor(exe: Path, file: Path, seconds: float) -> tuple[float, float]:
    """(datagrams/s a bare recv_into loop takes on A+B while C plays flat out, fraction it received)."""
    a, b = groups()
    socks = [open_receiver("lo", *a)[0], open_receiver("lo", *b)[0]]
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    buf = bytearray(65536)
    n = 0
    first = last = 0.0
    p = c_play(exe, file, a, b, 0, seconds)
    end = time.monotonic() + seconds + 2
    quiet = 0
    while time.monotonic() < end and quiet < 3:
        ev = sel.select(0.2)
        quiet = 0 if ev else quiet + (1 if n else 0)
        for key, _ in ev:
            recv_into = key.fileobj.recv_into
            while True:
                try:
                    recv_into(buf)
                except BlockingIOError:
                    break
                if not n:
                    first = time.monotonic()
                n += 1
        last = time.monotonic() if ev else last
    unique, _, _ = play_result(p)
    for s in socks:
        s.close()
    return n / max(last - first, 1e-9), n / max(2 * unique, 1)


def py_send_floor(exe: Path, dgs: list[bytes], seconds: float) -> float:
    """Sends/s of a bare sendto loop of the same datagrams on A and B (blocking sockets), `floor recv` draining."""
    a, b = groups()
    rx = CRecv(exe, a, b, seconds + 1.5)
    sa, sb = open_sender("lo"), open_sender("lo")
    sa.setblocking(True)
    sb.setblocking(True)
    sent = 0
    n = len(dgs)
    i = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(64):
            d = dgs[i]
            sa.sendto(d, a)
            sb.sendto(d, b)
            i = i + 1 if i + 1 < n else 0
        sent += 128
    dt = time.perf_counter() - t0
    sa.close()
    sb.close()
    rx.result()
    return sent / dt


def plant_rates(exe: Path, seconds: float, full: bool) -> dict:
    """The plant object flat out: sends/s (A+B), messages/s, CPU s per million messages, refused sends."""
    a, b = groups()
    config = PlantConfig(feed_a=PlantFeed(group=a[0], port=a[1]), feed_b=PlantFeed(group=b[0], port=b[1]), keep_image=False,
                         session_instance=1)
    market = SyntheticMarket(10_000, seed=1)
    batch = 2000
    pool = [] if full else [market.next_messages(batch, time.time_ns()) for _ in range(50)]
    rx = CRecv(exe, a, b, seconds + 1.5)
    plant = Plant(config)
    n = i = 0
    c0 = self_cpu_s()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        plant.publish_many(market.next_messages(batch, time.time_ns()) if full else pool[i % 50])
        i += 1
        n += batch
    plant.flush()
    dt = time.perf_counter() - t0
    cpu = self_cpu_s() - c0
    counters = [f[3].as_dict() for f in plant.feeds]
    plant.close()
    rx.result()
    sends = sum(c["datagrams"] for c in counters)
    refused = sum(v for c in counters for k, v in c.items() if k.startswith("send_"))
    return {"sends_s": sends / dt, "msgs_s": n / dt, "cpu_s_per_M": cpu / n * 1e6, "refused": refused,
            "msgs_per_dgram": n / max(sends / 2, 1)}


def handler_at(exe: Path, file: Path, rate_unique: float, seconds: float) -> dict:
    """The handler's loop fed by `floor play` at `rate_unique` datagrams/s on A and B."""
    a, b = groups()
    delivered = [0]

    def on_message(ch: str, seq: int, msg: tuple, d=delivered) -> None:
        d[0] += 1

    config = HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1])),
                           recovery=RecoveryConfig(late_join_image=False, give_up_s=1.0), stats_interval_s=0, keep_image=False)
    handler = LineHandler(config, on_message)
    p = c_play(exe, file, a, b, rate_unique, seconds)
    c0 = self_cpu_s()
    handler.run(duration_s=seconds + 1.5)
    cpu = self_cpu_s() - c0
    unique, messages, dt = play_result(p)
    st = handler.status()["channels"]["ch1"]
    handler.close()
    got = st["feeds"]["A"]["datagrams"] + st["feeds"]["B"]["datagrams"]
    return {"rate": rate_unique, "dgrams_s": got / dt, "sent_dgrams_s": 2 * unique / dt, "msgs_s": delivered[0] / dt,
            "lost": messages - delivered[0], "gaps": st["stream"]["gaps_detected"], "cpu_s_per_M": cpu / max(delivered[0], 1) * 1e6,
            "received_fraction": got / max(2 * unique, 1)}


def handler_ceiling(exe: Path, file: Path, c_recv: float, seconds: float, tries: int = 6) -> tuple[dict, list[dict]]:
    """Highest zero-loss rate found: the target (90 % of the C receive floor) first, then steps of 10 %
    up (or down) until the outcome changes, then one bisection between the last success and failure.
    Down from a failure the steps go on until one succeeds or the rate reaches 10 %."""
    tried: list[dict] = []

    def attempt(frac: float) -> bool:
        r = handler_at(exe, file, frac * c_recv / 2, seconds)
        r["fraction_of_floor"] = frac
        tried.append(r)
        return r["lost"] == 0

    ok_at, fail_at = None, None
    frac = HANDLER_TARGET
    up = attempt(frac)
    if up:
        ok_at = frac
    else:
        fail_at = frac
    # Going up stops at the first failure within `tries`; going down continues until a rate succeeds (a slow
    # backend's ceiling can sit far below the target, and "nothing succeeded" is not a figure).
    while len(tried) < tries - 1 or not up:
        frac = round(frac + (0.1 if up else -0.1), 2)
        if frac <= 0.05 or frac > 1.2:
            break
        if attempt(frac):
            ok_at = frac
            if not up:
                break
        else:
            fail_at = frac
            if up:
                break
    if ok_at is not None and fail_at is not None:
        attempt(round((ok_at + fail_at) / 2, 3))
    good = [t for t in tried if t["lost"] == 0]
    best = max(good, key=lambda t: t["dgrams_s"]) if good else {"dgrams_s": 0.0, "msgs_s": 0.0, "cpu_s_per_M": float("nan")}
    return best, tried


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per row [s]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the samples here")
    args = ap.parse_args(argv)
    setup_logging("error")
    exe = compile_floor()
    out = Samples()
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "datagrams.bin"
        dgs, msgs = template(file)
        mpd = msgs / len(dgs)
        out.note("side.template", f"{len(dgs):,} plant datagrams, {msgs:,} messages, {mpd:.1f} messages and "
                                  f"{sum(map(len, dgs)) / len(dgs):.0f} bytes per datagram on average")
        for rep in range(args.repeats):
            c_send, c_recv = c_floor(exe, file, args.seconds)
            py_recv, py_recv_frac = py_recv_floor(exe, file, args.seconds)
            py_send = py_send_floor(exe, dgs, args.seconds)
            hot = plant_rates(exe, args.seconds, full=False)
            full = plant_rates(exe, args.seconds, full=True)
            best, tried = handler_ceiling(exe, file, c_recv, args.seconds)
            for k, v in (("floor.c_send_dgrams_s", c_send), ("floor.c_recv_dgrams_s", c_recv), ("floor.py_send_dgrams_s", py_send),
                         ("floor.py_recv_dgrams_s", py_recv), ("floor.py_recv_fraction", py_recv_frac),
                         ("floor.c_msgs_s", c_send / 2 * mpd),
                         ("plant.hot.sends_s", hot["sends_s"]), ("plant.hot.msgs_s", hot["msgs_s"]),
                         ("plant.full.sends_s", full["sends_s"]), ("plant.full.msgs_s", full["msgs_s"]),
                         ("plant.full.cpu_s_per_M", full["cpu_s_per_M"]), ("plant.hot.cpu_s_per_M", hot["cpu_s_per_M"]),
                         ("plant.full.refused_sends", full["refused"]),
                         ("handler.max_zero_loss.dgrams_s", best["dgrams_s"]), ("handler.max_zero_loss.msgs_s", best["msgs_s"]),
                         ("handler.max_zero_loss.cpu_s_per_M", best["cpu_s_per_M"]),
                         ("handler.at_target.lost", tried[0]["lost"]), ("handler.at_target.dgrams_s", tried[0]["dgrams_s"]),
                         ("ratio.plant_full_vs_c_send", full["sends_s"] / c_send), ("ratio.plant_full_vs_py_send", full["sends_s"] / py_send),
                         ("ratio.plant_hot_vs_c_send", hot["sends_s"] / c_send), ("ratio.plant_hot_vs_py_send", hot["sends_s"] / py_send),
                         ("ratio.plant_full_msgs_vs_c", full["msgs_s"] / (c_send / 2 * mpd)),
                         ("ratio.handler_vs_c_recv", best["dgrams_s"] / c_recv), ("ratio.handler_vs_py_recv", best["dgrams_s"] / py_recv),
                         ("ratio.handler_msgs_vs_c", best["msgs_s"] / (c_recv / 2 * mpd)),
                         ("ratio.py_send_vs_c_send", py_send / c_send), ("ratio.py_recv_vs_c_recv", py_recv / c_recv)):
                out.add(k, v)
            out.note(f"side.handler_tries.{rep}", "; ".join(
                f"{t['fraction_of_floor']:.0%} of floor: {t['dgrams_s']:,.0f} dgram/s, lost {t['lost']:,}, gaps {t['gaps']}" for t in tried))
            print(f"rep {rep + 1}: C send {c_send:,.0f} recv {c_recv:,.0f}; Python send {py_send:,.0f} recv {py_recv:,.0f} "
                  f"({py_recv_frac:.0%} taken); plant hot {hot['sends_s']:,.0f} full {full['sends_s']:,.0f} sends/s "
                  f"({full['msgs_s']:,.0f} msg/s); handler {best['dgrams_s']:,.0f} dgram/s zero-loss "
                  f"[{out.notes[f'side.handler_tries.{rep}']}]", flush=True)
    f = out.figures
    print(f"\nside by side, {args.repeats} repetitions of {args.seconds:g} s rows: median [min–max]")
    for k in ("ratio.plant_full_vs_c_send", "ratio.plant_full_vs_py_send", "ratio.plant_hot_vs_c_send", "ratio.handler_vs_c_recv",
              "ratio.handler_vs_py_recv"):
        med, lo, hi, _ = summarize(f[k])
        print(f"  {k:32} {fmt(med)} [{fmt(lo)}–{fmt(hi)}]")
    out.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
