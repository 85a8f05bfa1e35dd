"""The re-request server driven by a model: every request a LAN can carry, against a journal that moves.

Hypothesis sends requests of every kind (valid ranges, too old, too far ahead, another
session, malformed bytes, count 0 or above the maximum, repeats) from several hosts and
several source ports of each, while the journal grows, trims itself and ages, and time
advances by random amounts. After every step the server's promises must hold:
nothing raised; every answer decodes; a data answer is exactly the journal's bytes for a
subrange of what was asked; a reject echoes the request; bytes sent to one host, in any
window of time, stay within its byte bucket (burst + rate x window + one message) and
all bytes within the global one; never more rejects than requests; the requester table
within its bound.

CI runs a fixed (derandomized) set of examples that keeps this file to seconds;
`MD_MODEL_LONG=1` runs many more, randomized.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from decoders import CODECS, SCHEMA_FINGERPRINT, DecodeError, make_session
from decoders.moldudp64 import HEADER_SIZE, decode_datagram, decode_request, encode_request, split_blocks
from retransmit.journal import Journal
from retransmit.server import RequestServer, ServerLimits
from tests.model.profiles import model_settings

S = make_session(SCHEMA_FINGERPRINT, 3)
OTHER = make_session(SCHEMA_FINGERPRINT, 4)
HOSTS = [f"10.0.0.{i}" for i in range(6)]  # more hosts than the table holds: eviction happens
PORTS = [1000, 1001, 1002]
MAX_FIELDS = 60
MAX_BLOCK = 32 + 11 * MAX_FIELDS  # the largest message appended: an image with every field
ONE_MESSAGE = HEADER_SIZE + 2 + MAX_BLOCK

LIMITS = dict(
    max_request_messages=500,
    requester_requests=(100.0, 5.0),
    requester_messages=(5_000.0, 1_000.0),
    requester_bytes=(100_000.0, 30_000.0),
    global_requests=(400.0, 20.0),
    global_messages=(20_000.0, 3_000.0),
    global_bytes=(300_000.0, 80_000.0),
    dedupe_window_ns=50_000_000,
    max_requesters=4,
)


def message(seq: int, kind: int, fields: int) -> bytes:
    if kind == 0:
        return CODECS.encode((b"S", seq, ord("S"), SCHEMA_FINGERPRINT))  # 18 bytes
    if kind == 1:
        return CODECS.encode((b"Q", seq, seq % 97, seq, 1, seq + 1, 2))  # 45 bytes
    return CODECS.encode((b"I", seq, seq % 97, "SYM", -2, tuple((f, 2, seq) for f in range(fields))))  # 32 + 11 x fields


def asked_of(data: bytes) -> tuple[int, int] | None:
    """(sequence, count) of a request packet, None if it is not one."""
    try:
        return decode_request(data)[1:]
    except DecodeError:
        return None



class Window:
    """Bytes sent to one host (or to all), checked for every window of time ending now (one pass, O(1) a send)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.total = 0.0
        self.best = float("-inf")

    def send(self, now_ns: int, nbytes: int) -> None:
        self.best = max(self.best, self.rate * now_ns / 1e9 - self.total)
        self.total += nbytes
        worst = self.total - self.rate * now_ns / 1e9 + self.best
        assert worst <= self.burst + ONE_MESSAGE, f"{worst:.0f} bytes in a window, bucket burst {self.burst:.0f}"


class ServerModel(RuleBasedStateMachine):
    @initialize(max_datagram_bytes=st.sampled_from([100, 600, 1400]))
    def build(self, max_datagram_bytes: int) -> None:
        self.now = 1_000_000_000
        self.journal = Journal(max_messages=3000, max_bytes=600_000, max_age_ns=3_000_000_000)
        self.limits = ServerLimits(max_datagram_bytes=max_datagram_bytes, **LIMITS)
        self.server = RequestServer(self.journal, self.limits, self.now)
        self.server.session = S
        self.next_seq = 1
        self.windows: dict[str, Window] = {}  # per host, since its requester entry was made
        self.all_bytes = Window(*self.limits.global_bytes)
        self.requests: dict[str, int] = {}
        self.rejects: dict[str, int] = {}
        self.last: tuple[bytes, str, int] | None = None

    # -- the world moving --------------------------------------------------

    @rule(ns=st.one_of(st.integers(0, 2_000), st.integers(0, 300_000_000)))
    def advance(self, ns: int) -> None:
        self.now += ns

    @rule(n=st.integers(1, 300), kind=st.integers(0, 2), fields=st.integers(0, MAX_FIELDS))
    def append(self, n: int, kind: int, fields: int) -> None:
        blocks = [message(s, (kind + s) % 3 if kind == 2 else kind, (fields + s) % (MAX_FIELDS + 1)) for s in range(self.next_seq, self.next_seq + n)]
        self.journal.extend(self.next_seq, blocks, self.now)
        self.next_seq += n

    @rule()
    def expire(self) -> None:
        self.journal.expire(self.now)

    # -- requests ----------------------------------------------------------

    def send(self, data: bytes, host: str, port: int, asked: tuple[int, int] | None) -> None:
        """Send one request and check its answer; `asked` = (sequence, count) if the request decodes."""
        srv, j = self.server, self.journal
        new_entry = host not in srv.requesters
        out = srv.on_request(data, (host, port), self.now)
        if new_entry:  # a forgotten (or new) requester starts with a full bucket: its windows start again
            self.windows[host] = Window(*self.limits.requester_bytes)
        self.requests[host] = self.requests.get(host, 0) + 1
        self.last = (data, host, port)
        decoded = [decode_datagram(d, CODECS) for d in out]  # every answer is well-formed
        nbytes = sum(map(len, out))
        self.windows[host].send(self.now, nbytes)
        self.all_bytes.send(self.now, nbytes)
        if decoded and decoded[0][1] == 0:  # a reject: one packet, one J message
            assert len(out) == 1 and decoded[0][2] == 1
            reject = CODECS.to_dict(decoded[0][3][0])
            assert decoded[0][3][0][0] == b"J"
            echoed = (reject["requested_sequence_number"], reject["requested_message_count"])
            assert echoed == (asked if asked is not None else (0, 0))
            assert (reject["first_available_sequence_number"], reject["next_sequence_number"]) == (j.first_sequence, j.next_sequence)
            self.rejects[host] = self.rejects.get(host, 0) + 1
            return
        if not out:
            return
        assert asked is not None
        seq, count = asked
        first = decoded[0][1]
        blocks: list[bytes] = []
        for d in out:
            session, dseq, dcount, dblocks = split_blocks(d)
            assert session == S and dseq == first + len(blocks) and dcount == len(dblocks) > 0
            blocks += dblocks
        assert seq <= first and first + len(blocks) <= seq + count  # a subrange of what was asked, never more
        assert blocks == j.get(first, len(blocks)) and len(blocks) >= 1  # exactly the journal's bytes
        assert j.first_sequence <= first and first + len(blocks) <= j.next_sequence

    @rule(host=st.sampled_from(HOSTS), port=st.sampled_from(PORTS), offset=st.integers(0, 3000), count=st.integers(1, 500))
    def valid(self, host: str, port: int, offset: int, count: int) -> None:
        j = self.journal
        seq = j.first_sequence + offset % max(1, len(j))
        self.send(encode_request(S, seq, count), host, port, (seq, count))

    @rule(host=st.sampled_from(HOSTS), port=st.sampled_from(PORTS), back=st.integers(1, 5000), count=st.integers(1, 500))
    def too_old(self, host: str, port: int, back: int, count: int) -> None:
        seq = max(0, self.journal.first_sequence - back)
        self.send(encode_request(S, seq, count), host, port, (seq, count))

    @rule(host=st.sampled_from(HOSTS), port=st.sampled_from(PORTS), ahead=st.integers(0, 10**12), count=st.integers(1, 500))
    def too_far_ahead(self, host: str, port: int, ahead: int, count: int) -> None:
        seq = self.journal.next_sequence + ahead
        self.send(encode_request(S, seq, count), host, port, (seq, count))

    @rule(host=st.sampled_from(HOSTS), port=st.sampled_from(PORTS), seq=st.integers(0, 2**64 - 1), count=st.integers(0, 0xFFFF))
    def wrong_session(self, host: str, port: int, seq: int, count: int) -> None:
        self.send(encode_request(OTHER, seq, count), host, port, (seq, count))

    @rule(host=st.sampled_from(HOSTS), port=st.sampled_from(PORTS), count=st.sampled_from([0, 501, 0xFFFF]), offset=st.integers(0, 100))
    def bad_count(self, host: str, port: int, count: int, offset: int) -> None:
        seq = self.journal.first_sequence + offset
        self.send(encode_request(S, seq, count), host, port, (seq, count))

    @rule(host=st.sampled_from(HOSTS), port=st.sampled_from(PORTS), data=st.binary(max_size=40))
    def malformed(self, host: str, port: int, data: bytes) -> None:
        self.send(data, host, port, asked_of(data))  # mostly not a request at all

    @precondition(lambda self: self.last is not None)
    @rule(same_port=st.booleans())
    def repeat(self, same_port: bool) -> None:
        assert self.last is not None
        data, host, port = self.last
        self.send(data, host, port if same_port else port + 1, asked_of(data))

    # -- promises that hold between steps -----------------------------------

    @invariant()
    def bounded(self) -> None:
        if not hasattr(self, "server"):
            return
        assert len(self.server.requesters) <= self.limits.max_requesters
        for host, n in self.rejects.items():
            assert n <= self.requests[host]
        counters = self.server.counters
        answered = sum(counters[k] for k in ("served", "deduplicated", "suppressed")) + sum(
            counters[f"rejected_{r}"] for r in ("too_old", "too_far_ahead", "rate_limited", "wrong_session", "malformed", "count_out_of_range"))
        assert answered == counters["requests"]  # every request accounted for exactly once


ServerModel.TestCase.settings = model_settings(ci_examples=300, ci_steps=50)
TestServerModel = ServerModel.TestCase
