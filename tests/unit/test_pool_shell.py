"""The pool server's shell: a repair another server already sent counts before this server's slot comes.

The core (retransmit/pool.py) yields a pending answer to a repair it has heard. The shell must
let it hear one that lies unread on the repair socket when the answer falls due (the loop was
busy with a mirror batch or a snapshot step meanwhile), or the pool sends the range twice.
"""

from __future__ import annotations

import socket
import time

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import encode_datagram, encode_request
from retransmit.config import ServerConfig
from retransmit.server_io import RetransmitServer
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import free_port

S = make_session(SCHEMA_FINGERPRINT, 5)


def _server() -> RetransmitServer:
    (ga, pa), (gb, pb) = unique_feeds()
    (gq, pq), (gr, pr) = unique_feeds()
    c = ServerConfig(request_port=free_port(socket.SOCK_DGRAM), image_port=free_port(socket.SOCK_STREAM), stats_interval_s=0)
    c.feed_a.group, c.feed_a.port, c.feed_b.group, c.feed_b.port = ga, pa, gb, pb
    c.request_group.group, c.request_group.port = gq, pq
    c.repair_group.group, c.repair_group.port = gr, pr
    c.pool.answer_slot_ms = 1.0
    srv = RetransmitServer(c)
    srv.server.session = S
    for s in range(1, 101):
        srv.journal.append(s, CODECS.encode((b"Q", s, 1, s, 1, s + 1, 1)), 0)
    return srv


def _messages(first: int, count: int) -> list[bytes]:
    return [CODECS.encode((b"Q", s, 1, s, 1, s + 1, 1)) for s in range(first, first + count)]


def _due(srv: RetransmitServer) -> None:
    """Wait past the answer's slot, then run the server's tick as its loop would."""
    nt = srv.pool.next_timer()
    assert nt is not None, "the request left no pending answer"
    while time.monotonic_ns() <= nt:
        time.sleep(0.001)
    srv._pool_tick(time.monotonic_ns())


def test_a_repair_waiting_unread_on_the_socket_is_heard_before_the_answer_goes() -> None:
    srv = _server()
    sent: list[bytes] = []
    srv._pool_send = lambda datagram, addr: sent.append(datagram)  # what this server would put on the group
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        other.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        srv.pool.on_request(encode_request(S, 10, 5), ("127.0.0.1", 5000), time.monotonic_ns())
        # another server of the pool repairs the range first; it arrives while this loop is busy elsewhere
        other.sendto(encode_datagram(S, 10, _messages(10, 5)), srv.repair_addr)
        time.sleep(0.05)
        _due(srv)
        assert sent == []
        assert srv.pool.counters["yielded"] == 1 and srv.pool.counters["repairs_heard"] == 1
    finally:
        other.close()
        srv.close()


def test_with_nothing_heard_the_answer_goes_when_due() -> None:
    srv = _server()
    sent: list[bytes] = []
    srv._pool_send = lambda datagram, addr: sent.append(datagram)
    try:
        srv.pool.on_request(encode_request(S, 10, 5), ("127.0.0.1", 5000), time.monotonic_ns())
        _due(srv)
        assert sent == [encode_datagram(S, 10, _messages(10, 5))]
        assert srv.pool.counters["yielded"] == 0
    finally:
        srv.close()
