"""The line handler as a library: live sockets around one `HandlerCore` per channel, one loop.

    def on_message(channel, sequence, message): ...
    def on_event(channel, event): ...          # GapEvent, QualityChanged, ImageApplied, ...
    handler = LineHandler(HandlerConfig(), on_message, on_event)
    # or batched: a datagram's messages in one call (message i has sequence first_sequence + i)
    handler = LineHandler(HandlerConfig(), on_event=on_event, on_messages=lambda channel, first_sequence, messages: ...)
    handler.run()                              # until stop() or the configured duration
    handler.replica("ch1").records[7]          # the instrument image, read access

The loop reads the clock once per wakeup, receives with `recvmmsg` (mdcommon/batch_io.py;
`recv_into` without the build) into one preallocated buffer, feeds the cores, performs their actions (NACKs, image fetches)
and sleeps until the earliest core timer. Nothing here decides anything about gaps.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
import selectors
import socket
import struct
import time
from collections.abc import Callable
from typing import IO, Any

from decoders import DecodeError
from decoders.moldudp64 import encode_request
from decoders.pcap import PcapWriter
from decoders.present import message_record
from mdcommon.batch_io import BATCH
from mdcommon.image import Image, write_image
from mdcommon.logs import CoreErrors, event
from mdcommon.mcast_recv_io import open_receiver
from mdcommon.mcast_send_io import set_multicast_out
from mdcommon.metrics_io import Metrics
from mdcommon.status_io import StatusServer
from mdcommon.validate_io import check_rcvbuf

from .config import ChannelConfig, HandlerConfig, channel_table
from .counters import FEED_COUNTERS, STREAM_COUNTERS
from .discovery import IMAGE_QUERY_TIMEOUT_NS, image_query, parse_offer
from .events import (
    BufferOverflow,
    FeedRecovered,
    FeedStale,
    GapEvent,
    ImageApplied,
    ImageFailed,
    QualityChanged,
    Recovered,
    RequestImage,
    SchemaMismatch,
    SendNack,
    SequenceConflict,
    SessionChanged,
    SessionConflict,
    SessionEnded,
    SessionStarted,
)
from .session import HandlerCore, RecoveryPolicy
from .snapshot_io import ImageClient

__all__ = ["LineHandler", "Channel", "policy_from", "parse_address"]

log = logging.getLogger("linehandler")
_LOGGED_EVENTS = (GapEvent, QualityChanged, ImageApplied, ImageFailed, FeedStale, FeedRecovered, SessionStarted,
                  SessionChanged, SessionConflict, SessionEnded, SchemaMismatch, BufferOverflow)
_WARN_EVENTS = (GapEvent, SchemaMismatch, SessionConflict, BufferOverflow, ImageFailed, FeedStale)
_RECORDED_EVENTS = (*_LOGGED_EVENTS, Recovered, SequenceConflict)  # the record file also gets each recovery, with its time


def _per_channel(path: str, channel: str, channels: int) -> str:
    if channels == 1:
        return path
    stem, dot, ext = path.rpartition(".")
    return f"{stem}.{channel}.{ext}" if dot else f"{path}.{channel}"


def parse_address(text: str) -> tuple[str, int]:
    """`host:port` with the host resolved to its IPv4 address once, here: retransmissions are accepted only
    from a configured server's address, and a packet's source is an address, never a name."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    try:
        infos = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        raise ValueError(f"{text!r}: {host!r} does not resolve to an IPv4 address ({exc})") from None
    return infos[0][4][0], int(port)


def policy_from(config: HandlerConfig) -> RecoveryPolicy:
    r = config.recovery
    return RecoveryPolicy(
        gap_wait_min_ns=int(r.gap_wait_min_ms * 1e6),
        gap_wait_max_ns=int(r.gap_wait_max_ms * 1e6),
        request_timeout_ns=int(r.request_timeout_ms * 1e6),
        retries_per_server=r.retries_per_server,
        max_outstanding_requests=r.max_outstanding_requests,
        max_request_messages=r.max_request_messages,
        requests_per_s=r.requests_per_s,
        messages_per_s=r.messages_per_s,
        message_burst=max(r.max_request_messages, r.messages_per_s / 10),
        give_up_ns=int(r.give_up_s * 1e9),
        server_holddown_ns=int(r.server_holddown_s * 1e9),
        coalesce_held_messages=r.coalesce_held_messages,
        group_size_estimate=r.group_size,
        group_backoff_ns=int(r.group_backoff_ms * 1e6),
        max_buffer_messages=r.max_buffer_messages,
        max_buffer_bytes=r.max_buffer_bytes,
        stale_after_ns=int(r.stale_after_ms * 1e6),
        resync_on_unrecoverable=r.resync_on_unrecoverable,
    )


def _plain(v: Any) -> Any:
    return v.decode("ascii", "replace") if isinstance(v, bytes) else v



# Datagrams read from one feed's socket before the loop looks at the other again. 32 kept the A/B order
# closer to arrival but cost a loop turn (timers scan every gap) per 32 datagrams: under correlated loss at
# 500 k msg/s recovery p99 went from 50-70 ms to 230-260 ms (bench/live.py recovery), so 256.
FEED_BATCH_DATAGRAMS = 256
RECV_BATCH = 32  # datagrams per recvmmsg
RECV_SLOT = 65536

class Channel:
    """One channel's sockets, servers and core."""

    def __init__(self, cc: ChannelConfig, config: HandlerConfig, on_message: Callable, on_event: Callable, seed: int | None,
                 on_messages: Callable | None = None) -> None:
        self.name = cc.name
        self.config = cc
        self.nack_addrs = [parse_address(a) for a in cc.nack_servers]
        self.image_addrs = [parse_address(a) for a in cc.image_servers]
        rq, rp = cc.request_group, cc.repair_group
        if bool(rq.group) != bool(rp.group):
            raise ValueError(f"channel {cc.name}: request_group and repair_group go together (set both groups, or neither)")
        # anonymous recovery: server 0 and image server 0 are the request group (the pool), the lists follow
        self.group = bool(rq.group)
        self.request_addr = (rq.group, rq.port) if self.group else None
        now = time.monotonic_ns()
        foreign = {"table": channel_table(cc), "schema_tag": None} if cc.schema else {}  # an exchange's feed: no replica
        self.core = HandlerCore(
            on_message, on_event, policy_from(config), rng=random.Random(seed), nack_servers=len(self.nack_addrs) + self.group,
            image_servers=len(self.image_addrs) + self.group, keep_image=config.keep_image and not cc.schema,
            late_join_image=config.recovery.late_join_image, now_ns=now, on_messages=on_messages, request_group=self.group, **foreign,
        )
        self.socks: dict[str, socket.socket] = {}
        for feed, fc in (("A", cc.feed_a), ("B", cc.feed_b)):
            sock, granted = open_receiver(fc.interface, fc.group, fc.port, config.rcvbuf_bytes, fc.sources)
            warning = check_rcvbuf(config.rcvbuf_bytes, granted)
            if warning:
                event(log, "rcvbuf_capped", logging.WARNING, channel=self.name, feed=feed, detail=warning)
            self.socks[feed] = sock
        self.unicast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.unicast.bind(("0.0.0.0", 0))
        self.unicast.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, config.rcvbuf_bytes)
        self.unicast.setblocking(False)
        self.request_sock: socket.socket | None = None  # other handlers' requests, heard
        self.repair_sock: socket.socket | None = None  # the pool's repairs and rejects
        if self.group:
            self.request_sock, _ = open_receiver(rq.interface, rq.group, rq.port, config.rcvbuf_bytes, rq.sources)
            self.repair_sock, _ = open_receiver(rp.interface, rp.group, rp.port, config.rcvbuf_bytes, rp.sources)
            set_multicast_out(self.unicast, rq.interface, rq.ttl)  # our requests leave through the request group's NIC
        self.discovery_deadline_ns = 0  # an image query is out until then (0: none)
        self.discovery_session = b""
        self.offers_refused = 0
        self.feed_addrs = {"A": (cc.feed_a.group, cc.feed_a.port), "B": (cc.feed_b.group, cc.feed_b.port)}
        self.image_client: ImageClient | None = None
        self.nack_send_errors = 0
        self.unknown_unicast = 0
        self.core_errors = CoreErrors(log, f"handler core, channel {self.name}")

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        for s in (self.request_sock, self.repair_sock):
            if s is not None:
                s.close()
        self.unicast.close()
        if self.image_client is not None:
            self.image_client.close()


class LineHandler:
    """All channels of one handler process, in one loop."""

    def __init__(self, config: HandlerConfig, on_message: Callable[[str, int, tuple], Any] | None = None,
                 on_event: Callable[[str, Any], Any] | None = None, *,
                 on_messages: Callable[[str, int, list | tuple], Any] | None = None) -> None:
        if on_message is not None and on_messages is not None:
            raise ValueError("give on_message (one call per message) or on_messages (one call per datagram), not both")
        self.config = config
        self.app_message = on_message
        self.app_messages = on_messages
        self.app_event = on_event
        self.stopping = False
        self.sel = selectors.DefaultSelector()
        self.buf = bytearray(65536)
        self.view = memoryview(self.buf)
        # recvmmsg: RECV_BATCH datagrams per syscall, each in a 64 KiB slot (any UDP datagram fits whole)
        self.batch_buf = bytearray(RECV_SLOT * RECV_BATCH) if BATCH is not None else None
        self.batch_view = memoryview(self.batch_buf) if self.batch_buf is not None else None
        self._record: IO[str] | None = open(config.record_file, "w") if config.record_file else None  # noqa: SIM115 - closed in close()
        rng = random.Random(config.drop_seed)
        self._drop = {"A": config.drop_a, "B": config.drop_b}
        self._drop_rng = rng
        self.dropped = {"A": 0, "B": 0}
        self.channels: list[Channel] = []
        ccs = config.all_channels()
        for cc in ccs:
            # Each process draws its own gap waits: with one seed for all (it was the drop seed), handlers that lose
            # the same datagram drew the same back-off and NACKed in the same microsecond, and no suppression
            # by a heard request (or spreading of load over servers) can work between them.
            ch = Channel(cc, config, self._message_sink(cc), self._event_sink(cc.name), seed=None,
                         on_messages=self._messages_sink(cc) if on_messages is not None else None)
            self.channels.append(ch)
            for feed, sock in ch.socks.items():
                self.sel.register(sock, selectors.EVENT_READ, (ch, feed))
            self.sel.register(ch.unicast, selectors.EVENT_READ, (ch, "R"))
            if ch.group:
                self.sel.register(ch.request_sock, selectors.EVENT_READ, (ch, "Q"))
                self.sel.register(ch.repair_sock, selectors.EVENT_READ, (ch, "G"))
        self.metrics: Metrics | None = None
        self.snapshot: Callable[[], dict[str, Any]] = self.status  # what the status socket and metrics show
        if config.metrics_port:
            self.metrics = Metrics("linehandler", [FEED_COUNTERS, STREAM_COUNTERS], config.metrics_port, config.metrics_address)
        self.tickers: list[Callable[[int], Any]] = []
        self.wakeups: list[Callable[[], int | None]] = []  # further deadlines (monotonic ns) the loop wakes for, to run the tickers
        self.extra_stats: list[Callable[[], Any]] = []
        self.capture: PcapWriter | None = PcapWriter(config.capture_file, config.capture_max_bytes) if config.capture_file else None
        self.status_server: StatusServer | None = None
        if config.status_socket:
            self.status_server = StatusServer(config.status_socket, lambda: self.snapshot())
            self.sel.register(self.status_server.sock, selectors.EVENT_READ, (None, "status"))

    # -- sinks ------------------------------------------------------------------

    def _message_sink(self, cc: ChannelConfig) -> Callable[[int, tuple], None]:
        name = cc.name
        sink = self._message_sink_plain(cc)
        if not self.config.metrics_port or cc.schema:  # a foreign feed's second field is not our publish time
            return sink
        count = [0]
        now = time.time_ns

        def sampled(seq: int, msg: tuple) -> None:
            sink(seq, msg)
            count[0] += 1
            if count[0] & 63 == 0 and self.metrics is not None:  # 1 in 64: the histogram is not free
                self.metrics.latency.labels(name).observe(max(0, now() - msg[1]) / 1e9)

        return sampled

    def _messages_sink(self, cc: ChannelConfig) -> Callable[[int, list | tuple], None]:
        """The batched sink: the application's on_messages, after the record file and the latency sample."""
        name, table = cc.name, channel_table(cc)
        app = self.app_messages
        assert app is not None
        record = self._record
        if record is None and (not self.config.metrics_port or cc.schema):
            return functools.partial(app, name)
        now = time.time_ns

        def sink(first: int, msgs: list | tuple) -> None:
            if record is not None:
                for i, msg in enumerate(msgs):
                    record.write(json.dumps(message_record(table, msg, channel=name, sequence=first + i)) + "\n")
            if self.metrics is not None and msgs and not cc.schema:  # one sample a datagram
                self.metrics.latency.labels(name).observe(max(0, now() - msgs[0][1]) / 1e9)
            app(name, first, msgs)

        return sink

    def _message_sink_plain(self, cc: ChannelConfig) -> Callable[[int, tuple], None]:
        name, table = cc.name, channel_table(cc)
        app = self.app_message
        record = self._record
        if record is None and app is None:
            return lambda seq, msg: None
        if record is None:
            return functools.partial(app, name)  # a C-level call per message, not a Python frame

        def sink(seq: int, msg: tuple) -> None:
            record.write(json.dumps(message_record(table, msg, channel=name, sequence=seq)) + "\n")
            if app is not None:
                app(name, seq, msg)

        return sink

    def _event_sink(self, name: str) -> Callable[[Any], None]:
        conflicts = {"logged_ns": 0, "since": 0}

        def sink(ev: Any) -> None:
            if isinstance(ev, SequenceConflict):  # one per differing datagram in a split brain: logged at most once a second
                conflicts["since"] += ev.messages
                now = time.monotonic_ns()
                if now - conflicts["logged_ns"] >= 1_000_000_000:
                    event(log, "SequenceConflict", logging.WARNING, channel=name, feed=ev.feed, first=ev.first, last=ev.last,
                          messages_since_last_line=conflicts["since"])
                    conflicts["logged_ns"], conflicts["since"] = now, 0
            if isinstance(ev, _LOGGED_EVENTS):
                fields = {f.name: _plain(getattr(ev, f.name)) for f in dataclasses.fields(ev)}
                event(log, type(ev).__name__, logging.WARNING if isinstance(ev, _WARN_EVENTS) else logging.INFO, channel=name, **fields)
            if isinstance(ev, Recovered) and self.metrics is not None:
                self.metrics.recovery.labels(name).observe(ev.elapsed_ns / 1e9)
            if self._record is not None and isinstance(ev, _RECORDED_EVENTS):
                line = {"channel": name, "event": type(ev).__name__, **{f.name: _plain(getattr(ev, f.name)) for f in dataclasses.fields(ev)}}
                if isinstance(ev, GapEvent):
                    line["gap"] = [ev.first, ev.last]
                self._record.write(json.dumps(line) + "\n")
            if self.app_event is not None:
                self.app_event(name, ev)

        return sink

    # -- loop -------------------------------------------------------------------

    def replica(self, channel: str | None = None) -> Image:
        return self._channel(channel).core.image

    def _channel(self, name: str | None) -> Channel:
        for ch in self.channels:
            if name is None or ch.name == name:
                return ch
        raise KeyError(name)

    def stop(self) -> None:
        self.stopping = True

    def add_reader(self, sock: Any, callback: Callable[[Any, int, int], Any], events: int = selectors.EVENT_READ) -> None:
        """Serve another socket from this loop: `callback(sock, mask, now_ns)` when it is ready."""
        self.sel.register(sock, events, (None, callback))

    def modify_reader(self, sock: Any, callback: Callable[[Any, int, int], Any], events: int) -> None:
        self.sel.modify(sock, events, (None, callback))

    def remove_reader(self, sock: Any) -> None:
        self.sel.unregister(sock)

    def run(self, duration_s: float | None = None) -> None:
        duration = self.config.duration_s if duration_s is None else duration_s
        start = time.monotonic_ns()
        stats_ns = int(self.config.stats_interval_s * 1e9)
        last_stats = start
        last_metrics = 0
        deadline = start + int(duration * 1e9) if duration else None
        while not self.stopping:
            now = time.monotonic_ns()
            if deadline is not None and now >= deadline:
                break
            for ch in self.channels:
                nt = ch.core.next_timer()
                if nt is not None and now >= nt:
                    self._dispatch_ready(0.0)  # what already arrived (the other feed's copy) counts before a gap-wait expires
                    self._act(ch, ch.core.on_timer(now))
                if ch.image_client is not None and ch.image_client.expired():
                    self._image_failed(ch, "image fetch timed out", now)
                if ch.discovery_deadline_ns and now >= ch.discovery_deadline_ns:
                    ch.discovery_deadline_ns = 0
                    self._image_failed(ch, "no pool server offered an image", now)
            busy = False
            if self.metrics is not None and now - last_metrics >= 1_000_000_000:
                self.metrics.publish(self.snapshot())
                last_metrics = now
            for tick in self.tickers:
                busy = bool(tick(now)) or busy  # a ticker with more work to do: don't sleep
            if stats_ns and now - last_stats >= stats_ns:
                self.log_stats()
                last_stats = now
            if self.config.exit_on_session_end and all(ch.core.ended and not ch.core.gaps for ch in self.channels):
                break
            wake = [nt for ch in self.channels if (nt := ch.core.next_timer()) is not None]
            if self.tickers:
                wake.append(now + 50_000_000)  # tickers run at least every 50 ms
            wake += [t for w in self.wakeups if (t := w()) is not None]
            if stats_ns:
                wake.append(last_stats + stats_ns)
            if deadline is not None:
                wake.append(deadline)
            timeout = max(0.0, (min(wake) - time.monotonic_ns()) / 1e9) if wake else 0.5
            if busy:
                timeout = 0.0
            self._dispatch_ready(min(timeout, 0.5))

    def _dispatch_ready(self, timeout: float) -> None:
        for key, mask in self.sel.select(timeout=timeout):
            ch, what = key.data
            if callable(what):
                what(key.fileobj, mask, time.monotonic_ns())
            elif what == "status":
                self.status_server.on_readable()
            elif what == "image":
                self._image_io(ch, mask)
            else:
                self._drain_socket(ch, what, key.fileobj)

    def _drain_socket(self, ch: Channel, feed: str, sock: socket.socket) -> None:
        """Read everything queued on one socket (bounded), feeding the core."""
        if feed == "R":
            self._drain_unicast(ch, sock)
            return
        if feed in ("G", "Q"):
            self._drain_group(ch, feed, sock)
            return
        if self.batch_buf is not None and self.capture is None:
            self._drain_batched(ch, feed, sock)
            return
        view = self.view
        capture = self.capture
        if capture is not None:
            group, port = ch.feed_addrs[feed]
        for _ in range(FEED_BATCH_DATAGRAMS):
            try:
                if capture is None:
                    n = sock.recv_into(self.buf)
                else:
                    n, src = sock.recvfrom_into(self.buf)
                    capture.write(time.time_ns(), src[0], src[1], group, port, view[:n])
            except BlockingIOError:
                return
            self._feed(ch, feed, view[:n], time.monotonic_ns())

    def _drain_batched(self, ch: Channel, feed: str, sock: socket.socket) -> None:
        """As `_drain_socket`, RECV_BATCH datagrams per recvmmsg, stamped with the time the batch was read,
        given to the core a batch at a time (its in-order lane takes runs of them in one native call)."""
        fd, buf, view = sock.fileno(), self.batch_buf, self.batch_view
        recv = BATCH.recv_batch
        core = ch.core
        dropping = self._drop[feed]
        for _ in range(FEED_BATCH_DATAGRAMS // RECV_BATCH):
            lengths = recv(fd, buf, RECV_SLOT, RECV_BATCH)
            now = time.monotonic_ns()
            if dropping:  # injected loss decides datagram by datagram
                off = 0
                for n in lengths:
                    self._feed(ch, feed, view[off : off + abs(n)], now)
                    off += RECV_SLOT
            else:
                actions: list = []
                at = 0
                while at < len(lengths):
                    try:
                        core.on_batch(feed, buf, RECV_SLOT, lengths, now, actions, at)
                        break
                    except Exception as exc:  # as in _feed: counted, logged, that datagram dropped, the rest go on
                        ch.core_errors.record(exc, now)
                        at = core.batch_at + 1
                if actions:
                    self._act(ch, actions)
            if len(lengths) < RECV_BATCH:
                return

    def _feed(self, ch: Channel, feed: str, data: memoryview, now: int) -> None:
        p = self._drop[feed]
        if p and self._drop_rng.random() < p:
            self.dropped[feed] += 1
            return
        try:
            actions = ch.core.on_datagram(feed, data, now)
        except Exception as exc:  # a core bug must not take the daemon down: counted, logged, input dropped
            ch.core_errors.record(exc, now)
            return
        if actions:
            self._act(ch, actions)

    def _drain_group(self, ch: Channel, what: str, sock: socket.socket) -> None:
        """The repair group (G: the pool's repairs and rejects, as retransmissions from server 0) or the request
        group (Q: requests heard)."""
        core = ch.core
        for _ in range(256):
            try:
                n = sock.recv_into(self.buf)
            except BlockingIOError:
                return
            now = time.monotonic_ns()
            try:
                actions = core.on_unicast(self.view[:n], 0, now) if what == "G" else core.on_request_heard(self.view[:n], now)
            except Exception as exc:  # as in _drain_socket
                ch.core_errors.record(exc, now)
                continue
            if actions:
                self._act(ch, actions)

    def _drain_unicast(self, ch: Channel, sock: socket.socket) -> None:
        """Retransmissions and rejects: accepted only from a configured server, by source address (and, while an
        image query is out, a pool server's image offer from any address)."""
        servers = {addr: i + ch.group for i, addr in enumerate(ch.nack_addrs)}
        for _ in range(256):
            try:
                n, addr = sock.recvfrom_into(self.buf)
            except BlockingIOError:
                return
            server = servers.get(addr)
            if server is None:
                if ch.discovery_deadline_ns and self._image_offered(ch, self.view[:n], addr):
                    continue
                ch.unknown_unicast += 1  # not from a server we asked: trust no input
                continue
            now = time.monotonic_ns()
            try:
                actions = ch.core.on_unicast(self.view[:n], server, now)
            except Exception as exc:  # as in _drain_socket
                ch.core_errors.record(exc, now)
                continue
            self._act(ch, actions)

    def _act(self, ch: Channel, actions: list) -> None:
        for a in actions:
            if isinstance(a, SendNack):
                target = ch.request_addr if ch.group and a.server == 0 else ch.nack_addrs[a.server - ch.group]
                try:
                    ch.unicast.sendto(encode_request(a.session, a.sequence, a.count), target)
                except (OSError, ValueError, struct.error) as exc:
                    ch.nack_send_errors += 1
                    event(log, "nack_send_failed", logging.WARNING, channel=ch.name, server=target, error=str(exc))
            elif isinstance(a, RequestImage):
                self._start_image(ch, a)

    # -- images -----------------------------------------------------------------

    def _start_image(self, ch: Channel, a: RequestImage) -> None:
        if ch.image_client is not None or ch.discovery_deadline_ns:
            return
        now = time.monotonic_ns()
        if ch.group and a.server == 0:  # ask the pool who has an image: the first offer wins (_image_offered)
            try:
                ch.unicast.sendto(image_query(a.session), ch.request_addr)
            except OSError as exc:
                self._image_failed(ch, f"image query not sent: {exc}", now)
                return
            ch.discovery_session = a.session
            ch.discovery_deadline_ns = now + IMAGE_QUERY_TIMEOUT_NS
            event(log, "image_query_sent", channel=ch.name, group=f"{ch.request_addr[0]}:{ch.request_addr[1]}")
            return
        self._connect_image(ch, ch.image_addrs[a.server - ch.group], a.session, now)

    def _image_offered(self, ch: Channel, data: memoryview, addr: tuple[str, int]) -> bool:
        """A datagram from an unknown address while an image query is out: an offer of our session is taken."""
        offer = parse_offer(data, ch.discovery_session)
        if offer is None:
            return False
        trusted = ch.config.repair_group.sources
        if trusted and addr[0] not in trusted:
            ch.offers_refused += 1  # the pool is its repair group's sources: an offer from elsewhere is not its
            return False
        ch.discovery_deadline_ns = 0
        host = addr[0] if offer.address == 0 else socket.inet_ntoa(offer.address.to_bytes(4, "big"))
        event(log, "image_offered", channel=ch.name, server=f"{host}:{offer.port}", next_sequence=offer.next_sequence)
        self._connect_image(ch, (host, offer.port), ch.discovery_session, time.monotonic_ns())
        return True

    def _connect_image(self, ch: Channel, addr: tuple[str, int], session: bytes, now: int) -> None:
        try:
            ch.image_client = ImageClient(addr, session, ch.config.image_username, ch.config.image_password)
        except OSError as exc:
            self._image_failed(ch, str(exc), now)
            return
        self.sel.register(ch.image_client.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, (ch, "image"))
        event(log, "image_requested", channel=ch.name, server=f"{addr[0]}:{addr[1]}")

    def _image_io(self, ch: Channel, mask: int) -> None:
        client = ch.image_client
        if client is None:
            return
        now = time.monotonic_ns()
        try:
            if mask & selectors.EVENT_WRITE and not client.connected:
                client.on_writable()
                self.sel.modify(client.sock, selectors.EVENT_READ, (ch, "image"))
                return
            if mask & selectors.EVENT_READ:
                actions = client.on_readable(ch.core, now)
                if client.done:
                    self._close_image(ch)
                self._act(ch, actions)
        except (OSError, DecodeError) as exc:
            self._image_failed(ch, str(exc), now)

    def _close_image(self, ch: Channel) -> None:
        if ch.image_client is not None:
            self.sel.unregister(ch.image_client.sock)
            ch.image_client.close()
            ch.image_client = None

    def _image_failed(self, ch: Channel, reason: str, now: int) -> None:
        self._close_image(ch)
        self._act(ch, ch.core.on_image_failed(reason, now))

    # -- figures ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "daemon": "linehandler",
            "channels": {ch.name: {**ch.core.status(), "nack_send_errors": ch.nack_send_errors, "unknown_unicast": ch.unknown_unicast,
                                  "offers_refused": ch.offers_refused,
                                  "core_errors": ch.core_errors.count}
                         for ch in self.channels},
            "dropped_in_process": self.dropped,
        }

    def log_stats(self) -> None:
        for ch in self.channels:
            core = ch.core
            for i, feed in enumerate(("A", "B", "R")):
                fields = {k: v for k, v in core.feed_counters[i].as_dict().items() if v}
                if fields:
                    event(log, "stats", channel=ch.name, feed=feed, **fields)
            event(log, "stats", channel=ch.name, quality=core.quality, next_sequence=core.expected, buffered=core.buffered,
                  gaps_open=len(core.gaps), **{k: v for k, v in core.counters.as_dict().items() if v})
        for extra in self.extra_stats:
            extra()

    def close(self) -> None:
        for ch in self.channels:
            ch.close()
        if self.status_server is not None:
            self.status_server.close()
        if self.metrics is not None:
            self.metrics.close()
        self.sel.close()
        if self.config.image_file and self.config.keep_image:
            for ch in self.channels:
                write_image(ch.core.image, _per_channel(self.config.image_file, ch.name, len(self.channels)))
        if self._record is not None:
            self._record.write(json.dumps({"final": self.status()}) + "\n")
            self._record.close()
            self._record = None
        if self.capture is not None:
            self.capture.close()
            self.capture = None
