"""Hot standby: which plant of a group publishes, decided from the feeds alone (sans-I/O).

Every plant of a group consumes the same deterministic input and listens to both feeds.
The one that publishes is ACTIVE; the others are STANDBY: they mirror what the active
plant sends (data and heartbeats), generate the same messages without sending them, and
take over when it has been silent for the takeover wait, from the next sequence number
in the same session, so that line handlers see neither a gap nor a duplicate.

Rules (the shell feeds `on_peer` with every datagram of *another* plant, `on_published`
with its own progress, and calls `on_timer` at `next_timer()`):
1. No coordinator: silence on both feeds is the only failure signal. A STANDBY plant
   takes over after `takeover_wait_ns` = takeover timeout × max(1, priority) without a
   datagram of the group's session, so with several standbys the lowest priority number
   goes first and the others see it and stay.
2. Start-up listens first (LISTENING, takeover timeout × (1 + priority)): a plant that
   hears an active plant becomes its standby, whatever its priority, so a restarted old
   primary never interrupts its successor. Hearing nobody, it starts the session.
3. A plant continues the session it mirrors; a newer session instance of the schema
   replaces an older one (the handlers follow the newer one too).
4. Split brain: an ACTIVE plant that sees another active plant of its session ahead of it
   (the other's next sequence beyond its own) steps back to STANDBY; it has published
   nothing the other has not. At equal position the bytes are identical (deterministic
   input) and harmless; the plant with priority > 0 steps back, priority 0 keeps going.
   An active plant of an older session is ignored; a newer one makes the plant step back.
5. A standby whose generated messages differed from the ones it mirrored (`diverged`)
   never continues that session: taking over, it starts a new session instance, so the
   handlers see a session change, never mixed data.
6. Handover (operator): the active plant finishes the batch in hand, falls silent and
   becomes STANDBY, holding off its own takeover for twice the takeover wait so that a
   standby takes over; alone, it resumes after that pause, still without a gap.
7. End of session from the active plant: the session is over for the whole group; the
   plant goes to ENDED and never takes over or starts a session by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from decoders import parse_session

__all__ = [
    "StandbyCore",
    "TakeOver",
    "StartSession",
    "StepBack",
    "LISTENING",
    "STANDBY",
    "ACTIVE",
    "ENDED",
    "STATES",
]

LISTENING = "LISTENING"
STANDBY = "STANDBY"
ACTIVE = "ACTIVE"
ENDED = "ENDED"

STATES = {
    LISTENING: "starting: listening for an active plant before publishing anything",
    STANDBY: "mirroring an active plant, generating the same messages without sending",
    ACTIVE: "publishing on A and B",
    ENDED: "the group's session ended (end of session seen or sent); nothing more to do",
}


@dataclass(frozen=True, slots=True)
class TakeOver:
    """Publish `session` from `next_sequence` on (everything before it was sent by the peer)."""

    session: bytes
    next_sequence: int
    silent_ns: int


@dataclass(frozen=True, slots=True)
class StartSession:
    """Start a session of our own: `instance` (-1: the configured or time-based one)."""

    instance: int
    reason: str


@dataclass(frozen=True, slots=True)
class StepBack:
    """Stop sending now and mirror the other plant from here on."""

    reason: str
    peer_next: int
    own_next: int


class StandbyCore:
    """The role decision of one plant of a hot-standby group; see the module rules."""

    def __init__(self, priority: int, takeover_timeout_ns: int, now_ns: int) -> None:
        if priority < 0:
            raise ValueError("priority must be >= 0")
        if takeover_timeout_ns <= 0:
            raise ValueError("takeover timeout must be positive")
        self.priority = priority
        self.takeover_timeout_ns = takeover_timeout_ns
        self.takeover_wait_ns = takeover_timeout_ns * max(1, priority)
        self.state = LISTENING
        self.started_ns = now_ns
        self.session: bytes | None = None  # the group's session (mirrored, or ours once active)
        self.instance = -1
        self.peer_next = 0  # one past the last sequence a peer sent in `session` (data or heartbeat)
        self.last_peer_ns: int | None = None  # last datagram of another plant in `session`
        self.own_next = 0  # our next sequence while ACTIVE
        self.hold_until_ns = 0  # after a handover: no takeover before this
        self.diverged = False
        self.regenerable = True  # the shell can regenerate the mirrored session (it knows the input's origin)
        self.takeovers = 0
        self.step_backs = 0
        self.older_session_datagrams = 0

    # -- inputs -------------------------------------------------------------

    def on_peer(self, session: bytes, next_sequence: int, end_of_session: bool, now_ns: int) -> list:
        """A datagram of another plant: data (`next_sequence` = first + count), heartbeat or end of session."""
        if self.state == ENDED:
            return []
        if session != self.session:
            instance = parse_session(session)[1]
            if instance is None:
                return []
            if instance < self.instance:
                self.older_session_datagrams += 1
                return []
            return self._adopt(session, instance, next_sequence, end_of_session, now_ns)
        self.last_peer_ns = now_ns
        if next_sequence > self.peer_next:
            self.peer_next = next_sequence
        if end_of_session:
            self.state = ENDED
            return []
        if self.state == LISTENING:
            self.state = STANDBY
            return []
        if self.state == ACTIVE:
            if next_sequence > self.own_next:
                return self._step_back(f"another active plant is ahead ({next_sequence} > {self.own_next})")
            if next_sequence == self.own_next and self.priority > 0:
                return self._step_back(f"another active plant at the same position {next_sequence}, priority {self.priority} yields")
        return []

    def _adopt(self, session: bytes, instance: int, next_sequence: int, end_of_session: bool, now_ns: int) -> list:
        """A newer session (or the first one heard): it is the group's from now on."""
        was_active = self.state == ACTIVE
        self.session, self.instance = session, instance
        self.peer_next = next_sequence
        self.last_peer_ns = now_ns
        self.diverged = False  # a new session: whatever diverged before is history
        if end_of_session:
            self.state = ENDED
            return [StepBack("the group's newer session ended", next_sequence, self.own_next)] if was_active else []
        self.state = STANDBY
        if was_active:
            self.step_backs += 1
            return [StepBack(f"another plant publishes a newer session {session.decode(errors='replace')}", next_sequence, self.own_next)]
        return []

    def _step_back(self, reason: str) -> list:
        self.state = STANDBY
        self.step_backs += 1
        return [StepBack(reason, self.peer_next, self.own_next)]

    def on_published(self, next_sequence: int) -> None:
        """Our own progress while ACTIVE (the next sequence number we will send)."""
        self.own_next = next_sequence

    def on_divergence(self) -> None:
        """The shell found a mirrored datagram that differs from the one it generated."""
        self.diverged = True

    def on_session_ended(self) -> None:
        """We ended the session ourselves (operator stop)."""
        self.state = ENDED

    def handover(self, now_ns: int) -> bool:
        """Operator: stop publishing (the shell has flushed at a batch boundary) and let a standby continue."""
        if self.state != ACTIVE:
            return False
        self.state = STANDBY
        self.peer_next = max(self.peer_next, self.own_next)
        self.last_peer_ns = now_ns
        self.hold_until_ns = now_ns + 2 * self.takeover_wait_ns
        return True

    # -- timers -------------------------------------------------------------

    def next_timer(self) -> int | None:
        if self.state == LISTENING:
            return self.started_ns + self.takeover_timeout_ns * (1 + self.priority)
        if self.state == STANDBY:
            assert self.last_peer_ns is not None
            return max(self.last_peer_ns + self.takeover_wait_ns, self.hold_until_ns)
        return None

    def on_timer(self, now_ns: int) -> list:
        due = self.next_timer()
        if due is None or now_ns < due:
            return []
        if self.state == LISTENING:
            return self._activate(StartSession(-1, "no active plant heard at start-up"))
        # STANDBY, the active plant silent past the wait
        silent = now_ns - (self.last_peer_ns or now_ns)
        if self.diverged or not self.regenerable:
            why = "diverged from" if self.diverged else "cannot regenerate"
            return self._activate(StartSession(self.instance + 1, f"this plant's input {why} the session it mirrored"))
        self.takeovers += 1
        assert self.session is not None
        self.own_next = self.peer_next
        self.state = ACTIVE
        return [TakeOver(self.session, self.peer_next, silent)]

    def _activate(self, action: StartSession) -> list:
        self.state = ACTIVE
        self.takeovers += 1
        self.session = None  # the shell tells us the session it started (started())
        return [action]

    def started(self, session: bytes, next_sequence: int) -> None:
        """The shell started `session` (after StartSession)."""
        self.session = session
        self.instance = parse_session(session)[1] or 0
        self.own_next = next_sequence
        self.peer_next = 0

    def status(self) -> dict:
        return {"state": self.state, "priority": self.priority, "session": self.session.decode() if self.session else None,
                "peer_next": self.peer_next, "own_next": self.own_next, "diverged": self.diverged, "takeovers": self.takeovers,
                "step_backs": self.step_backs, "older_session_datagrams": self.older_session_datagrams,
                "takeover_wait_ms": self.takeover_wait_ns / 1e6}
