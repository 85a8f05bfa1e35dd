"""The retransmission server process: a mirror of the feed plus the two services, one loop.

The mirror is a `LineHandler` (the handler's own core: arbitration, gap repair from
peer servers, late join from a peer's image); every message it delivers goes into the
journal and its replica image. The re-request socket (UDP) and the image listener (TCP)
are served from the same selector, so the mirror and the services never race.
"""

from __future__ import annotations

import logging
import random
import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from decoders import CODECS, soup
from decoders.moldudp64 import encode_datagram
from linehandler.config import ChannelConfig, HandlerConfig
from linehandler.counters import FEED_COUNTERS, STREAM_COUNTERS
from linehandler.events import GapEvent, ImageApplied, SessionChanged, SessionStarted
from linehandler.handler_io import LineHandler
from mdcommon.compact_image import make_image
from mdcommon.logs import CoreErrors, event
from mdcommon.mcast_recv_io import open_receiver
from mdcommon.mcast_send_io import open_sender
from mdcommon.metrics_io import Metrics
from mdcommon.validate_io import interface_addresses, interfaces

from .config import ServerConfig
from .image import ImageSession, ImageSnapshot
from .journal import Journal
from .journal_store import JournalFile
from .pool import POOL_COUNTERS, PoolLimits, RepairPool
from .server import SERVER_COUNTERS, RequestServer, ServerLimits

__all__ = ["RetransmitServer", "limits_from"]

log = logging.getLogger("retransmit")


def limits_from(config: ServerConfig) -> ServerLimits:
    lc = config.limits
    b = lc.burst_s

    def bucket(rate: float, floor: float) -> tuple[float, float]:
        return (rate, max(rate * b, floor))

    return ServerLimits(
        max_request_messages=lc.max_request_messages,
        max_datagram_bytes=config.max_datagram_bytes,
        requester_requests=bucket(lc.requester_requests_per_s, 1),
        requester_messages=bucket(lc.requester_messages_per_s, lc.max_request_messages),
        requester_bytes=bucket(lc.requester_bytes_per_s, 128 * 1024),
        global_requests=bucket(lc.global_requests_per_s, 1),
        global_messages=bucket(lc.global_messages_per_s, lc.max_request_messages),
        global_bytes=bucket(lc.global_bytes_per_s, 128 * 1024),
        dedupe_window_ns=int(lc.dedupe_window_ms * 1e6),
        max_requesters=lc.max_requesters,
    )


@dataclass
class _Client:
    sock: socket.socket
    session: ImageSession
    accepted_ns: int
    last_progress_ns: int
    pending: deque = field(default_factory=deque)
    next_chunk: int = 0
    ended: bool = False


class RetransmitServer:
    """Mirror + re-request server + image server for one channel."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        hc = HandlerConfig(
            channel=ChannelConfig(name=config.channel, feed_a=config.feed_a, feed_b=config.feed_b,
                                  nack_servers=list(config.repair_servers), image_servers=list(config.repair_image_servers)),
            keep_image=True, stats_interval_s=config.stats_interval_s, status_socket=config.status_socket,
            capture_file=config.capture_file, capture_max_bytes=config.capture_max_bytes,
        )
        self.journal = Journal(config.journal_max_messages, config.journal_max_bytes,
                               int(config.journal_max_age_s * 1e9) if config.journal_max_age_s > 0 else None)
        self.server = RequestServer(self.journal, limits_from(config), time.monotonic_ns())
        self.handler = LineHandler(hc, on_event=self._on_event, on_messages=self._on_messages)
        self.core = self.handler.channels[0].core
        self.handler.snapshot = self.status  # the status socket and metrics show the whole server, mirror included
        if config.metrics_port:
            self.handler.metrics = Metrics("retransmit", [FEED_COUNTERS, STREAM_COUNTERS, SERVER_COUNTERS, POOL_COUNTERS], config.metrics_port,
                                           config.metrics_address)
        self.handler.extra_stats.append(self._log_server_stats)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # a flood must not push honest requests out
        self.udp.bind((config.request_address, config.request_port))
        self.udp.setblocking(False)
        self.handler.add_reader(self.udp, self._on_udp)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((config.image_address, config.image_port))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.handler.add_reader(self.listener, self._on_accept)
        self.handler.tickers.append(self._tick)
        self.store: JournalFile | None = None
        self.image_complete = True  # False after a restart whose history does not start at 1, until an image arrives
        if config.journal_file:
            self._load_journal(config.journal_file)
        self.pool: RepairPool | None = None
        self.fed_bytes = 0  # feed bytes the mirror delivered (one copy): the pool budget follows the feed's rate
        self.fed_mark = (time.monotonic_ns(), 0)
        if config.request_group.group or config.repair_group.group:
            self._open_pool(config)
        self.clients: dict[socket.socket, _Client] = {}
        self.snapshot: ImageSnapshot | None = None
        self.snapshot_ns = 0
        self.figures = {"snapshots_taken": 0, "image_clients": 0, "images_served": 0, "clients_refused": 0, "slow_readers_closed": 0,
                        "idle_closed": 0, "udp_send_errors": 0, "journal_resets": 0}
        self.core_errors = CoreErrors(log, "re-request server core")

    # -- the pool (anonymous recovery) ---------------------------------------

    def _open_pool(self, config: ServerConfig) -> None:
        rq, rp, pc = config.request_group, config.repair_group, config.pool
        if not (rq.group and rp.group):
            raise ValueError("request_group and repair_group go together (set both groups, or neither)")
        limits = PoolLimits(answer_slot_ns=int(pc.answer_slot_ms * 1e6), repair_share=pc.repair_share,
                            min_repair_bytes_per_s=pc.min_repair_bytes_per_s, requester_share=pc.requester_share)
        self.pool = RepairPool(self.server, limits, rng=random.Random(), now_ns=time.monotonic_ns(), offer=self._offer)
        self.repair_addr = (rp.group, rp.port)
        opened: list[socket.socket] = []
        try:
            self.pool_requests, _ = open_receiver(rq.interface, rq.group, rq.port, 4 << 20, rq.sources)
            opened.append(self.pool_requests)
            self.pool_repairs, _ = open_receiver(rp.interface, rp.group, rp.port, 4 << 20, rp.sources)
            opened.append(self.pool_repairs)
            self.pool_send = open_sender(rp.interface, rp.ttl, loop=True)  # handlers on this host hear the repairs too
        except OSError:
            for sock in opened:
                sock.close()
            raise
        self.handler.add_reader(self.pool_requests, self._on_pool_request)
        self.handler.add_reader(self.pool_repairs, self._on_pool_repair)
        self.handler.wakeups.append(self.pool.next_timer)
        self.offer_address = 0 if config.image_address in ("", "0.0.0.0") else int.from_bytes(socket.inet_aton(config.image_address), "big")
        # a listener on a loopback address serves only this host: offer it only to askers with one of our addresses
        self.offer_local_only = config.image_address.startswith("127.")
        # (0.0.0.0 too: what a host whose only interface is loopback, a private test namespace, sends multicast from)
        self.local_addresses = {a for name in interfaces() for a in interface_addresses(name)} | {"0.0.0.0"}

    def _offer(self, now_ns: int, asker: str = "") -> bytes | None:
        """An image offer, if this server can serve an image now, and to this asker (a listener on a loopback
        address serves only this host)."""
        if not self._image_ready() or (self.offer_local_only and asker and asker not in self.local_addresses):
            return None
        core = self.core
        msg = CODECS.by_name["image_offer"].from_dict({"timestamp_ns": time.time_ns(), "image_address": self.offer_address,
                                                        "image_port": self.config.image_port,
                                                        "next_sequence_number": core.expected, "instrument_count": len(core.image)})
        return encode_datagram(core.session, 0, [CODECS.encode(msg)])

    def _on_pool_request(self, sock: socket.socket, mask: int, now_ns: int) -> None:
        self._serve(sock, self.pool.on_request, self._pool_send)  # an image offer goes to the asker alone

    def _on_pool_repair(self, sock: socket.socket, mask: int, now_ns: int) -> None:
        for _ in range(256):
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            now = time.monotonic_ns()
            try:
                self.pool.on_repair_heard(data, now)
            except Exception as exc:  # as in _on_udp
                self.core_errors.record(exc, now)

    def _pool_tick(self, now_ns: int) -> None:
        pool = self.pool
        now = time.monotonic_ns()
        mark_ns, mark_bytes = self.fed_mark
        if now - mark_ns >= 1_000_000_000:
            pool.set_feed_rate((self.fed_bytes - mark_bytes) * 1e9 / (now - mark_ns), now)
            self.fed_mark = (now, self.fed_bytes)
        nt = pool.next_timer()
        if nt is not None and nt <= now:
            # what another server already repaired counts before our slot comes: its repair may sit unread on the
            # socket while this loop was busy (a mirror batch, a snapshot step), and answering then doubles it
            self._on_pool_repair(self.pool_repairs, 0, now)
            now = time.monotonic_ns()
            try:
                answers = pool.on_timer(now)
            except Exception as exc:  # as in _on_udp: a core bug must not take the server down
                self.core_errors.record(exc, now)
                return
            for datagram in answers:
                self._pool_send(datagram, self.repair_addr)

    def _pool_send(self, datagram: bytes, addr: tuple[str, int]) -> None:
        try:
            self.pool_send.sendto(datagram, addr)
        except OSError as exc:
            self.figures["udp_send_errors"] += 1
            event(log, "pool_send_failed", logging.WARNING, to=f"{addr[0]}:{addr[1]}", error=str(exc))

    # -- journal on disk ----------------------------------------------------

    def _load_journal(self, path: str) -> None:
        self.store = JournalFile(path)
        loaded = self.store.load(self.config.journal_max_messages)
        if loaded.error or loaded.torn_tail_bytes:
            event(log, "journal_file_damaged", logging.WARNING, path=path, error=loaded.error, torn_tail_bytes=loaded.torn_tail_bytes)
        if loaded.session is None or not loaded.blocks:
            return
        now = time.monotonic_ns()
        self.journal.reset(loaded.first_sequence)
        self.journal.extend(loaded.first_sequence, loaded.blocks, now)
        image = None
        if loaded.first_sequence == 1:  # the whole session: the image can be rebuilt exactly
            image = make_image()
            for block in loaded.blocks:
                image.apply(CODECS.decode(block))
        else:
            self.image_complete = False
        self.core.resume(loaded.session, self.journal.next_sequence, image)
        self.server.session = loaded.session
        if loaded.clean:
            self.store.open_for_append(loaded.session, self.journal.next_sequence)
        else:
            self.store.reset(loaded.session, self.journal.first_sequence, self.journal.get(self.journal.first_sequence, len(self.journal)))
        event(log, "journal_loaded", path=path, session=loaded.session.decode(), first=self.journal.first_sequence,
              next=self.journal.next_sequence, image="rebuilt" if image is not None else "unavailable until fetched")

    def _store_reset(self, first_sequence: int) -> None:
        if self.store is not None and self.core.session is not None:
            self.store.reset(self.core.session, first_sequence)

    # -- mirror -------------------------------------------------------------

    def _on_messages(self, channel: str, first: int, msgs: list | tuple) -> None:
        """What the mirror delivers, a datagram at a time: journaled (and stored) as blocks."""
        encode = CODECS.encode
        blocks = [encode(m) for m in msgs]
        self.journal.extend(first, blocks, time.monotonic_ns())
        self.fed_bytes += 20 + 2 * len(blocks) + sum(map(len, blocks))
        if self.store is not None:
            for i, block in enumerate(blocks):
                self.store.append(first + i, block)

    def _on_event(self, channel: str, ev: Any) -> None:
        if isinstance(ev, (SessionStarted, SessionChanged)):
            self.server.session = self.core.session
            self.journal.reset(1)
            self.image_complete = True
            self._store_reset(1)
            self.figures["journal_resets"] += 1
        elif isinstance(ev, GapEvent):
            self.journal.reset(ev.last + 1)  # the journal never holds a hole: history before a lost range is dropped
            self._store_reset(ev.last + 1)
            # nor is an image served that misses what the mirror lost: its replica is incomplete until an image refreshes
            # it (ImageApplied). Serving it, a handler resyncing from this server got a replica short of those messages.
            self.image_complete = False
            self.figures["journal_resets"] += 1
        elif isinstance(ev, ImageApplied):
            self.journal.reset(ev.sequence + 1)
            self._store_reset(ev.sequence + 1)
            self.image_complete = True
            self.figures["journal_resets"] += 1

    # -- re-requests --------------------------------------------------------

    def _on_udp(self, sock: socket.socket, mask: int, now_ns: int) -> None:
        self._serve(sock, self.server.on_request, lambda datagram, addr: self._send_unicast(sock, datagram, addr))

    def _serve(self, sock: socket.socket, answer: Any, send: Any) -> None:
        """Read what is queued on a request socket (bounded), answer each datagram with `answer(data, addr, now)`
        and `send(datagram, addr)` the answers."""
        for _ in range(256):
            try:
                data, addr = sock.recvfrom(2048)
            except BlockingIOError:
                return
            now = time.monotonic_ns()
            try:
                answers = answer(data, addr, now)
            except Exception as exc:  # a core bug must not take the server down: counted, logged, request dropped
                self.core_errors.record(exc, now)
                continue
            for datagram in answers:
                send(datagram, addr)

    def _send_unicast(self, sock: socket.socket, datagram: bytes, addr: tuple[str, int]) -> None:
        try:
            sock.sendto(datagram, addr)
        except OSError as exc:
            self.figures["udp_send_errors"] += 1
            event(log, "retransmit_send_failed", logging.WARNING, requester=f"{addr[0]}:{addr[1]}", error=str(exc))

    # -- images -------------------------------------------------------------

    def _snapshot(self) -> ImageSnapshot | None:
        """The snapshot a client logging in now gets: the one being encoded, a recent one, or a new one."""
        core = self.core
        snap = self.snapshot
        if snap is not None and snap.session == core.session and (
            not snap.done or time.monotonic_ns() - self.snapshot_ns <= self.config.image_reuse_ms * 1e6
        ):
            return snap
        if not self._image_ready():
            return None  # not consistent with any one sequence right now: the client is told "session not available"
        snap = self.snapshot = ImageSnapshot(core.image, core.session, core.expected - 1, time.time_ns())
        self.snapshot_ns = time.monotonic_ns()
        self.figures["snapshots_taken"] += 1
        return snap

    def _image_ready(self) -> bool:
        """The replica is consistent with one sequence now, so a snapshot of it can be served."""
        core = self.core
        return not (core.session is None or core.expected is None or core.joining or core.gaps or not self.image_complete)

    def _on_accept(self, sock: socket.socket, mask: int, now_ns: int) -> None:
        try:
            conn, addr = sock.accept()
        except BlockingIOError:
            return
        if len(self.clients) >= self.config.max_clients:
            self.figures["clients_refused"] += 1
            event(log, "image_client_refused", logging.WARNING, client=f"{addr[0]}:{addr[1]}", clients=len(self.clients))
            conn.close()
            return
        conn.setblocking(False)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.clients[conn] = _Client(conn, ImageSession(self._snapshot, self.config.username, self.config.password), now_ns, now_ns)
        self.figures["image_clients"] += 1
        self.handler.add_reader(conn, self._on_client)

    def _on_client(self, sock: socket.socket, mask: int, now_ns: int) -> None:
        client = self.clients.get(sock)
        if client is None:
            return
        if mask & selectors.EVENT_READ:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._close(client, "peer closed")
                return
            before = client.session.state
            client.pending.extend(client.session.on_data(data))
            if before == "login" and client.session.state == "streaming":
                self.figures["images_served"] += 1
                event(log, "image_serving", sequence=client.session.snapshot.sequence, instruments=client.session.snapshot.instruments)
        self._flush(client, now_ns)

    def _flush(self, client: _Client, now_ns: int) -> None:
        sock = client.sock
        snap = client.session.snapshot
        while True:
            if client.session.state == "streaming" and snap is not None:
                while len(client.pending) < 4 and client.next_chunk < len(snap.chunks):  # shared chunks, read in place
                    client.pending.append(memoryview(snap.chunks[client.next_chunk]))
                    client.next_chunk += 1
                if snap.done and client.next_chunk == len(snap.chunks) and not client.ended:
                    client.pending.append(soup.end_of_session())
                    client.ended = True
            if not client.pending:
                break
            chunk = client.pending[0]
            try:
                n = sock.send(chunk)
            except BlockingIOError:
                break
            except OSError:
                self._close(client, "send failed")
                return
            client.last_progress_ns = now_ns
            if n < len(chunk):
                client.pending[0] = memoryview(chunk)[n:]
                break
            client.pending.popleft()
        if not client.pending and (client.session.state == "closed" or client.ended):
            self._close(client, client.session.close_reason or "image sent")  # the whole image is out, or a reject
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.pending else 0)
        self.handler.modify_reader(sock, self._on_client, want)

    def _close(self, client: _Client, reason: str) -> None:
        self.clients.pop(client.sock, None)
        self.handler.remove_reader(client.sock)
        client.sock.close()

    def _tick(self, now_ns: int) -> bool:
        """Encode the next part of a snapshot in progress and feed its clients; True while busy."""
        busy = False
        if self.pool is not None:
            self._pool_tick(now_ns)
        snap = self.snapshot
        if snap is not None and not snap.done:
            busy = snap.step()
            for client in list(self.clients.values()):
                if client.session.snapshot is snap:
                    self._flush(client, now_ns)
        self._expire(now_ns)
        if self.store is not None:
            self.store.flush()
            if self.store.bytes_written > 2 * self.config.journal_max_bytes:  # compact: keep what the journal holds
                j = self.journal
                self.store.reset(self.core.session, j.first_sequence, j.get(j.first_sequence, len(j)))
        return busy

    def _expire(self, now_ns: int) -> None:
        idle_ns = int(self.config.idle_timeout_s * 1e9)
        slow_ns = int(self.config.slow_reader_timeout_s * 1e9)
        for client in list(self.clients.values()):
            if client.session.state == "login" and now_ns - client.accepted_ns > idle_ns:
                self.figures["idle_closed"] += 1
                self._close(client, "idle")
            elif client.pending and now_ns - client.last_progress_ns > slow_ns:
                self.figures["slow_readers_closed"] += 1
                event(log, "slow_reader_closed", logging.WARNING, pending_chunks=len(client.pending))
                self._close(client, "slow reader")

    # -- run ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "daemon": "retransmit",
            "mirror": self.handler.status(),
            "journal": {"first_sequence": self.journal.first_sequence, "next_sequence": self.journal.next_sequence,
                        "messages": len(self.journal), "bytes": self.journal.nbytes},
            "server": {**self.server.counters.as_dict(), "core_errors": self.core_errors.count},
            "pool": self.pool.status() if self.pool is not None else None,
            "images": dict(self.figures, clients_now=len(self.clients),
                           snapshot_bytes=sum(map(len, self.snapshot.chunks)) if self.snapshot is not None else 0,
                           snapshot_done=self.snapshot is not None and self.snapshot.done),
        }

    def run(self, duration_s: float | None = None) -> None:
        self.handler.run(self.config.duration_s if duration_s is None else duration_s)

    def stop(self) -> None:
        self.handler.stop()

    def log_stats(self) -> None:
        self.handler.log_stats()

    def _log_server_stats(self) -> None:
        event(log, "stats", journal_first=self.journal.first_sequence, journal_next=self.journal.next_sequence,
              **{k: v for k, v in self.server.counters.as_dict().items() if v}, **{k: v for k, v in self.figures.items() if v})

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._close(client, "server stopping")
        self.handler.remove_reader(self.udp)
        self.handler.remove_reader(self.listener)
        if self.pool is not None:
            for sock in (self.pool_requests, self.pool_repairs):
                self.handler.remove_reader(sock)
                sock.close()
            self.pool_send.close()
        self.udp.close()
        self.listener.close()
        self.handler.close()
        if self.store is not None:
            self.store.close()
