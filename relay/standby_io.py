"""Hot standby for live relays: two `relay channel` (or live `relay itch`) processes on the same upstream, one
publishing, the other ready to continue its session from the next sequence number when it dies.

The plant's own standby (tickerplant/runner_io.py) regenerates a deterministic input datagram for
datagram; a live relay cannot: its batches follow arrival (a datagram recovered by NACK is delivered
in other runs than one that arrived in order). What is deterministic is the message stream itself,
so this standby works message by message, with the same role decisions (tickerplant/standby.py's
`StandbyCore`: no coordinator, silence on both feeds is the failure signal, priorities, split brain):

1. Every relay of the group computes its output messages from the upstream. The one ACTIVE
   publishes them in the group's session; a STANDBY keeps them in a window (`window_messages`),
   numbered as the active numbers them: sequence 1 is the start-of-session event, message k of
   the stream is sequence k + 2.
2. A standby mirrors the active's A and B feeds: its session, how far it has published, and its
   messages, each compared with the standby's own at the same sequence. One that differs is a
   divergence: that standby never continues the session (taking over, it starts a new one, so the
   handlers see a session change, never mixed data).
3. Taking over at `next` (the active silent past the takeover wait): the plant continues the
   session from `next` and publishes the window from there, and then everything new. A standby
   behind the active keeps the active's messages it has not computed yet and compares them as it
   computes them; taking over behind, it publishes nothing new until it has computed (and
   compared) up to `next`, and a difference then starts a new session instead.
4. A message the window no longer holds cannot be published in order: the takeover starts a new
   session instead (loudly), as for a divergence.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from typing import Any

from decoders import CODECS, SCHEMA_FINGERPRINT, SCHEMA_TAG, DecodeError, make_session
from decoders.moldudp64 import END_OF_SESSION_COUNT, HEARTBEAT_COUNT, decode_datagram
from linehandler.handler_io import LineHandler
from mdcommon.logs import event
from mdcommon.mcast_recv_io import open_receiver
from tickerplant.config import PlantConfig
from tickerplant.plant_io import Plant, session_instance_for
from tickerplant.standby import ENDED, STANDBY, StandbyCore, StartSession, StepBack, TakeOver

__all__ = ["RelayStandby"]

log = logging.getLogger("relay")
FIRST_MESSAGE = 2  # sequence 1 is the start-of-session event


class RelayStandby:
    """The relay's plant as one of a hot-standby group; see the module rules."""

    def __init__(self, config: PlantConfig, plant: Plant, handler: LineHandler, window_messages: int = 1_000_000) -> None:
        sb = config.standby
        timeout_ms = sb.takeover_timeout_ms or 3 * config.heartbeat_interval_ms
        self.config = config
        self.plant = plant
        self.core = StandbyCore(sb.priority, int(timeout_ms * 1e6), time.monotonic_ns())
        self.window_max = window_messages
        self.window: deque[tuple] = deque(maxlen=window_messages)
        self.window_first = FIRST_MESSAGE  # sequence of window[0]
        self.generated = FIRST_MESSAGE  # sequence our next computed message would have
        self.mirror_checked = FIRST_MESSAGE  # mirrored messages below this were compared (or were not ours to compare)
        self.skip = 0  # after a takeover ahead of us: our next computed messages the active already published
        self.skip_seq = 0  # the sequence of the next of those
        self.ahead: dict[int, tuple] = {}  # the active's messages we have not computed yet, compared when we do (bounded)
        self.ahead_max = window_messages
        self.figures = {"mirrored_datagrams": 0, "compared": 0, "mismatched": 0, "unverified": 0, "published_on_takeover": 0}
        plant.sending = False
        self.rx: list[socket.socket] = []
        for fc in (config.feed_a, config.feed_b):
            sock, _ = open_receiver(fc.interface, fc.group, fc.port, sb.mirror_rcvbuf_bytes)
            self.rx.append(sock)
            handler.add_reader(sock, lambda s, mask, now: self._drain(s, now))
        self.handler = handler
        self.buf = bytearray(65536)
        self.view = memoryview(self.buf)

    # -- our messages -----------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.plant.sending

    def publish(self, msgs: list[tuple]) -> None:
        """The relay's next output messages, in order: published while active, else kept to continue from."""
        if self.active:
            if self.skip:  # taken over ahead of what we had computed: the active published these already
                n = min(self.skip, len(msgs))
                for m in msgs[:n]:
                    self._check(self.skip_seq, m)
                    self.skip_seq += 1
                self.skip -= n
                msgs = msgs[n:]
                if self.core.diverged:
                    self.skip = 0
                    self._start(self.core.instance + 1, "the messages the active relay published before it stopped differ from ours")
                if not msgs:
                    return
            self.plant.publish_many(msgs)
            self.plant.flush()
            self.core.on_published(self.plant.sequencer.next_sequence)
            return
        over = len(self.window) + len(msgs) - self.window_max  # the deque drops as many from its head
        if over > 0:
            self.window_first += over
        self.window.extend(msgs)
        if self.ahead:
            for i, m in enumerate(msgs):
                self._check(self.generated + i, m)
        self.generated += len(msgs)

    def _check(self, seq: int, mine: tuple) -> None:
        """Our message `seq`, computed now: compare it with the active's if it came ahead of us."""
        theirs = self.ahead.pop(seq, None)
        if theirs is not None:
            self._verdict(seq, mine, theirs)

    # -- the active relay's feeds -----------------------------------------------------------

    def _drain(self, sock: socket.socket, now: int) -> None:
        plant = self.plant
        for _ in range(256):
            try:
                n, src = sock.recvfrom_into(self.buf)
            except BlockingIOError:
                return
            if src[1] in plant.own_ports:
                continue  # our own datagrams looped back
            data = self.view[:n]
            try:
                session, seq, count, msgs = decode_datagram(data, CODECS)
            except DecodeError:
                continue
            if session[: len(SCHEMA_TAG)] != SCHEMA_TAG:
                continue
            self.figures["mirrored_datagrams"] += 1
            if count == HEARTBEAT_COUNT:
                actions = self.core.on_peer(session, seq, False, now)
            elif count == END_OF_SESSION_COUNT:
                actions = self.core.on_peer(session, seq, True, now)
            else:
                actions = self.core.on_peer(session, seq + count, False, now)
                if session == self.core.session and not self.active:
                    self._compare(seq, msgs)
            self._act(actions, now)

    def _compare(self, seq: int, msgs: list[tuple]) -> None:
        for i, m in enumerate(msgs):
            s = seq + i
            if s < FIRST_MESSAGE or s < self.mirror_checked:
                continue
            if s >= self.generated:  # the active is ahead of us: compared when we compute it
                if len(self.ahead) < self.ahead_max:
                    self.ahead[s] = m
                else:
                    self.figures["unverified"] += 1
                continue
            self.mirror_checked = s + 1
            if s < self.window_first:
                self.figures["unverified"] += 1  # no longer held
                continue
            self._verdict(s, self.window[s - self.window_first], m)

    def _verdict(self, seq: int, mine: tuple, theirs: tuple) -> None:
        self.figures["compared"] += 1
        if mine == theirs:
            return
        self.figures["mismatched"] += 1
        if not self.core.diverged:
            event(log, "standby_diverged", logging.ERROR, sequence=seq,
                  detail="the active relay published another message here than this relay computed: it will not "
                         "continue this session (a new one if it must take over)")
        self.core.on_divergence()

    # -- roles -----------------------------------------------------------------------------

    def tick(self, now: int) -> int | None:
        """Run the role timers; return the next deadline."""
        nt = self.core.next_timer()
        if nt is not None and now >= nt:
            self._act(self.core.on_timer(now), now)
        return self.core.next_timer()

    def _act(self, actions: list, now: int) -> None:
        for a in actions:
            if isinstance(a, TakeOver):
                self._take_over(a)
            elif isinstance(a, StartSession):
                self._start(a.instance, a.reason)
            elif isinstance(a, StepBack):
                self._step_back(a)
        if self.core.state == STANDBY and self.core.session is not None and self.plant.session != self.core.session and not self.active:
            self.plant.reset_session(self.core.session)
            self.mirror_checked = FIRST_MESSAGE
            self.ahead.clear()
            event(log, "mirroring", session=self.core.session.decode())

    def _start(self, instance: int, reason: str) -> None:
        """No active relay (start-up), or we cannot continue its session: a session of our own, from our first message."""
        if instance < 0:
            instance = session_instance_for(self.config.session_instance, self.config.state_file, time.time())
        plant = self.plant
        plant.reset_session(make_session(SCHEMA_FINGERPRINT, instance))
        plant.sending = True
        plant.start()
        held = list(self.window)
        complete = self.window_first == FIRST_MESSAGE
        self.window.clear()
        if held:
            plant.publish_many(held)
            plant.flush()
        self.core.started(plant.session, plant.sequencer.next_sequence)
        event(log, "publishing", logging.WARNING if self.core.takeovers > 1 else logging.INFO, session=plant.session.decode(),
              reason=reason, messages_from_window=len(held), complete=complete)

    def _take_over(self, a: TakeOver) -> None:
        nxt = a.next_sequence
        if nxt < self.window_first:
            event(log, "takeover_impossible", logging.ERROR, next_sequence=nxt, window_first=self.window_first,
                  detail="the messages from where the active relay stopped are no longer held: a new session instead")
            self.core.on_divergence()
            self._start(self.core.instance + 1, "the window no longer holds where the active relay stopped")
            return
        plant = self.plant
        plant.reset_session(a.session, max(nxt, FIRST_MESSAGE))
        plant.sending = True
        held = list(self.window)[max(nxt, FIRST_MESSAGE) - self.window_first:]
        self.window.clear()
        self.window_first = self.generated
        behind = max(0, nxt - self.generated)  # the active published messages we have not computed yet
        if held:
            plant.publish_many(held)
            plant.flush()
        self.skip, self.skip_seq = behind, self.generated  # checked against theirs as we compute them; nothing new leaves before
        self.figures["published_on_takeover"] += len(held)
        self.core.on_published(plant.sequencer.next_sequence)
        event(log, "took_over", logging.WARNING, session=a.session.decode(), next_sequence=nxt, silent_ms=f"{a.silent_ns / 1e6:.1f}",
              published_at_once=len(held), behind=behind)

    def _step_back(self, a: StepBack) -> None:
        self.plant.sending = False
        self.window.clear()
        self.generated = self.window_first = self.plant.sequencer.next_sequence  # what we computed next has this sequence
        event(log, "stepped_back", logging.WARNING, reason=a.reason, peer_next=a.peer_next, own_next=a.own_next)

    @property
    def ended(self) -> bool:
        return self.core.state == ENDED

    def close(self) -> None:
        for sock in self.rx:
            self.handler.remove_reader(sock)
            sock.close()

    def status(self) -> dict[str, Any]:
        return {**self.core.status(), **self.figures, "window_messages": len(self.window), "generated_next": self.generated}
