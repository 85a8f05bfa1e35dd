"""recvmmsg/sendmmsg (mdcommon/_batch_io.c) against the socket module, on loopback."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from mdcommon.batch_io import BATCH, send_all_to
from tests.conftest import need_native


@pytest.fixture
def batch():
    return need_native(BATCH, "mdcommon/_batch_io.c")


@pytest.fixture
def pair():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield rx, tx
    rx.close()
    tx.close()


SO_RCVBUFFORCE = 33  # Linux; Python's socket module does not name it


def roomy(rx: socket.socket, want: int = 8 << 20) -> bool:
    """Ask for a receive buffer of `want` bytes, past net.core.rmem_max as root; True if the kernel granted it (it
    reports twice what it holds for data). With a smaller one a burst sent without reading loses its tail."""
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, want)
    if rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < want and os.geteuid() == 0:
        rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, want)
    return rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= want


def test_recv_batch_reads_what_recv_would_in_order(batch, pair) -> None:
    rx, tx = pair
    sent = [bytes([i]) * (1 + i * 37) for i in range(40)]
    for d in sent:
        tx.sendto(d, rx.getsockname())
    buf = bytearray(2048 * 16)
    got = []
    while True:
        lengths = batch.recv_batch(rx.fileno(), buf, 2048, 16)
        got += [bytes(buf[i * 2048 : i * 2048 + n]) for i, n in enumerate(lengths)]
        if len(lengths) < 16:
            break
    assert got == sent
    assert batch.recv_batch(rx.fileno(), buf, 2048, 16) == ()  # nothing queued: never blocks


def test_a_datagram_longer_than_its_slot_is_reported_cut(batch, pair) -> None:
    rx, tx = pair
    tx.sendto(b"x" * 300, rx.getsockname())
    buf = bytearray(100 * 4)
    assert batch.recv_batch(rx.fileno(), buf, 100, 4) == (-100,)


def test_bad_arguments_are_refused(batch, pair) -> None:
    rx, _ = pair
    with pytest.raises(ValueError):
        batch.recv_batch(rx.fileno(), bytearray(100), 100, 2)  # two slots do not fit
    with pytest.raises(ValueError):
        batch.send_batch_to(rx.fileno(), [b"x"], [("not-an-address", 1)])
    with pytest.raises(OSError):
        batch.recv_batch(-1, bytearray(100), 100, 1)


def test_send_feeds_delivers_every_datagram_to_one_target_in_order(batch, pair) -> None:
    rx, tx = pair
    datagrams = [os.urandom(10 + i % 50) for i in range(2500)]  # more than one held block
    whole = roomy(rx)
    host, port = rx.getsockname()
    assert batch.send_feeds(datagrams, [(tx.fileno(), host, port)], batch.MAX_BATCH) == []
    got = []
    buf = bytearray(128 * 64)
    while lengths := batch.recv_batch(rx.fileno(), buf, 128, 64):
        got += [bytes(buf[i * 128 : i * 128 + n]) for i, n in enumerate(lengths)]
    assert got == datagrams[: len(got)] and got  # in order
    assert len(got) == len(datagrams) or not whole  # all of them, given room (always as root, so in CI)


def test_a_refused_datagram_is_reported_and_skipped_like_a_refused_sendto(batch) -> None:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_BROADCAST: the broadcast address is refused
    try:
        with pytest.raises(OSError) as exc:  # EACCES; ENETUNREACH in a network namespace with no route
            tx.sendto(b"x", ("255.255.255.255", 9))
        refused: dict[int, int] = {}
        assert send_all_to(tx.fileno(), [b"a", b"b"], [("255.255.255.255", 9)] * 2, refused.__setitem__) == 0
        assert refused == {0: exc.value.errno, 1: exc.value.errno} and exc.value.errno in (errno.EACCES, errno.ENETUNREACH)
    finally:
        tx.close()


def test_send_all_to_sends_each_datagram_to_its_own_destination(batch) -> None:
    """The wire replay's interleaved A/B runs: one sendmmsg, a destination per datagram, order kept per destination."""
    rxs = []
    whole = True
    for _ in range(2):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        whole = roomy(rx) and whole
        rxs.append(rx)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        dests = [rxs[i % 2].getsockname() for i in range(1500)]
        datagrams = [i.to_bytes(4, "big") for i in range(1500)]
        assert send_all_to(tx.fileno(), datagrams, dests, lambda i, e: pytest.fail(f"refused {i}: {e}")) == 1500
        buf = bytearray(64 * 64)
        for k, rx in enumerate(rxs):
            got = []
            while lengths := batch.recv_batch(rx.fileno(), buf, 64, 64):
                got += [int.from_bytes(buf[i * 64 : i * 64 + 4], "big") for i in range(len(lengths))]
            assert got == list(range(k, 1500, 2))[: len(got)] and got
            assert len(got) == 750 or not whole  # all of them, given room (always as root, so in CI)
        with pytest.raises(ValueError):
            batch.send_batch_to(tx.fileno(), [b"x"], [("not-an-address", 1)])
        with pytest.raises(ValueError):
            batch.send_batch_to(tx.fileno(), [b"x", b"y"], [("127.0.0.1", 1)])  # one destination per datagram
    finally:
        tx.close()
        for rx in rxs:
            rx.close()


def test_send_feeds_takes_turns_of_chunk_datagrams_and_skips_only_what_a_target_refuses(batch, pair) -> None:
    """The plant's A and B: each target gets every datagram in order, in turns of `chunk` (so the second trails the first
    by at most a chunk); a target that refuses is reported per datagram and never stops the other."""
    rx, tx = pair
    whole = roomy(rx)
    host, port = rx.getsockname()
    datagrams = [i.to_bytes(4, "big") for i in range(1100)]  # past one held block of MAX_BATCH
    assert batch.send_feeds(datagrams, [(tx.fileno(), host, port), (tx.fileno(), host, port)], 8) == []
    buf = bytearray(64 * 64)
    got = []
    while lengths := batch.recv_batch(rx.fileno(), buf, 64, 64):
        got += [int.from_bytes(buf[i * 64 : i * 64 + 4], "big") for i in range(len(lengths))]
    turns = []
    for lo in range(0, 1024, 8):  # the first held block: turns of 8, then its tail
        turns += [*range(lo, lo + 8), *range(lo, lo + 8)]
    for lo in range(1024, 1100, 8):
        turns += [*range(lo, min(lo + 8, 1100)), *range(lo, min(lo + 8, 1100))]
    assert got == turns[: len(got)] and got  # in turns of 8
    assert len(got) == len(turns) or not whole  # across the block edge too, given room (always as root, so in CI)

    broadcast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_BROADCAST: every datagram to it is refused
    try:
        with pytest.raises(OSError) as exc:
            broadcast.sendto(b"x", ("255.255.255.255", 9))
        refused = batch.send_feeds(datagrams[:20], [(broadcast.fileno(), "255.255.255.255", 9), (tx.fileno(), host, port)], 8)
        assert refused == [(0, k, exc.value.errno) for k in range(20)]
        got = []
        while lengths := batch.recv_batch(rx.fileno(), buf, 64, 64):
            got += [int.from_bytes(buf[i * 64 : i * 64 + 4], "big") for i in range(len(lengths))]
        assert got == list(range(20))
    finally:
        broadcast.close()
    for bad in ([(tx.fileno(), "not-an-address", 1)], [(tx.fileno(), host)], [(tx.fileno(), host, port)] * 9):
        with pytest.raises((ValueError, TypeError)):
            batch.send_feeds(datagrams[:1], bad, 8)
    with pytest.raises(ValueError):
        batch.send_feeds(datagrams[:1], [(tx.fileno(), host, port)], 0)
