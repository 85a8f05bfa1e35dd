#!/usr/bin/python3
"""The ZeroMQ reliable-multicast peer: one publisher or subscriber process (Debian's python3-zmq).

Runs under Debian's /usr/bin/python3 (the venv has no zmq); bench/peer.py starts it:

    /usr/bin/python3 bench/zmq_peer.py sub ENDPOINT N SIZE RATE     prints READY, then one JSON line
    /usr/bin/python3 bench/zmq_peer.py pub ENDPOINT N SIZE RATE     waits for GO on stdin, sends, waits for DONE

Each message is SIZE bytes: sequence (u64), publish timestamp (CLOCK_MONOTONIC ns, u64), zero
padding. RATE 0 = as fast as the publisher can go. Warm-up messages (top bit of the sequence set)
flow until the subscriber has seen one; at a fixed rate one more second of warm-up follows at that
rate. The subscriber stops after N distinct messages or 3 s of silence. Options on both sockets:
RATE 1 Gbit/s, RECOVERY_IVL 2 s, MULTICAST_HOPS 1, SNDHWM = RCVHWM = 0 (ZeroMQ's default HWM of
1000 silently drops ~40 % at full speed), 4 MiB buffers, LINGER 0.
"""

import json
import os
import select
import struct
import sys
import time
from array import array

import zmq

WARM = 1 << 63
MSG = struct.Struct("<QQ")
now = time.monotonic_ns


def sock(kind, endpoint):
    ctx = zmq.Context()
    s = ctx.socket(kind)
    s.setsockopt(zmq.RATE, 1_000_000)
    s.setsockopt(zmq.RECOVERY_IVL, 2000)
    s.setsockopt(zmq.MULTICAST_HOPS, 1)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.RCVBUF, 4 << 20)
    s.setsockopt(zmq.SNDBUF, 4 << 20)
    s.setsockopt(zmq.LINGER, 0)
    return ctx, s


def pub(endpoint, n, size, rate):
    ctx, s = sock(zmq.PUB, endpoint.replace("{id}", "1"))
    s.connect(endpoint.replace("{id}", "1"))
    pad = b"\0" * (size - 16)
    send, pack = s.send, MSG.pack
    k = 0
    while True:
        send(pack(WARM | k, now()) + pad)
        k += 1
        r, _, _ = select.select([sys.stdin], [], [], 0.02)
        if r and sys.stdin.readline().strip() == "GO":
            break
    interval = 1e9 / rate if rate else 0

    def run(base, count):
        nxt = now()
        for i in range(count):
            if interval:
                nxt += interval
                d = nxt - now()
                if d > 60_000:
                    time.sleep((d - 50_000) / 1e9)
                while now() < nxt:
                    pass
            send(pack(base | i, now()) + pad)

    if rate:
        run(WARM, int(rate))
    t0 = now()
    run(0, n)
    t1 = now()
    sys.stdin.readline()  # keep the source alive for repairs until the subscriber is done
    print(json.dumps({"sent": n, "send_rate": n / ((t1 - t0) / 1e9)}), flush=True)
    s.close(0)
    ctx.term()


def sub(endpoint, n, size, rate):
    ctx, s = sock(zmq.SUB, endpoint.replace("{id}", "2"))
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(endpoint.replace("{id}", "2"))
    while True:
        if MSG.unpack_from(s.recv())[0] & WARM:
            break
    print("READY", flush=True)
    s.setsockopt(zmq.RCVTIMEO, 3000)
    seen = bytearray(n)
    lats = array("q")
    recv, unpack = s.recv, MSG.unpack_from
    got = dup = uniq = 0
    t_first = t_last = None
    try:
        while uniq < n:
            m = recv()
            t = now()
            seq, ts = unpack(m)
            if seq & WARM:
                continue
            if t_first is None:
                t_first = t
            t_last = t
            got += 1
            if seq >= n or seen[seq]:
                dup += 1
                continue
            seen[seq] = 1
            uniq += 1
            lats.append(t - ts)
    except zmq.Again:
        pass
    a = sorted(lats)

    def q(p):
        return a[min(len(a) - 1, int(p * len(a)))] / 1000 if a else None

    res = {"received": got, "unique": uniq, "lost": n - uniq, "dup": dup, "p50_us": q(0.5), "p99_us": q(0.99), "p999_us": q(0.999),
           "recv_rate": uniq / ((t_last - t_first) / 1e9) if t_first is not None and t_last > t_first else None}
    print(json.dumps(res), flush=True)
    os._exit(0)  # libzmq's context teardown with a PGM socket can hang; the figures are out


if __name__ == "__main__":
    role, ep, n, size, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    (pub if role == "pub" else sub)(ep, n, size, rate)
