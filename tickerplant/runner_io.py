"""The plant daemon's loop: the input paced in batches, the plant, and the hot standby's mirror.

One selector serves the status socket, the re-request socket and (hot standby) the two
mirror sockets; the clock is read once per turn. The decisions of the standby protocol
are `StandbyCore`'s (tickerplant/standby.py); this shell only performs them:

- mirror: every datagram on A or B that is not our own (source port of our senders from
  a local address) goes to the core; data datagrams are kept by first sequence to be
  compared with the ones our shadow generates (same bytes expected: docs/standby.md);
- shadow: while STANDBY the plant publishes the same input into its sequencer, journal
  and image with sending switched off, up to the last sequence a peer sent; datagrams it
  generated beyond it wait in `pending`;
- takeover: catch up, send `pending` from the peer's next sequence on, switch sending on;
- step back and handover: switch sending off; the shadow goes on.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import time
from typing import Any

from decoders import CODECS, SCHEMA_FINGERPRINT, SCHEMA_TAG, DecodeError, make_session
from decoders.moldudp64 import END_OF_SESSION_COUNT, HEADER, HEARTBEAT_COUNT, decode_header, decode_messages, encode_heartbeat
from mdcommon.daemon_io import quiet_collector, tighten_timer_slack
from mdcommon.logs import event
from mdcommon.mcast_recv_io import open_receiver
from mdcommon.status_io import StatusServer
from mdcommon.validate_io import ConfigError, check_feed, check_interface_address, check_port, check_unicast_port_free

from .config import PlantConfig
from .plant_io import Plant, session_instance_for
from .source import FileFeed, RateSchedule, SyntheticFeed, SyntheticMarket
from .standby import ENDED, STANDBY, StandbyCore, StartSession, StepBack, TakeOver

__all__ = ["PlantRunner", "install_signals", "MAX_BATCH_PER_LOOP"]

log = logging.getLogger("tickerplant")
MAX_BATCH_PER_LOOP = 2000  # messages generated per loop turn (whole batches), so timers and signals stay timely
BULK_NS_PER_MESSAGE = SyntheticFeed.NS_PER_INSTRUMENT  # the pace of a batch larger than that (a directory, a file)
MIRROR_KEPT = 16384  # mirrored datagrams waiting for the shadow to generate theirs
_TAG_LENGTH = len(SCHEMA_TAG)
_header = HEADER.unpack_from
_NO_SESSION = b"-" * 10  # a standby's session until it hears the group's (no real session is all dashes)


def _count(d: bytes) -> int:
    return _header(d)[2]  # the schema's header layout, not offsets written again here


def _first(d: bytes) -> int:
    return _header(d)[1]


class PlantRunner:
    """`python -m tickerplant`'s loop; `stop()` (signal) ends it, `handover()` (SIGUSR1) hands over."""

    def __init__(self, config: PlantConfig, feed_factory: Any = None) -> None:
        """`feed_factory(origin_ns)`: an input of the source feed protocol (tickerplant/source.py) instead of the
        configured source (a relay's normalized upstream)."""
        self.config = config
        self.feed_factory = feed_factory
        self.stopping = False
        self.handover_requested = False
        sb = config.standby
        self.core: StandbyCore | None = None
        session = None
        if sb.enabled:
            timeout_ms = sb.takeover_timeout_ms or 3 * config.heartbeat_interval_ms
            self.core = StandbyCore(sb.priority, int(timeout_ms * 1e6), time.monotonic_ns())
            session = _NO_SESSION
        self.plant = Plant(config, session)
        if self.core is not None:
            self.plant.sending = False
        self.feed: SyntheticFeed | FileFeed | None = None
        self.batch_ns = max(config.max_batch_delay_us, 50) * 1000
        self.spin_s = max(config.spin_us, 0) / 1e6
        self.wall_minus_mono = time.time_ns() - time.monotonic_ns()
        self.sel = selectors.DefaultSelector()
        self.status: StatusServer | None = None
        if config.status_socket:
            self.status = StatusServer(config.status_socket, self.snapshot)
            self.sel.register(self.status.sock, selectors.EVENT_READ, "status")
        if self.plant.request_sock is not None:
            self.sel.register(self.plant.request_sock, selectors.EVENT_READ, "requests")
        self.rx: list[tuple[str, socket.socket]] = []
        if self.core is not None:
            for name, fc in (("A", config.feed_a), ("B", config.feed_b)):
                sock, _ = open_receiver(fc.interface, fc.group, fc.port, sb.mirror_rcvbuf_bytes)
                self.rx.append((name, sock))
                self.sel.register(sock, selectors.EVENT_READ, name)
        self.buf = bytearray(65536)
        self.view = memoryview(self.buf)
        self.local_addresses: dict[str, bool] = {}
        self.mirror: dict[int, bytes] = {}  # first sequence -> a peer's datagram, until our shadow generated its own
        self.pending: dict[int, bytes] = {}  # first sequence -> a datagram our shadow generated that no peer sent yet
        self.figures = {"mirrored_datagrams": 0, "own_datagrams_seen": 0, "foreign_datagrams": 0, "mirror_malformed": 0,
                        "shadow_matched": 0, "shadow_mismatched": 0, "shadow_unverified": 0, "resent_on_takeover": 0}
        self.session_started = False  # the start-of-session event of the current session is sequenced
        self.origin_shared = True  # the input's origin is the group's (configured, or learned from the stream)
        self.tickers: list[Any] = []

    # -- clock and input ------------------------------------------------------

    def wall_ns(self, mono_ns: int) -> int:
        return mono_ns + self.wall_minus_mono

    def _make_feed(self, origin_ns: int) -> SyntheticFeed | FileFeed | None:
        src = self.config.source
        if self.feed_factory is not None:
            return self.feed_factory(origin_ns)
        if src.kind == "synthetic":
            return SyntheticFeed(SyntheticMarket(src.instruments, src.seed, src.price_exponent),
                                 RateSchedule(src.rate, src.burst_multiplier, src.burst_seconds), self.batch_ns, origin_ns)
        if src.kind == "file":
            return FileFeed(src.path, origin_ns)
        return None

    def _publish_batch(self, msgs: list[tuple]) -> None:
        """One whole batch, then a flush: datagram boundaries depend on the messages only.

        A batch of more than MAX_BATCH_PER_LOOP messages (the instrument directory, a whole input file) leaves
        paced at BULK_NS_PER_MESSAGE (the 3 µs an instrument the synthetic market's opening leaves for its
        directory): sent at once, 200,000 directory entries overran the receive buffers of the mirror and of
        every handler, and the mirror lost part of the directory it serves images from. Pacing changes when
        the datagrams leave, never what they hold."""
        plant = self.plant
        paced = plant.sending and len(msgs) > MAX_BATCH_PER_LOOP
        t0 = time.monotonic_ns()
        for i in range(0, len(msgs), MAX_BATCH_PER_LOOP):
            if paced and i:
                wait_ns = t0 + i * BULK_NS_PER_MESSAGE - time.monotonic_ns()
                if wait_ns > 0:
                    time.sleep(wait_ns / 1e9)
            plant.publish_many(msgs[i : i + MAX_BATCH_PER_LOOP])
        plant.flush()

    def _generate(self, until_sequence: int | None, due_batches: int, budget: int) -> int:
        """Sequence input batches: up to `until_sequence` (shadow) or the due ones (active)."""
        feed, plant = self.feed, self.plant
        if feed is None:
            return 0
        if not self.session_started:
            plant.start(feed.origin_ns)
            self.session_started = True
        n = 0
        while n < budget and feed.next_batch < due_batches:
            if until_sequence is not None and plant.sequencer.next_sequence >= until_sequence:
                break
            msgs = feed.next()
            if msgs:
                self._publish_batch(msgs)
            n += len(msgs) + 1
        return n

    # -- sessions -------------------------------------------------------------

    def _start_session(self, instance: int | None, reason: str) -> None:
        """Start a session of our own and publish it from sequence 1."""
        if instance is None or instance < 0:
            instance = session_instance_for(self.config.session_instance, self.config.state_file, time.time())
        session = make_session(SCHEMA_FINGERPRINT, instance)
        self.plant.reset_session(session)
        self.plant.sending = True
        origin = self.config.source.origin_ns or time.time_ns()
        self.origin_shared = bool(self.config.source.origin_ns)  # else ours alone: a peer that started this session too has another
        self.feed = self._make_feed(origin)
        self.session_started = False
        self.mirror.clear()
        self.pending.clear()
        if self.feed is None:
            self.plant.start()
            self.session_started = True
        else:
            self._generate(None, 1, 1 << 62)  # start-of-session event and batch 0 (directory or file)
        if self.core is not None:
            self.core.started(session, self.plant.sequencer.next_sequence)
        event(log, "publishing", session=session.decode(), reason=reason, origin_ns=origin)

    def _adopt(self, session: bytes) -> None:
        """Mirror the group's `session` from its start: the shadow regenerates it once the origin is known."""
        self.plant.reset_session(session)
        self.plant.sending = False
        self.feed = None
        self.origin_shared = True
        self.session_started = False
        self.mirror.clear()
        self.pending.clear()
        if self.config.source.origin_ns:
            self.feed = self._make_feed(self.config.source.origin_ns)
        event(log, "mirroring", session=session.decode())

    def _learn_origin(self, seq: int, data: Any) -> None:
        try:
            msgs = decode_messages(data, _count(data), CODECS)
        except DecodeError:
            self.figures["mirror_malformed"] += 1
            return
        feed = self._make_feed(0)
        if feed is None or not msgs:
            return
        feed.origin_ns = feed.origin_from(seq, msgs[0][1])
        self.feed = feed
        event(log, "origin_learned", origin_ns=feed.origin_ns, from_sequence=seq)

    # -- mirror ---------------------------------------------------------------

    def _is_local(self, ip: str) -> bool:
        known = self.local_addresses.get(ip)
        if known is None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind((ip, 0))
                    known = True
                except OSError:
                    known = False
            self.local_addresses[ip] = known
        return known

    def _drain(self, sock: socket.socket, now: int) -> None:
        core = self.core
        assert core is not None
        plant, view, figures = self.plant, self.view, self.figures
        for _ in range(256):
            try:
                n, src = sock.recvfrom_into(self.buf)
            except BlockingIOError:
                return
            if src[1] in plant.own_ports and self._is_local(src[0]):
                figures["own_datagrams_seen"] += 1
                continue
            data = view[:n]
            try:
                session, seq, count = decode_header(data)
            except DecodeError:
                figures["mirror_malformed"] += 1
                continue
            if session[:_TAG_LENGTH] != SCHEMA_TAG:
                figures["foreign_datagrams"] += 1
                continue
            figures["mirrored_datagrams"] += 1
            if count == HEARTBEAT_COUNT:
                actions = core.on_peer(session, seq, False, now)
            elif count == END_OF_SESSION_COUNT:
                actions = core.on_peer(session, seq, True, now)
            else:
                actions = core.on_peer(session, seq + count, False, now)
            if core.session is not None and core.session != plant.session and core.state == STANDBY:
                self._adopt(core.session)
            if count and count != END_OF_SESSION_COUNT and session == plant.session and not plant.sending:
                if self.feed is None:
                    self._learn_origin(seq, data)
                mine = self.pending.pop(seq, None)
                if mine is not None:
                    self._compare(mine, bytes(data))
                elif seq >= plant.sequencer.next_sequence and len(self.mirror) < MIRROR_KEPT:
                    self.mirror[seq] = bytes(data)  # (a shadow far behind, catching up, compares what fits)
            if actions:
                self._act(actions, now)

    def _compare(self, mine: bytes, theirs: bytes) -> None:
        if mine == theirs:
            self.figures["shadow_matched"] += 1
            return
        self.figures["shadow_mismatched"] += 1
        assert self.core is not None
        if not self.core.diverged:
            event(log, "standby_diverged", logging.ERROR, session=self.plant.session.decode(), first_sequence=_first(mine),
                  detail="the datagram this plant generated differs from the one the active plant sent; "
                         "it will not continue this session (a new one if it must take over)")
        self.core.on_divergence()

    def _sort_withheld(self) -> None:
        """Shadow datagrams: compare with the mirrored ones, keep the ones no peer sent yet."""
        plant, core = self.plant, self.core
        assert core is not None
        for d in plant.withheld:
            c = _count(d)
            if c in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT):
                continue
            f = _first(d)
            theirs = self.mirror.pop(f, None)
            if theirs is not None:
                self._compare(d, theirs)
            elif f + c <= core.peer_next:
                self.figures["shadow_unverified"] += 1  # sent by the peer, but not seen starting here (lost, or packed otherwise)
            else:
                self.pending[f] = d
        plant.withheld.clear()
        if len(self.mirror) >= MIRROR_KEPT:
            nxt = plant.sequencer.next_sequence
            self.mirror = {k: v for k, v in self.mirror.items() if k >= nxt}  # what the shadow passed unmatched

    # -- actions ---------------------------------------------------------------

    def _act(self, actions: list, now: int) -> None:
        for a in actions:
            if isinstance(a, TakeOver):
                self._take_over(a, now)
            elif isinstance(a, StartSession):
                self._start_session(a.instance, a.reason)
            elif isinstance(a, StepBack):
                self.plant.sending = False
                event(log, "stepped_back", logging.WARNING, reason=a.reason, peer_next=a.peer_next, own_next=a.own_next)
                assert self.core is not None and self.core.session is not None
                if not self.origin_shared and self.core.session == self.plant.session:
                    # we started this session with an origin of our own (two cold starts): regenerate it with the other's
                    self._adopt(self.core.session)

    def _take_over(self, a: TakeOver, now: int) -> None:
        plant = self.plant
        if self.feed is None:  # the peer sent nothing but heartbeats at the start: the input starts now
            self.feed = self._make_feed(self.config.source.origin_ns or time.time_ns())
        self._generate(a.next_sequence, 1 << 62, 1 << 62)  # catch up whatever it costs: nothing is sent meanwhile
        self._sort_withheld()
        plant.sending = True
        resend = [d for f, d in sorted(self.pending.items()) if f + _count(d) > a.next_sequence]
        self.pending.clear()
        self.mirror.clear()
        if resend:
            plant._send_all(resend)
        else:
            plant._send_all([encode_heartbeat(plant.session, plant.sequencer.next_sequence)])  # we are alive: other standbys stay
        self.figures["resent_on_takeover"] += sum(_count(d) for d in resend)
        assert self.core is not None
        self.core.on_published(plant.sequencer.next_sequence)
        event(log, "took_over", logging.WARNING, session=a.session.decode(), next_sequence=a.next_sequence,
              silent_ms=f"{a.silent_ns / 1e6:.1f}", sent_at_once=sum(_count(d) for d in resend),
              generated_next=plant.sequencer.next_sequence)

    def handover(self) -> None:
        self.handover_requested = True

    def stop(self) -> None:
        self.stopping = True

    # -- loop -------------------------------------------------------------------

    def run(self, duration_s: float = 0.0) -> None:
        plant, core = self.plant, self.core
        tighten_timer_slack()  # batches are due every max_batch_delay_us: wake for them on time
        quiet_collector()
        start = time.monotonic_ns()
        duration_ns = int(duration_s * 1e9)
        if core is None:
            self._start_session(None, "no hot standby")
        else:
            core.started_ns = start  # the start-up listen counts from now, not from the sockets' creation
        while not self.stopping:
            now = time.monotonic_ns()
            if duration_ns and now - start >= duration_ns:
                break
            wake: list[int] = []
            if core is not None:
                nt = core.next_timer()
                if nt is not None and now >= nt:
                    self._dispatch(0.0)  # what the feeds already delivered counts before silence is judged
                    now = time.monotonic_ns()
                core.regenerable = self.feed is not None or core.peer_next <= 1  # no origin learned: cannot regenerate the session
                self._act(core.on_timer(now), now)
                if core.state == ENDED:  # another plant of the group ended the session: nothing left to publish
                    event(log, "group_session_ended", session=plant.session.decode())
                    break
                nt = core.next_timer()
                if nt is not None:
                    wake.append(nt)
                if self.handover_requested:
                    self.handover_requested = False
                    if core.handover(now):
                        plant.sending = False
                        event(log, "handed_over", logging.WARNING, next_sequence=plant.sequencer.next_sequence)
            busy = False
            feed = self.feed
            if plant.sending:
                if feed is not None:
                    due = feed.due_batches(self.wall_ns(now))
                    self._generate(None, due, MAX_BATCH_PER_LOOP)
                    busy = feed.next_batch < due
                    nb = feed.batch_due_ns(feed.next_batch) - self.wall_minus_mono
                    wake.append(nb)
                deadline = plant.poll()
                if deadline is not None:
                    wake.append(deadline)
                if core is not None:
                    core.on_published(plant.sequencer.next_sequence)
            elif core is not None and core.state == STANDBY and feed is not None:
                self._generate(core.peer_next, 1 << 62, MAX_BATCH_PER_LOOP)
                self._sort_withheld()
                busy = plant.sequencer.next_sequence < core.peer_next
            for tick in self.tickers:
                w = tick(now)
                if w is not None:
                    wake.append(w)
            if duration_ns:
                wake.append(start + duration_ns)
            timeout = 0.0 if busy else max(0.0, (min(wake) - time.monotonic_ns()) / 1e9) if wake else 0.5
            if 0.0 < timeout < 0.002 and plant.sending:
                # epoll waits whole milliseconds (rounded up): a batch due sooner would leave up to 1 ms late.
                # Sleep precisely instead; the sockets wait that long (split-brain news, status: harmless)
                due_ns = time.monotonic_ns() + int(timeout * 1e9)
                if timeout > self.spin_s:
                    time.sleep(timeout - self.spin_s)
                while time.monotonic_ns() < due_ns:  # spin_us: the last stretch awake, off the scheduler's wake-up
                    pass
                timeout = 0.0
            self._dispatch(min(timeout, 0.5))

    def _dispatch(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout=timeout):
            what = key.data
            if what == "status":
                assert self.status is not None
                self.status.on_readable()
            elif what == "requests":
                self.plant.serve_requests()
            else:
                self._drain(key.fileobj, time.monotonic_ns())

    def finish(self) -> None:
        """End of the daemon: the active plant ends the session (end-of-session linger); a standby just closes."""
        try:
            if self.plant.sending and not (self.core is not None and self.core.state == ENDED):
                if self.core is not None:
                    self.core.on_session_ended()
                self.plant.stop()
            else:
                self.plant.close()
        finally:
            for _, sock in self.rx:
                sock.close()
            if self.status is not None:
                self.status.close()
            self.sel.close()

    def snapshot(self) -> dict[str, Any]:
        st = self.plant.status()
        if self.core is not None:
            st["standby"] = {**self.core.status(), **self.figures, "pending_datagrams": len(self.pending),
                             "mirror_datagrams": len(self.mirror)}
        return st


def install_signals(runner: PlantRunner) -> None:
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    signal.signal(signal.SIGUSR1, lambda *_: runner.handover())



def stats_line(plant: Plant, elapsed_s: float, last: dict[str, int], interval_s: float) -> None:
    for name, _, _, counters in plant.feeds:
        now = counters.as_dict()
        rate = (now["messages"] - last.get(name, 0)) / interval_s if interval_s > 0 else 0.0
        last[name] = now["messages"]
        event(log, "stats", feed=name, uptime_s=f"{elapsed_s:.1f}", msg_per_s=f"{rate:.0f}", next_sequence=plant.sequencer.next_sequence,
              **{k: v for k, v in now.items() if v})


def validate(config: PlantConfig, embedded: bool = False) -> None:
    """`embedded`: the plant of a relay, whose input is the relay's upstream (its standby is the relay's, relay/standby_io.py)."""
    for name, feed in (("feed_a", config.feed_a), ("feed_b", config.feed_b)):
        check_feed(feed.interface, feed.group, feed.port, name)
        check_interface_address(feed.interface, feed.source_address, f"{name}.source_address")
        if not 0 <= feed.ttl <= 255:
            raise ConfigError(f"{name}.ttl {feed.ttl} outside 0..255")
    if (config.feed_a.group, config.feed_a.port) == (config.feed_b.group, config.feed_b.port) and config.feed_a.interface == config.feed_b.interface:
        raise ConfigError("feed_a and feed_b use the same interface, group and port: receivers could not tell them apart")
    if config.source.kind == "file" and not config.source.path:
        raise ConfigError("source.kind = \"file\" needs source.path")
    if config.heartbeat_interval_ms <= 0:
        raise ConfigError("heartbeat_interval_ms must be positive")
    sb = config.standby
    if sb.enabled:
        if config.source.kind == "none" and not embedded:
            raise ConfigError("standby.enabled needs a deterministic input: source.kind \"synthetic\" or \"file\"")
        if sb.priority < 0:
            raise ConfigError("standby.priority must be >= 0")
        if sb.takeover_timeout_ms < 0:
            raise ConfigError("standby.takeover_timeout_ms must be 0 (3 × heartbeat) or positive")
        if sb.takeover_timeout_ms and sb.takeover_timeout_ms < 2 * config.heartbeat_interval_ms:
            raise ConfigError(f"standby.takeover_timeout_ms {sb.takeover_timeout_ms:g} is shorter than twice heartbeat_interval_ms "
                              f"{config.heartbeat_interval_ms:g}: a standby would take over whenever the active plant is idle")
        if sb.takeover_timeout_ms and sb.takeover_timeout_ms < 2 * config.max_batch_delay_us / 1000:
            raise ConfigError("standby.takeover_timeout_ms must be at least twice max_batch_delay_us")
    if config.request_address:
        check_port(config.request_port, "request_port")
        check_unicast_port_free(config.request_address, config.request_port, what="request socket")


def serve(config: PlantConfig, feed_factory: Any = None, setup: Any = None) -> int:
    """`python -m tickerplant run` after its configuration: the runner with signals, metrics, statistics lines,
    and the end of session on the way out. For daemons built on a plant (relays): `feed_factory` (see PlantRunner)
    and `setup(runner)`, called once the runner exists (to add tickers)."""
    runner = PlantRunner(config, feed_factory)
    if setup is not None:
        setup(runner)
    install_signals(runner)
    plant = runner.plant
    metrics = None
    if config.metrics_port:
        from mdcommon.metrics_io import Metrics
        from retransmit.server import SERVER_COUNTERS

        from .counters import FEED_COUNTERS

        metrics = Metrics("tickerplant", [FEED_COUNTERS, SERVER_COUNTERS], config.metrics_port, config.metrics_address)
    start = time.monotonic_ns()
    stats_ns = int(config.stats_interval_s * 1e9)
    clock = {"stats": start, "metrics": 0}
    last_counts: dict[str, int] = {}

    def periodic(now: int) -> int | None:
        if metrics is not None and now - clock["metrics"] >= 1_000_000_000:
            metrics.publish(runner.snapshot())
            clock["metrics"] = now
        if stats_ns and now - clock["stats"] >= stats_ns:
            stats_line(plant, (now - start) / 1e9, last_counts, (now - clock["stats"]) / 1e9)
            clock["stats"] = now
        return clock["stats"] + stats_ns if stats_ns else None

    runner.tickers.append(periodic)
    event(log, "plant_started", session=plant.session.decode() if plant.sending else "(standby: the group's)",
          feed_a=f"{config.feed_a.interface}/{config.feed_a.group}:{config.feed_a.port}",
          feed_b=f"{config.feed_b.interface}/{config.feed_b.group}:{config.feed_b.port}", source=config.source.kind,
          **({"standby_priority": config.standby.priority} if config.standby.enabled else {}))
    try:
        runner.run(config.duration_s)
    finally:
        runner.finish()
        if metrics is not None:
            metrics.publish(runner.snapshot())
            metrics.close()
    end = time.monotonic_ns()
    stats_line(plant, (end - start) / 1e9, {}, (end - start) / 1e9)
    event(log, "plant_stopped", session=plant.session.decode(), published=plant.sequencer.next_sequence - 1,
          **({"role": runner.core.state} if runner.core is not None else {}))
    return 0
