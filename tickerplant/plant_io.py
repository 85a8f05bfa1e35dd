"""The plant as an object: sequencer core + image + journal + the A/B senders.

Applications that normalise their own upstream feed embed it:

    plant = Plant(PlantConfig())
    plant.start()                                        # start-of-session event
    plant.publish((b"Q", time.time_ns(), 1, 1000, 5, 1010, 7))
    plant.poll()                                         # call often: batch delay, heartbeats
    plant.stop()                                         # end of session + linger

Feed independence: every datagram is sent on A then B through separate non-blocking
sockets; a refused send is counted on that feed and never delays or stops the other.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import time
from pathlib import Path
from typing import IO, Any

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.fingerprint import MAX_INSTANCE
from decoders.present import message_record
from mdcommon.batch_io import BATCH
from mdcommon.compact_image import make_image
from mdcommon.logs import CoreErrors, event
from mdcommon.mcast_send_io import SEND_OK, open_sender, send_datagram
from retransmit.journal import Journal
from retransmit.server import RequestServer, ServerLimits

from .config import PlantConfig
from .counters import FEED_COUNTERS
from .sequencer import Sequencer

__all__ = ["Plant", "session_instance_for"]

log = logging.getLogger("tickerplant")
EPOCH_2024_S = 1_704_067_200  # 2024-01-01T00:00:00Z

SEND_CHUNK = 8  # datagrams per sendmmsg before the other feed gets the same ones

_ERRNO_COUNTER = {
    errno.EPERM: FEED_COUNTERS.send_eperm,
    errno.ENOBUFS: FEED_COUNTERS.send_enobufs,
    errno.ENETUNREACH: FEED_COUNTERS.send_enetunreach,
    errno.EWOULDBLOCK: FEED_COUNTERS.send_would_block,
}


def session_instance_for(configured: int, state_file: str, now_s: float) -> int:
    """The configured instance, or seconds since 2024 bumped past the last one remembered."""
    if configured >= 0:
        instance = configured
    else:
        instance = int(now_s) - EPOCH_2024_S
        if state_file:
            try:
                last = int(Path(state_file).read_text().strip() or "-1")
            except FileNotFoundError:
                last = -1
            instance = max(instance, last + 1)
    if not 0 <= instance <= MAX_INSTANCE:
        raise ValueError(f"session instance {instance} outside 0..{MAX_INSTANCE}")
    if state_file:
        Path(state_file).write_text(f"{instance}\n")
    return instance


class Plant:
    """One channel's publisher: see the module docstring."""

    def __init__(self, config: PlantConfig, session: bytes | None = None) -> None:
        self.config = config
        if session is None:
            session = make_session(SCHEMA_FINGERPRINT, session_instance_for(config.session_instance, config.state_file, time.time()))
        self.session = session
        j = config.journal
        self.journal = Journal(j.max_messages, j.max_bytes, int(j.max_age_s * 1e9) if j.max_age_s > 0 else None)
        self.image = make_image() if config.keep_image else None
        self.sequencer = self._new_sequencer()
        self.sending = True  # False: a hot standby's shadow; datagrams go to `withheld` instead of the feeds
        self.withheld: list[bytes] = []
        self.feeds = []
        self.own_ports: set[int] = set()  # the senders' source ports: our own datagrams looped back are not a peer's
        for name, feed in (("A", config.feed_a), ("B", config.feed_b)):
            sock = open_sender(feed.interface, feed.ttl, True, feed.source_address)
            if not feed.source_address:
                sock.bind(("0.0.0.0", 0))  # a port now, not at the first send
            self.own_ports.add(sock.getsockname()[1])
            self.feeds.append((name, sock, (feed.group, feed.port), FEED_COUNTERS.new()))
        self._targets = [(sock.fileno(), addr[0], addr[1]) for _, sock, addr, _ in self.feeds]
        # kept open for the plant's lifetime, closed in close()
        self._record: IO[str] | None = open(config.record_file, "w") if config.record_file else None  # noqa: SIM115
        self.request_server: RequestServer | None = None
        self.request_sock: socket.socket | None = None
        self.request_send_errors = 0
        self.core_errors = CoreErrors(log, "plant's re-request server core")
        if config.request_address:
            self.request_server = RequestServer(self.journal, ServerLimits(max_datagram_bytes=config.max_datagram_bytes), time.monotonic_ns())
            self.request_server.session = self.session
            self.request_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.request_sock.bind((config.request_address, config.request_port))
            self.request_sock.setblocking(False)
        self._last_error_log_ns = [0, 0]

    def _new_sequencer(self, first_sequence: int = 1) -> Sequencer:
        c = self.config
        return Sequencer(self.session, CODECS, max_datagram_bytes=c.max_datagram_bytes, max_batch_delay_ns=c.max_batch_delay_us * 1000,
                         heartbeat_interval_ns=int(c.heartbeat_interval_ms * 1e6), journal=self.journal, first_sequence=first_sequence)

    def reset_session(self, session: bytes, first_sequence: int = 1) -> None:
        """Begin `session` from `first_sequence` (a standby adopting the group's session, or a new one; a relay's
        standby continuing the session its active peer published up to there)."""
        self.session = session
        self.journal.reset(first_sequence)
        self.sequencer = self._new_sequencer(first_sequence)
        if self.image is not None:
            self.image = make_image()
        if self.request_server is not None:
            self.request_server.session = session
        self.withheld.clear()

    # -- publishing ---------------------------------------------------------

    def start(self, timestamp_ns: int | None = None) -> None:
        """The start-of-session event (sequence 1), stamped `timestamp_ns` (default: now)."""
        self.publish(self.sequencer.start_of_session_event(time.time_ns() if timestamp_ns is None else timestamp_ns))
        self._send_all(self.sequencer.flush(time.monotonic_ns()))
        event(log, "session_started", session=self.session.decode(), fingerprint=f"{SCHEMA_FINGERPRINT:016x}",
              **({} if self.sending else {"shadow": "true"}))

    def publish(self, msg: tuple) -> None:
        """Sequence one message (a fast-codec tuple); full datagrams leave at once."""
        seq = self.sequencer.next_sequence
        out = self.sequencer.publish_many((msg,), time.monotonic_ns())
        if self.image is not None:
            self.image.apply(msg)
        if self._record is not None:
            self._record.write(json.dumps(message_record(CODECS, msg, sequence=seq)) + "\n")
        if out:
            self._send_all(out)

    def publish_many(self, msgs: list[tuple]) -> None:
        seq = self.sequencer.next_sequence
        out = self.sequencer.publish_many(msgs, time.monotonic_ns())
        if self.image is not None:
            self.image.apply_many(msgs)
        if self._record is not None:
            for i, m in enumerate(msgs):
                self._record.write(json.dumps(message_record(CODECS, m, sequence=seq + i)) + "\n")
        if out:
            self._send_all(out)

    def poll(self) -> int | None:
        """Run due timers (batch delay, heartbeats); return the next deadline (monotonic ns)."""
        out = self.sequencer.on_timer(time.monotonic_ns())
        if out:
            self._send_all(out)
        return self.sequencer.next_timer()

    def flush(self) -> None:
        self._send_all(self.sequencer.flush(time.monotonic_ns()))

    # -- sending ------------------------------------------------------------

    def _send_all(self, datagrams: list[bytes]) -> None:
        if not self.sending:
            self.withheld += datagrams
            return
        refused: list[dict[int, int]] = [{} for _ in self.feeds]  # per feed: datagram index -> errno
        if BATCH is not None:
            # sendmmsg, A and B in turn SEND_CHUNK datagrams at a time, in one native call: B trails A by at most
            # SEND_CHUNK datagrams, so a loss on one feed is still filled by the other well within the gap-wait
            for i, k, rc in BATCH.send_feeds(datagrams, self._targets, SEND_CHUNK):
                refused[i][k] = rc
        else:
            for k, data in enumerate(datagrams):
                for i, (_, sock, addr, _) in enumerate(self.feeds):
                    rc = send_datagram(sock, data, addr)
                    if rc != SEND_OK:
                        refused[i][k] = rc
        counts = [int.from_bytes(data[18:20], "big") for data in datagrams]
        sizes = list(map(len, datagrams))
        heartbeats, ends = counts.count(0), counts.count(0xFFFF)
        messages = sum(counts) - 0xFFFF * ends
        for i, (name, _, _, counters) in enumerate(self.feeds):
            failed = refused[i]
            v = counters.values
            if not failed:  # every datagram left: the totals at once
                v[FEED_COUNTERS.datagrams] += len(datagrams)
                v[FEED_COUNTERS.bytes] += sum(sizes)
                v[FEED_COUNTERS.heartbeats] += heartbeats
                v[FEED_COUNTERS.end_of_session] += ends
                v[FEED_COUNTERS.messages] += messages
                continue
            for k, (size, count) in enumerate(zip(sizes, counts, strict=True)):
                rc = failed.get(k, SEND_OK)
                if rc == SEND_OK:
                    v[FEED_COUNTERS.datagrams] += 1
                    v[FEED_COUNTERS.bytes] += size
                    if count == 0:
                        v[FEED_COUNTERS.heartbeats] += 1
                    elif count == 0xFFFF:
                        v[FEED_COUNTERS.end_of_session] += 1
                    else:
                        v[FEED_COUNTERS.messages] += count
                else:
                    v[_ERRNO_COUNTER.get(rc, FEED_COUNTERS.send_other_errors)] += 1
                    now = time.monotonic_ns()
                    if now - self._last_error_log_ns[i] > 1_000_000_000:  # at most one line a second per feed
                        self._last_error_log_ns[i] = now
                        event(log, "send_failed", logging.WARNING, feed=name, error=errno.errorcode.get(rc, str(rc)))

    # -- re-requests ----------------------------------------------------------

    def serve_requests(self) -> int:
        """Answer at most `request_max_per_turn` queued re-requests from the journal; never blocks."""
        sock, server = self.request_sock, self.request_server
        if sock is None or server is None:
            return 0
        served = 0
        for _ in range(self.config.request_max_per_turn):
            try:
                data, addr = sock.recvfrom(2048)
            except BlockingIOError:
                break
            served += 1
            now = time.monotonic_ns()
            try:
                answers = server.on_request(data, addr, now)
            except Exception as exc:  # a core bug must not take the plant down: counted, logged, request dropped
                self.core_errors.record(exc, now)
                continue
            for datagram in answers:
                try:
                    sock.sendto(datagram, addr)
                except OSError:
                    self.request_send_errors += 1  # the requester's problem; counted, never retried here
        return served

    # -- end of session -----------------------------------------------------

    def stop(self) -> None:
        """Flush, end-of-session event, then end-of-session packets for the linger; close."""
        now = time.time_ns()
        mono = time.monotonic_ns()
        if self._record is not None:
            end_event = self.sequencer.end_of_session_event(now)
            self._record.write(json.dumps(message_record(CODECS, end_event, sequence=self.sequencer.next_sequence)) + "\n")
        self._send_all(self.sequencer.end_session(mono, now))
        linger_ns = int(self.config.end_of_session_linger_ms * 1e6)
        interval_s = max(self.config.end_of_session_interval_ms, 1.0) / 1e3
        eos = self.sequencer.end_of_session_packet()
        deadline = time.monotonic_ns() + linger_ns
        while True:
            self._send_all([eos])
            if time.monotonic_ns() + interval_s * 1e9 > deadline:
                break
            time.sleep(interval_s)
        event(log, "session_ended", session=self.session.decode(), next_sequence=self.sequencer.next_sequence)
        self.close()

    def close(self) -> None:
        for _, sock, _, _ in self.feeds:
            sock.close()
        self._targets = [(-1, host, port) for _, host, port in self._targets]  # a send after close is refused (EBADF)
        if self.request_sock is not None:
            self.request_sock.close()
        if self._record is not None:
            self._record.close()
            self._record = None

    # -- figures ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "daemon": "tickerplant",
            "session": self.session.decode(),
            "next_sequence": self.sequencer.next_sequence,
            "journal": {"first_sequence": self.journal.first_sequence, "messages": len(self.journal), "bytes": self.journal.nbytes},
            "instruments": len(self.image) if self.image is not None else None,
            "feeds": {name: {"group": f"{addr[0]}:{addr[1]}", **c.as_dict()} for name, _, addr, c in self.feeds},
            "requests": {**self.request_server.counters.as_dict(), "core_errors": self.core_errors.count} if self.request_server else None,
        }
