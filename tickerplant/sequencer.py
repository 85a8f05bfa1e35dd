"""The plant's sans-I/O core: sequence numbers, packing into MoldUDP64 datagrams, heartbeats.

Rules:
1. Sequence numbers are contiguous from `first_sequence` (1 for a new session) and
   never reused within a session: a message is numbered when it enters a datagram.
2. A datagram leaves when it is full (the next message would not fit in
   `max_datagram_bytes`), when its oldest message has waited `max_batch_delay_ns`, or
   on `flush`; it leaves as one `bytes` that the shell sends on both feeds unchanged,
   so the A and B copies are byte-identical.
3. When nothing has been sent for `heartbeat_interval_ns`, a heartbeat (count 0, the
   next sequence number) is due, and again every interval after it.
4. `end_session` flushes, publishes the end-of-session system event, and from then on
   only end-of-session packets (count 0xFFFF) are produced; `publish` raises.
5. `publish_many` is all or nothing: if any message of the batch fails to encode, the
   call raises with nothing of the batch numbered, journaled or returned, and the open
   datagram as it was; otherwise a half-journaled batch would leave the journal ahead of
   `next_sequence`, and the next publish would reuse sequence numbers already journaled.
No clock, socket or thread here: callers pass `now_ns`, and act on the returned datagrams.
"""

from __future__ import annotations

from array import array

from decoders import EVENT_CODES, SCHEMA_FINGERPRINT, SYSTEM_EVENT, CodecTable
from decoders.moldudp64 import HEADER_SIZE, DatagramWriter, encode_end_of_session, encode_heartbeat
from retransmit.journal import Journal

__all__ = ["Sequencer", "SessionEnded", "EVENT_START_OF_SESSION", "EVENT_END_OF_SESSION"]

EVENT_START_OF_SESSION = EVENT_CODES["start_of_session"]
EVENT_END_OF_SESSION = EVENT_CODES["end_of_session"]


# datagrams sealed together: (first sequences, datagrams, block offsets as native uint16 bytes, counts, message bytes)
Run = tuple[list[int], list[bytes], list[bytes], list[int], list[int]]


class SessionEnded(RuntimeError):
    """`publish` after `end_session`: a session's sequence space is closed for good."""


class Sequencer:
    """Numbers and packs messages for one session; see the module rules."""

    def __init__(
        self,
        session: bytes,
        table: CodecTable,
        *,
        max_datagram_bytes: int = 1400,
        max_batch_delay_ns: int = 1_000_000,
        heartbeat_interval_ns: int = 1_000_000_000,
        first_sequence: int = 1,
        journal: Journal | None = None,
    ) -> None:
        if len(session) != 10:
            raise ValueError(f"session must be 10 bytes, got {session!r}")
        if max_datagram_bytes < HEADER_SIZE + 3 or max_datagram_bytes > 65507:
            raise ValueError(f"max_datagram_bytes {max_datagram_bytes} outside {HEADER_SIZE + 3}..65507")
        if heartbeat_interval_ns <= 0 or max_batch_delay_ns < 0:
            raise ValueError("heartbeat interval must be positive and batch delay not negative")
        self.session = bytes(session)
        self.table = table
        self.max_batch_delay_ns = max_batch_delay_ns
        self.heartbeat_interval_ns = heartbeat_interval_ns
        self.journal = journal
        self.writer = DatagramWriter(table, max_datagram_bytes)
        self._seal = getattr(table.native, "seal_datagrams", None)  # the native packer, where built (this schema only)
        self.next_sequence = first_sequence  # sequence number of the next message to enter a datagram
        self._batch_first = first_sequence  # sequence of the first message in the open datagram
        self._batch_since_ns: int | None = None  # when the open datagram got its first message
        self._starts: list[int] = []  # offset of each message block in the open datagram
        self._last_send_ns: int | None = None
        self.ended = False
        # figures for the counters of the shell
        self.datagrams = 0
        self.messages = 0
        self.heartbeats = 0

    # -- publishing --------------------------------------------------------

    @staticmethod
    def start_of_session_event(timestamp_ns: int) -> tuple:
        return (SYSTEM_EVENT, timestamp_ns, EVENT_START_OF_SESSION, SCHEMA_FINGERPRINT)

    @staticmethod
    def end_of_session_event(timestamp_ns: int) -> tuple:
        return (SYSTEM_EVENT, timestamp_ns, EVENT_END_OF_SESSION, SCHEMA_FINGERPRINT)

    def publish(self, msg: tuple, now_ns: int, out: list[bytes]) -> None:
        """Number and pack one message; full datagrams are appended to `out`."""
        self.publish_many((msg,), now_ns, out)

    def publish_many(self, msgs: list[tuple] | tuple, now_ns: int, out: list[bytes] | None = None) -> list[bytes]:
        """Number and pack messages; returns (or appends to `out`) the datagrams that filled up.

        Datagrams filled by the batch are journaled and handed out only once every message
        has been packed (rule 5); on any exception the writer is put back as it was.
        """
        if self.ended:
            raise SessionEnded(f"session {self.session!r} has ended")
        if out is None:
            out = []
        writer = self.writer
        saved = (writer.off, writer.count, len(self._starts), self._batch_first)
        runs: list[Run] = []  # the datagrams the batch filled, sealed, in order
        try:
            (self._pack_sealed if self._seal is not None else self._pack)(msgs, runs)
        except BaseException:
            self._roll_back(saved, runs)
            raise
        self._commit(runs, now_ns, out)
        if msgs and self._batch_since_ns is None:
            self._batch_since_ns = now_ns
        self.next_sequence += len(msgs)
        return out

    def _pack(self, msgs: list[tuple] | tuple, runs: list[Run]) -> None:
        """Pack `msgs` with the struct codecs; each datagram that fills is a run of one in `runs`."""
        writer, starts = self.writer, self._starts
        i = writer.add_many(msgs, 0, starts)
        while i < len(msgs):
            runs.append(self._finish())
            i = writer.add_many(msgs, i, starts)

    def _pack_sealed(self, msgs: list[tuple] | tuple, runs: list[Run]) -> None:
        """Pack `msgs` with the native packer: the datagrams the batch fills sealed in one call
        (decoders/_native_seal.c); a message it leaves alone goes through the struct codecs, as in `_pack`."""
        writer, starts, seal = self.writer, self._starts, self._seal
        n = len(msgs)
        i = 0
        while True:
            i, writer.off, writer.count, self._batch_first, datagrams, offsets, counts, firsts, sizes = seal(
                writer.buf, writer.off, writer.count, writer.max_bytes, msgs, i, self.session, self._batch_first, starts)
            if datagrams:
                runs.append((firsts, datagrams, offsets, counts, sizes))
            if i >= n:
                return
            if writer.add_many((msgs[i],), 0, starts):
                i += 1
            else:  # full (or it raised: the message never fits, or does not encode)
                runs.append(self._finish())

    def _finish(self) -> Run:
        """Close the open datagram and start the next one (a run of one); nothing journaled or counted yet."""
        writer = self.writer
        first = self._batch_first
        datagram = bytes(writer.finish(self.session, first))
        starts = self._starts
        count, end = len(starts), writer.off
        run = ([first], [datagram], [array("H", [*starts, end]).tobytes()], [count], [end - starts[0] - 2 * count])
        starts.clear()  # in place: publish_many holds a reference to this list
        self._batch_first += writer.count
        writer.reset()
        return run

    def _roll_back(self, saved: tuple[int, int, int, int], runs: list[Run]) -> None:
        """Put the open datagram back as it was before a failed `publish_many`."""
        off, count, nstarts, batch_first = saved
        writer = self.writer
        if runs:  # the datagram open at the start was sealed: its bytes are in the first one
            datagram, offsets = runs[0][1][0], runs[0][2][0]
            writer.buf[:off] = datagram[:off]
            self._starts[:] = memoryview(offsets).cast("H")[:nstarts].tolist()
        else:
            del self._starts[nstarts:]
        writer.off, writer.count = off, count
        self._batch_first = batch_first

    def _commit(self, runs: list[Run], now_ns: int, out: list[bytes]) -> None:
        """Journal sealed datagrams whole (cut into messages only when asked for), count them as sent, hand them out."""
        journal = self.journal
        for firsts, datagrams, offsets, counts, sizes in runs:
            if journal is not None:
                journal.extend_datagrams(firsts, datagrams, offsets, counts, sizes, now_ns)
            self.datagrams += len(datagrams)
            self.messages += sum(counts)
            out += datagrams
        if runs:
            self._batch_since_ns = None
            self._last_send_ns = now_ns

    def _close(self, now_ns: int) -> bytes:
        """Finish the open datagram, journal its messages, and start the next one."""
        out: list[bytes] = []
        self._commit([self._finish()], now_ns, out)
        return out[0]

    def flush(self, now_ns: int) -> list[bytes]:
        """The open datagram, if it holds anything."""
        return [self._close(now_ns)] if self.writer.count else []

    @property
    def pending_messages(self) -> int:
        return self.writer.count

    # -- timers ------------------------------------------------------------

    def next_timer(self) -> int | None:
        """The earliest `now_ns` at which `on_timer` has something to do."""
        if self.ended:
            return None
        if self._batch_since_ns is not None:
            return self._batch_since_ns + self.max_batch_delay_ns
        if self._last_send_ns is None:
            return None
        return self._last_send_ns + self.heartbeat_interval_ns

    def on_timer(self, now_ns: int) -> list[bytes]:
        """Datagrams due at `now_ns`: a batch past its delay, or a heartbeat when idle."""
        if self.ended:
            return []
        if self._batch_since_ns is not None:
            if now_ns - self._batch_since_ns >= self.max_batch_delay_ns:
                return self.flush(now_ns)
            return []
        if self._last_send_ns is None:
            self._last_send_ns = now_ns  # heartbeats are measured from the first timer call
            return []
        if now_ns - self._last_send_ns >= self.heartbeat_interval_ns:
            self._last_send_ns = now_ns
            self.heartbeats += 1
            return [encode_heartbeat(self.session, self.next_sequence)]
        return []

    # -- end of session ----------------------------------------------------

    def end_session(self, now_ns: int, timestamp_ns: int | None = None) -> list[bytes]:
        """Flush, then publish the end-of-session event (stamped `timestamp_ns`, default
        `now_ns`); afterwards only `end_of_session_packet`."""
        if self.ended:
            return []
        out = self.flush(now_ns)
        self.publish(self.end_of_session_event(now_ns if timestamp_ns is None else timestamp_ns), now_ns, out)
        out += self.flush(now_ns)
        self.ended = True
        return out

    def end_of_session_packet(self) -> bytes:
        return encode_end_of_session(self.session, self.next_sequence)
