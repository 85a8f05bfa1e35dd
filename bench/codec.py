"""Decode and encode speed of the wire codecs, in one run, with ratios.

One datagram of 30 mixed messages (quotes, trades, field updates, one directory
entry), decoded and encoded by construct's plain `parse`/`build`, construct's
`compile()`, and the fast codec derived from the same declarations. Figures are
messages/s, the median of repeated timed runs; ratios are taken within this run.

    python bench/codec.py [--seconds 0.5] [--repeats 5]

Targets (issue 2): fast decode >= 3 M msg/s, fast encode >= 2 M msg/s, fast decode
>= 60x construct's plain parse. Issue 18: the native backend (decoders/_native.c) decodes
>= 20 M and encodes >= 10 M msg/s. "fast" rows are the struct codecs (MD_BACKEND=python).
The "publish" rows are the plant's own encoding path: `Sequencer.publish_many` of 300 messages a
call (10 copies of the datagram's messages), numbered, packed into sealed datagrams and journaled;
the encode target is judged on it, since that is the path the plant runs. The "messages kept" row
holds every decoded message of the last 100 datagrams, as an application that stores them would, so the native
decoders cannot reuse a tuple (they do when the application drops it, as the handler does). The "struct.iter_unpack"
row is CPython's own C unpacker making quote-shaped tuples (a bytes object and six ints) from a
buffer: not a decoder of ours, a yardstick of what allocating the tuples costs on this machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import construct as cs  # noqa: E402

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session  # noqa: E402
from decoders.moldudp64 import DatagramWriter, decode_datagram  # noqa: E402
from decoders.schema import MESSAGES  # noqa: E402
from decoders.schema.framing import DownstreamPacket  # noqa: E402
from retransmit.journal import Journal  # noqa: E402
from tickerplant.sequencer import Sequencer  # noqa: E402

N_MESSAGES = 30


def mixed_messages(rng: random.Random) -> list[tuple]:
    msgs: list[tuple] = [(b"R", 1, 7, "SYM7", -4)]
    while len(msgs) < N_MESSAGES:
        kind = rng.random()
        ts = 1_700_000_000_000_000_000 + rng.randrange(10**9)
        iid = rng.randrange(200_000)
        if kind < 0.45:
            msgs.append((b"Q", ts, iid, rng.randrange(10**8), rng.randrange(10**4), rng.randrange(10**8), rng.randrange(10**4)))
        elif kind < 0.6:
            msgs.append((b"T", ts, iid, rng.randrange(10**8), rng.randrange(10**4), ord("B"), rng.randrange(10**9)))
        else:
            msgs.append((b"F", ts, iid, rng.randrange(1, 18), 1, rng.randrange(-(10**9), 10**9)))
    rng.shuffle(msgs)
    return msgs


def rate(fn: Callable[[], object], per_call: int, seconds: float, repeats: int) -> list[float]:
    loops = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        dt = time.perf_counter() - t0
        if dt >= seconds / 4:
            break
        loops *= 2
    loops = max(1, int(loops * seconds / max(dt, 1e-9)))
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        out.append(loops * per_call / (time.perf_counter() - t0))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=0.5, help="time per repeat, s (default 0.5)")
    ap.add_argument("--repeats", type=int, default=5, help="repeats per figure (default 5)")
    args = ap.parse_args(argv)

    rng = random.Random(7)
    msgs = mixed_messages(rng)
    session = make_session(SCHEMA_FINGERPRINT, 1)
    writer = DatagramWriter(CODECS, 1400)
    for m in msgs:
        assert writer.add(m)
    datagram = bytes(writer.finish(session, 1))
    view = memoryview(bytearray(datagram))

    dicts = [CODECS.codec_for(m).to_dict(m) for m in msgs]
    structs = [MESSAGES[CODECS.codec_for(m).name] for m in msgs]
    compiled = {name: con.compile() for name, con in MESSAGES.items()}
    cstructs = [compiled[CODECS.codec_for(m).name] for m in msgs]
    packet_plain = DownstreamPacket
    packet_compiled = DownstreamPacket.compile()

    def construct_parse(packet: cs.Construct, by_type: list) -> None:
        p = packet.parse(datagram)
        for blk, con in zip(p.message_blocks, by_type):
            con.parse(blk.message_data)

    def construct_build(by_type: list) -> None:
        blocks = [dict(message_data=con.build(d)) for con, d in zip(by_type, dicts)]
        for b in blocks:
            b["message_length"] = len(b["message_data"])
        packet_plain.build(dict(session=session, sequence_number=1, message_count=len(blocks), message_blocks=blocks))

    def construct_build_compiled(by_type: list) -> None:
        blocks = [dict(message_data=con.build(d)) for con, d in zip(by_type, dicts)]
        for b in blocks:
            b["message_length"] = len(b["message_data"])
        packet_compiled.build(dict(session=session, sequence_number=1, message_count=len(blocks), message_blocks=blocks))

    native = CODECS.native

    def python_backend(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            CODECS.native = None
            try:
                fn()
            finally:
                CODECS.native = native
        return run

    def fast_decode() -> None:
        decode_datagram(view, CODECS)

    def fast_encode() -> None:
        writer.reset()
        writer.add_many(msgs)  # the publisher's path: one call packs a run of messages
        writer.finish(session, 1)

    batch = msgs * 10
    sealed = Sequencer(session, CODECS, journal=Journal())
    plain = Sequencer(session, CODECS, journal=Journal())
    plain._seal = None  # the struct codecs' path

    def publish(seq: Sequencer) -> Callable[[], None]:
        return lambda: seq.publish_many(batch, 0)

    def bare_decode() -> None:  # the C decoder alone, without the header check and the Python wrapper
        native.decode_messages(view, N_MESSAGES)

    # The decoders reuse a result tuple, and its ints, once the application has dropped it (decoders/native_gen.py,
    # pooled_tuple): the line handler's pattern (apply, deliver, drop), and the rows above. An application that keeps
    # every message makes them allocate: here the last 100 datagrams' messages (3,000 tuples) stay held.
    kept: deque = deque(maxlen=100)

    def kept_decode() -> None:
        kept.append(decode_datagram(view, CODECS))

    # CPython's own C unpacker making tuples of the same shape (a quote: type byte and six integers), 30 a call:
    # what allocating a message's tuple and integers costs on this machine, whoever decodes
    quote = struct.Struct(">cQIqQqQ")
    quotes = b"".join(quote.pack(b"Q", *m[1:]) for m in msgs if m[0] == b"Q")
    quotes = (quotes * N_MESSAGES)[: quote.size * N_MESSAGES]

    def struct_floor() -> None:
        list(quote.iter_unpack(quotes))

    rows = [
        ("construct parse", lambda: construct_parse(packet_plain, structs), "decode"),
        ("construct compiled parse", lambda: construct_parse(packet_compiled, cstructs), "decode"),
        ("fast decode", python_backend(fast_decode), "decode"),
        *([("native decode", fast_decode, "decode"), ("native decode, bare call", bare_decode, "decode"),
           ("native decode, messages kept", kept_decode, "decode")] if native else []),
        ("struct.iter_unpack, 7-tuples", struct_floor, "decode"),
        ("construct build", lambda: construct_build(structs), "encode"),
        ("construct compiled build", lambda: construct_build_compiled(cstructs), "encode"),
        ("fast encode", python_backend(fast_encode), "encode"),
        *([("native encode", fast_encode, "encode")] if native else []),
        ("fast publish, 300 a call", python_backend(publish(plain)), "encode"),
        *([("native publish, 300 a call", publish(sealed), "encode")] if native else []),
    ]
    results = {}
    for name, fn, _ in rows:
        slow = name.startswith("construct")
        results[name] = rate(fn, len(batch) if "publish" in name else N_MESSAGES, args.seconds / (4 if slow else 1), max(3, args.repeats // (2 if slow else 1)))

    base = {"decode": statistics.median(results["construct parse"]), "encode": statistics.median(results["construct build"])}
    print(f"codec benchmark: datagram of {N_MESSAGES} mixed messages, {len(datagram)} bytes; Python {sys.version.split()[0]}")
    print(f"{'way':28} {'median msg/s':>14} {'min':>12} {'max':>12} {'vs construct':>13}")
    for name, _, kind in rows:
        r = results[name]
        med = statistics.median(r)
        print(f"{name:28} {med:14,.0f} {min(r):12,.0f} {max(r):12,.0f} {med / base[kind]:12.1f}x")
    dec = statistics.median(results["fast decode"])
    enc = statistics.median(results["fast encode"])
    checks: list[tuple[str, bool | None, str]] = [
        ("fast decode >= 3 M msg/s", dec >= 3e6, f"{dec / 1e6:.2f} M"),
        ("fast encode >= 2 M msg/s", enc >= 2e6, f"{enc / 1e6:.2f} M"),
        ("fast decode >= 60x construct parse", dec / base["decode"] >= 60, f"{dec / base['decode']:.0f}x"),
    ]
    if native:  # issue 18: the native backend
        ndec, npub = statistics.median(results["native decode"]), statistics.median(results["native publish, 300 a call"])
        fpub = statistics.median(results["fast publish, 300 a call"])
        floor = statistics.median(results["struct.iter_unpack, 7-tuples"])
        checks += [("native decode >= 20 M msg/s", ndec >= 20e6, f"{ndec / 1e6:.2f} M ({ndec / dec:.1f}x the struct codecs; "
                                                                 f"{ndec / floor:.2f}x CPython's struct.iter_unpack making quote tuples)"),
                   ("native decode, messages kept (no target: every tuple and int is allocated)", None,
                    f"{statistics.median(results['native decode, messages kept']) / 1e6:.2f} M"),
                   ("native encode >= 10 M msg/s (the plant's publish path)", npub >= 10e6,
                    f"{npub / 1e6:.2f} M ({npub / fpub:.1f}x the struct codecs' publish path)")]
    else:
        print("\nnative backend not active (decoders.BACKEND_REASON: see python -c 'import decoders; print(decoders.BACKEND_REASON)')")
    print()
    for label, ok, fig in checks:
        print(f"{'INFO' if ok is None else 'MET ' if ok else 'MISS'} {label}: {fig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
