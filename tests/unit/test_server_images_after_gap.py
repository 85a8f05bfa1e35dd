"""A retransmission server whose mirror lost messages serves no image until its replica is refreshed from one."""

from __future__ import annotations

import socket

from linehandler.events import GapEvent, ImageApplied, SessionStarted
from retransmit.config import ServerConfig
from retransmit.server_io import RetransmitServer
from tests.integration.mcast import unique_feeds


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_image_is_served_between_a_lost_range_and_the_next_image() -> None:
    (ga, pa), (gb, pb) = unique_feeds()
    c = ServerConfig(request_port=_free(socket.SOCK_DGRAM), image_port=_free(socket.SOCK_STREAM), stats_interval_s=0)
    c.feed_a.group, c.feed_a.port, c.feed_b.group, c.feed_b.port = ga, pa, gb, pb
    srv = RetransmitServer(c)
    try:
        core = srv.core
        core.session, core.expected = b"H4NV000001", 500  # a mirror in the middle of a session, no gap open
        srv._on_event("ch1", SessionStarted(core.session, 1))
        assert srv._image_ready()
        srv._on_event("ch1", GapEvent(100, 120, "recovery_timeout"))  # the mirror's replica now misses 100-120
        assert not srv._image_ready() and srv._snapshot() is None
        srv._on_event("ch1", ImageApplied(480, 10, 0))  # refreshed from an image: complete again
        assert srv._image_ready()
    finally:
        srv.close()
