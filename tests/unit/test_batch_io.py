"""recvmmsg/sendmmsg (mdcommon/_batch_io.c) against the socket module, on loopback."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from mdcommon.batch_io import BATCH, send_all, send_all_to
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
        batch.send_batch(rx.fileno(), [b"x"], "not-an-address", 1)
    with pytest.raises(OSError):
        batch.recv_batch(-1, bytearray(100), 100, 1)


def test_send_all_delivers_every_datagram_with_few_calls(batch, pair) -> None:
    rx, tx = pair
    datagrams = [os.urandom(10 + i % 50) for i in range(2500)]  # more than one sendmmsg slice
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    host, port = rx.getsockname()
    assert send_all(tx.fileno(), datagrams, host, port, lambda i, e: pytest.fail(f"refused {i}: {e}")) == 2500
    got = []
    buf = bytearray(128 * 64)
    while lengths := batch.recv_batch(rx.fileno(), buf, 128, 64):
        got += [bytes(buf[i * 128 : i * 128 + n]) for i, n in enumerate(lengths)]
    assert got == datagrams[: len(got)] and len(got) > 1000  # in order; the receive buffer may hold fewer than all


def test_a_refused_datagram_is_reported_and_skipped_like_a_refused_sendto(batch) -> None:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_BROADCAST: the broadcast address is refused
    try:
        with pytest.raises(OSError) as exc:  # EACCES; ENETUNREACH in a network namespace with no route
            tx.sendto(b"x", ("255.255.255.255", 9))
        refused: dict[int, int] = {}
        assert send_all(tx.fileno(), [b"a", b"b"], "255.255.255.255", 9, refused.__setitem__) == 0
        assert refused == {0: exc.value.errno, 1: exc.value.errno} and exc.value.errno in (errno.EACCES, errno.ENETUNREACH)
    finally:
        tx.close()


def test_send_all_to_sends_each_datagram_to_its_own_destination(batch) -> None:
    """The wire replay's interleaved A/B runs: one sendmmsg, a destination per datagram, order kept per destination."""
    rxs = []
    for _ in range(2):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
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
            assert got == list(range(k, 1500, 2))
        with pytest.raises(ValueError):
            batch.send_batch_to(tx.fileno(), [b"x"], [("not-an-address", 1)])
        with pytest.raises(ValueError):
            batch.send_batch_to(tx.fileno(), [b"x", b"y"], [("127.0.0.1", 1)])  # one destination per datagram
    finally:
        tx.close()
        for rx in rxs:
            rx.close()
