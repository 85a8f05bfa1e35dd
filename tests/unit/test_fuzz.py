"""200,000 random and mutated datagrams: the decoder returns a whole datagram or raises DecodeError.

Whatever it accepts must re-encode to exactly the input bytes, so an accepted
datagram is never a misdecoded one.
"""

from __future__ import annotations

import random
import signal
import time

from decoders import CODECS, SCHEMA_FINGERPRINT, DecodeError, make_session
from decoders.moldudp64 import (
    END_OF_SESSION_COUNT,
    HEARTBEAT_COUNT,
    decode_datagram,
    encode_datagram,
    encode_end_of_session,
    encode_heartbeat,
)

N_DATAGRAMS = 200_000
TIME_LIMIT_S = 60


def seed_datagrams(rng: random.Random) -> list[bytes]:
    s = make_session(SCHEMA_FINGERPRINT, 3)
    samples = [
        (b"S", 1, ord("S"), SCHEMA_FINGERPRINT),
        (b"R", 2, 7, "ACME", -4),
        (b"Q", 3, 7, 1, 2, 3, 4),
        (b"T", 4, 7, 5, 6, ord("B"), 8),
        (b"F", 5, 7, 9, 2, -10),
        (b"I", 6, 7, "ACME", -4, ((1, 2, 3), (7, 1, 9))),
        (b"G", 7, 99, 1),
        (b"J", 8, ord("L"), 5, 10, 1000, 1, 100),
    ]
    out = [encode_heartbeat(s, 9), encode_end_of_session(s, 9)]
    for _ in range(200):
        k = rng.randint(1, 12)
        out.append(encode_datagram(s, rng.randint(1, 10**6), [CODECS.encode(rng.choice(samples)) for _ in range(k)]))
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    op = rng.randrange(8)
    if op == 0 and b:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:
        del b[rng.randrange(len(b) + 1) :]
    elif op == 2:
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 8))
    elif op == 3 and b:
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 8)]
    elif op == 4 and len(b) >= 20:
        b[18:20] = rng.randrange(0x10000).to_bytes(2, "big")  # lie about the count
    elif op == 5 and len(b) > 22:
        i = rng.randrange(20, len(b) - 1)
        b[i : i + 2] = rng.randrange(0x10000).to_bytes(2, "big")  # a wild block length
    elif op == 6:
        return rng.randbytes(rng.randint(0, 120))
    elif b:
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def check(data: bytes) -> bool:
    try:
        session, seq, count, msgs = decode_datagram(data, CODECS)
    except DecodeError:
        return False
    if count == HEARTBEAT_COUNT:
        assert data == encode_heartbeat(session, seq)
    elif count == END_OF_SESSION_COUNT:
        assert data == encode_end_of_session(session, seq)
    else:
        assert data == encode_datagram(session, seq, [CODECS.encode(m) for m in msgs]), data.hex()
    return True


def test_fuzzed_datagrams_only_raise_decode_error() -> None:
    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"fuzzing took over {TIME_LIMIT_S} s: a hang?")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TIME_LIMIT_S)
    try:
        rng = random.Random(20261123)
        seeds = seed_datagrams(rng)
        accepted = rejected = 0
        t0 = time.monotonic()
        for i in range(N_DATAGRAMS):
            base = rng.choice(seeds)
            data = mutate(rng, base) if i % 10 else base
            if i % 7 == 0:
                data = mutate(rng, data)
            if check(data):
                accepted += 1
            else:
                rejected += 1
        elapsed = time.monotonic() - t0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    print(f"fuzz: {N_DATAGRAMS} datagrams, {accepted} accepted, {rejected} rejected, {elapsed:.1f} s")
    assert accepted + rejected == N_DATAGRAMS
    assert rejected > N_DATAGRAMS // 2 and accepted > N_DATAGRAMS // 20  # both paths exercised
