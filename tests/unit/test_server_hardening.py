"""The re-request server under abuse, on a fake clock: no request is free, no byte beyond the bucket.

Each test pins one promise of `retransmit.server`: every request pays a request token
whatever its fate (a reject flood is not an amplifier), bytes are counted exactly and
per host (not per source port), rejects echo what was asked, and limits that make no
sense are refused when the server is built.
"""

from __future__ import annotations

import pytest

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.moldudp64 import decode_datagram, encode_request
from retransmit.journal import Journal
from retransmit.server import RequestServer, ServerLimits

S = make_session(SCHEMA_FINGERPRINT, 5)
OTHER = make_session(SCHEMA_FINGERPRINT, 6)
MS = 1_000_000
HOST = "10.1.2.3"


def quote(s: int) -> bytes:
    return CODECS.encode((b"Q", s, 1, s, 1, s + 1, 1))  # 45 bytes


def image(s: int, fields: int) -> bytes:
    return CODECS.encode((b"I", s, s % 1000, "SYM", -2, tuple((f, 2, s) for f in range(fields))))  # 32 + 11 * fields bytes


def mixed_journal() -> Journal:
    """Mostly 18-byte system events, then a stretch of ~470-byte images: the average says 'small', the tail is not."""
    j = Journal()
    for s in range(1, 20_001):
        j.append(s, CODECS.encode((b"S", s, ord("S"), SCHEMA_FINGERPRINT)), 0)
    for s in range(20_001, 22_001):
        j.append(s, image(s, 40), 0)
    return j


def server(journal: Journal | None = None, **limits) -> RequestServer:
    if journal is None:
        journal = Journal()
        for s in range(1, 5001):
            journal.append(s, quote(s), 0)
    srv = RequestServer(journal, ServerLimits(**limits))
    srv.session = S
    return srv


def reject_of(out: list[bytes]) -> dict:
    (d,) = [decode_datagram(x, CODECS) for x in out]
    assert d[1] == 0
    return CODECS.to_dict(d[3][0])


def assert_within_bucket(sends: list[tuple[int, int]], rate: float, burst: float, slack: float = 1.0) -> None:
    """For every window [t_i, t_j] of the (time, bytes) sends: bytes <= burst + rate * (t_j - t_i) + slack.

    One pass: with P the running total before send i, the worst window ending at j is
    P_(j+1) - rate * t_j + max over i <= j of (rate * t_i - P_i).
    """
    best = float("-inf")
    total = 0.0
    for t, n in sends:
        best = max(best, rate * t / 1e9 - total)
        total += n
        assert total - rate * t / 1e9 + best <= burst + slack, f"{total - rate * t / 1e9 + best:.0f} bytes > burst {burst:.0f}"


REJECTED_KINDS = [
    ("malformed", lambda: b"not a request"),
    ("wrong_session", lambda: encode_request(OTHER, 10, 5)),
    ("count_out_of_range", lambda: encode_request(S, 10, 0)),
    ("too_old", lambda: encode_request(S, 1, 5)),
    ("too_far_ahead", lambda: encode_request(S, 9000, 5)),
]


@pytest.mark.parametrize("reason,request_bytes", REJECTED_KINDS, ids=[k[0] for k in REJECTED_KINDS])
def test_a_reject_flood_pays_a_request_token_per_request(clock, reason: str, request_bytes) -> None:
    """10,000 bad requests in 1 ms from one host: 20 rejects (the burst), one 'rate limited', then silence."""
    j = Journal()
    j.extend(100, [quote(s) for s in range(100, 5000)], 0)
    srv = server(j)
    data = request_bytes()
    answers = []
    for i in range(10_000):
        answers += [reject_of(out) for out in [srv.on_request(data, (HOST, 40000), clock.now_ns + i * 100)] if out]
    reasons = [a["reason"] for a in answers]
    assert reasons == [reason] * 20 + ["rate_limited"]
    assert srv.counters["suppressed"] == 10_000 - 21
    assert srv.counters["bytes_sent"] == 21 * 66  # about 3.3 bytes out per byte in, but for 21 requests only


def test_after_the_one_rate_limited_reject_comes_silence_until_retry_after(clock) -> None:
    srv = server(requester_requests=(10.0, 2.0))
    for i in range(2):
        assert decode_datagram(srv.on_request(encode_request(S, 100 * i + 1, 5), (HOST, 1), clock.now_ns)[0], CODECS)[1] != 0
    reject = reject_of(srv.on_request(encode_request(S, 500, 5), (HOST, 1), clock.now_ns))
    assert reject["reason"] == "rate_limited" and (reject["requested_sequence_number"], reject["requested_message_count"]) == (500, 5)
    retry = reject["retry_after_ns"]
    assert 99 * MS <= retry <= 101 * MS
    for port in range(2, 50):  # other ports of the same host, inside the retry-after: nothing at all
        assert srv.on_request(encode_request(S, 600 + port, 5), (HOST, port), clock.now_ns + port * MS) == []
    assert srv.counters["suppressed"] == 48
    (d,) = [decode_datagram(x, CODECS) for x in srv.on_request(encode_request(S, 500, 5), (HOST, 1), clock.now_ns + retry)]
    assert (d[1], d[2]) == (500, 5)  # told to come back then: served then


def test_every_request_pays_the_global_request_bucket_too(clock) -> None:
    srv = server(global_requests=(10.0, 5.0))
    for i in range(5):
        assert reject_of(srv.on_request(b"junk", (f"10.0.0.{i}", 1), clock.now_ns))["reason"] == "malformed"
    reject = reject_of(srv.on_request(encode_request(S, 10, 5), ("10.0.0.99", 1), clock.now_ns))
    assert reject["reason"] == "rate_limited" and reject["retry_after_ns"] > 0


def test_bytes_are_counted_exactly_whatever_the_journal_average(clock) -> None:
    """Requests for the big messages of a journal of mostly small ones: the average underestimated them 9 to 1."""
    rate, burst = 150_000.0, 450_000.0
    srv = server(mixed_journal(), requester_bytes=(rate, burst), requester_requests=(1e9, 1e9), requester_messages=(1e9, 1e9),
                 dedupe_window_ns=0)
    sends = []
    for i in range(3000):
        now = clock.now_ns + i * MS
        out = srv.on_request(encode_request(S, 20_001 + (i * 37) % 1900, 100), (HOST, 40000), now)
        sends.append((now - clock.now_ns, sum(map(len, out))))
    assert_within_bucket(sends, rate, burst)
    assert srv.counters["served"] >= 15  # (450 KB + 3 s of 150 KB/s) / 47 KB answers


def test_source_ports_of_one_host_share_one_bucket(clock) -> None:
    rate, burst = 100_000.0, 200_000.0
    srv = server(requester_bytes=(rate, burst), requester_requests=(1e9, 1e9), requester_messages=(1e9, 1e9), global_requests=(1e9, 1e9))
    sends = []
    for i in range(640):
        now = clock.now_ns + i * MS // 10
        out = srv.on_request(encode_request(S, 1 + (i * 101) % 4000, 1000), (HOST, 30000 + i % 64), now)
        sends.append((now - clock.now_ns, sum(map(len, out))))
    assert_within_bucket(sends, rate, burst)
    assert len(srv.requesters) == 1
    other = srv.on_request(encode_request(S, 1, 1000), ("10.9.9.9", 30000), clock.now_ns + 64 * MS)
    assert sum(decode_datagram(d, CODECS)[2] for d in other) == 1000  # another host has its own bucket


def test_an_answer_larger_than_the_bucket_is_clipped_and_charged_exactly(clock) -> None:
    """474-byte blocks, two to a 968-byte datagram: a 10,000-byte bucket pays for ten datagrams exactly."""
    j = Journal()
    j.extend(1, [image(s, 40) for s in range(1, 1001)], 0)
    srv = server(j, requester_bytes=(10_000.0, 10_000.0))
    out = srv.on_request(encode_request(S, 1, 100), (HOST, 1), clock.now_ns)
    got = [m for d in out for m in decode_datagram(d, CODECS)[3]]
    assert got == [CODECS.decode(image(s, 40)) for s in range(1, 21)]  # a prefix of what was asked
    assert [len(d) for d in out] == [968] * 10 and srv.counters["clipped"] == 1
    assert srv.requesters[HOST].bytes.tokens == pytest.approx(320)  # charged exactly what was sent
    reject = reject_of(srv.on_request(encode_request(S, 21, 5), (HOST, 1), clock.now_ns))
    assert reject["reason"] == "rate_limited"  # not one more message fits in 320 bytes
    need = 3 * 20 + 5 * 474 + 66  # this answer (three datagrams) and the reject paid now, from the 320 there were
    assert reject["retry_after_ns"] == pytest.approx((need - 320) / 10_000 * 1e9, abs=1000)
    out = srv.on_request(encode_request(S, 21, 5), (HOST, 1), clock.now_ns + reject["retry_after_ns"])
    assert [decode_datagram(d, CODECS)[1:3] for d in out] == [(21, 2), (23, 2), (25, 1)]  # the retry-after was enough for all of it


def test_rejects_echo_the_original_request_after_a_partial_dedupe(clock) -> None:
    """Asked from 100, the part not yet sent starts at 600: the reject still says 100, so the client matches it."""
    srv = server(requester_messages=(1.0, 500.0))
    assert sum(decode_datagram(d, CODECS)[2] for d in srv.on_request(encode_request(S, 100, 500), (HOST, 1), clock.now_ns)) == 500
    reject = reject_of(srv.on_request(encode_request(S, 100, 1000), (HOST, 1), clock.now_ns + MS))
    assert reject["reason"] == "rate_limited"
    assert (reject["requested_sequence_number"], reject["requested_message_count"]) == (100, 1000)


def test_unlimited_buckets_serve_whole_answers(clock) -> None:
    """Rate 0 means unlimited: no bucket clips or refuses anything (and nothing overflows on an infinite budget)."""
    none = (0.0, 0.0)
    srv = server(requester_requests=none, requester_messages=none, requester_bytes=none, global_requests=none,
                 global_messages=none, global_bytes=none, dedupe_window_ns=0)
    for _ in range(100):
        out = srv.on_request(encode_request(S, 1, 2000), (HOST, 1), clock.now_ns)
        assert sum(decode_datagram(d, CODECS)[2] for d in out) == 2000
    assert srv.counters["served"] == 100 and srv.counters["clipped"] == 0


def test_ranges_sent_in_any_order_all_count_for_the_dedupe(clock) -> None:
    srv = server()
    srv.on_request(encode_request(S, 50, 11), (HOST, 1), clock.now_ns)  # 50..60
    srv.on_request(encode_request(S, 10, 40), (HOST, 1), clock.now_ns)  # 10..49
    (d,) = [decode_datagram(x, CODECS) for x in srv.on_request(encode_request(S, 10, 60), (HOST, 1), clock.now_ns)]
    assert (d[1], d[2]) == (61, 9)  # only 61..69 was never sent


@pytest.mark.parametrize("limits,message", [
    (dict(max_request_messages=65536), "max_request_messages"),
    (dict(max_request_messages=0), "max_request_messages"),
    (dict(max_datagram_bytes=40), "max_datagram_bytes"),
    (dict(max_datagram_bytes=65508), "max_datagram_bytes"),
    (dict(requester_requests=(-1.0, 20.0)), "requester_requests"),
    (dict(global_bytes=(1e6, -5.0)), "global_bytes"),
    (dict(requester_messages=(float("nan"), 5.0)), "requester_messages"),
    (dict(requester_requests=(50.0, 0.5)), "requester_requests"),
    (dict(requester_bytes=(1e6, 10.0)), "requester_bytes"),
    (dict(dedupe_window_ns=-1), "dedupe_window_ns"),
    (dict(max_requesters=0), "max_requesters"),
])
def test_nonsensical_limits_are_refused(limits: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerLimits(**limits)


def test_the_largest_count_the_wire_can_carry_is_accepted() -> None:
    assert ServerLimits(max_request_messages=65535).max_request_messages == 65535
