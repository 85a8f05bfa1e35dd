"""The re-request server core on a fake clock: every reject kind, buckets, dedupe, no amplification."""

from __future__ import annotations

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session, soup
from decoders.moldudp64 import decode_datagram, encode_request
from mdcommon.image import Image
from retransmit.image import ImageSession, take_snapshot
from retransmit.journal import Journal
from retransmit.server import RequestServer, ServerLimits

S = make_session(SCHEMA_FINGERPRINT, 5)
ADDR = ("127.0.0.1", 40000)
MS = 1_000_000


def server(n: int = 5000, first: int = 1, **limits) -> RequestServer:
    j = Journal()
    for s in range(first, first + n):
        j.append(s, CODECS.encode((b"Q", s, 1, s, 1, s + 1, 1)), 0)
    srv = RequestServer(j, ServerLimits(**limits))
    srv.session = S
    return srv


def answer(out: list[bytes]) -> list:
    return [decode_datagram(d, CODECS) for d in out]


def reject_reason(out: list[bytes]) -> str:
    (d,) = answer(out)
    assert d[1] == 0  # control packets carry sequence 0
    return CODECS.to_dict(d[3][0])["reason"]


def test_serves_the_range_split_at_the_datagram_size(clock) -> None:
    srv = server()
    out = srv.on_request(encode_request(S, 10, 100), ADDR, clock.now_ns)
    assert all(len(d) <= 1400 for d in out) and len(out) == 4
    seqs = [s for _, first, _, msgs in answer(out) for s in range(first, first + len(msgs))]
    assert seqs == list(range(10, 110))
    assert [m[1] for *_, msgs in answer(out) for m in msgs] == list(range(10, 110))


def test_every_bad_request_gets_its_reject(clock) -> None:
    srv = server(100, first=50)
    cases = [
        (b"short", "malformed"),
        (encode_request(make_session(SCHEMA_FINGERPRINT, 6), 60, 5), "wrong_session"),
        (encode_request(S, 60, 0), "count_out_of_range"),
        (encode_request(S, 60, 2001), "count_out_of_range"),
        (encode_request(S, 10, 5), "too_old"),
        (encode_request(S, 150, 5), "too_far_ahead"),
    ]
    for i, (req, reason) in enumerate(cases):
        assert reject_reason(srv.on_request(req, ("127.0.0.1", 41000 + i), clock.now_ns)) == reason
    (d,) = answer(srv.on_request(encode_request(S, 10, 5), ADDR, clock.now_ns))
    reject = CODECS.to_dict(d[3][0])
    assert (reject["first_available_sequence_number"], reject["next_sequence_number"]) == (50, 150)


def test_range_past_the_head_is_clipped(clock) -> None:
    srv = server(100)
    (d,) = answer(srv.on_request(encode_request(S, 95, 20), ADDR, clock.now_ns))
    assert (d[1], len(d[3])) == (95, 6)


def test_repeat_inside_the_window_is_served_once(clock) -> None:
    srv = server()
    assert srv.on_request(encode_request(S, 10, 20), ADDR, clock.now_ns)
    assert srv.on_request(encode_request(S, 10, 20), ADDR, clock.advance(10 * MS)) == []
    (d,) = answer(srv.on_request(encode_request(S, 15, 20), ADDR, clock.now_ns))  # overlapping: only the new part
    assert (d[1], len(d[3])) == (30, 5)
    assert srv.on_request(encode_request(S, 10, 20), ADDR, clock.advance(60 * MS))  # after the window: served again
    assert srv.counters["deduplicated"] == 1


def test_rate_limited_reject_says_when_to_retry(clock) -> None:
    srv = server(requester_requests=(10.0, 2.0))
    for i in range(2):
        assert answer(srv.on_request(encode_request(S, 100 * i + 1, 5), ADDR, clock.now_ns))[0][1] != 0
    (d,) = answer(srv.on_request(encode_request(S, 500, 5), ADDR, clock.now_ns))
    reject = CODECS.to_dict(d[3][0])
    assert reject["reason"] == "rate_limited" and 90 * MS <= reject["retry_after_ns"] <= 110 * MS
    assert srv.on_request(encode_request(S, 500, 5), ("127.0.0.2", 40001), clock.now_ns)[0][10:18] != b"\0" * 8  # others unaffected


def test_a_flood_gets_at_most_its_bucket_of_bytes(clock) -> None:
    """1,000 requests a second for 100-message ranges, over a journal of mostly 18-byte events and a
    stretch of 474-byte images: many are served, and the bytes of any window of time stay within
    the bucket (burst + rate x window + one message), exactly, not on an estimate from the average."""
    from tests.unit.test_server_hardening import assert_within_bucket, image

    j = Journal()
    j.extend(1, [CODECS.encode((b"S", s, ord("S"), SCHEMA_FINGERPRINT)) for s in range(1, 8001)], 0)
    j.extend(8001, [image(s, 40) for s in range(8001, 10_001)], 0)
    rate, burst = 200_000.0, 50_000.0
    srv = RequestServer(j, ServerLimits(requester_bytes=(rate, burst), requester_requests=(1e9, 1e9), requester_messages=(1e9, 1e9),
                                        global_requests=(1e9, 1e9)))
    srv.session = S
    start, sends = clock.now_ns, []
    for i in range(2000):  # two seconds, each request a new range (no dedupe), three in four among the images
        first = 8001 + (i * 53) % 1900 if i % 4 else 1 + (i * 71) % 7900
        out = srv.on_request(encode_request(S, first, 100), ADDR, clock.now_ns)
        sends.append((clock.now_ns - start, sum(map(len, out))))
        clock.advance(MS)
    assert_within_bucket(sends, rate, burst, slack=2 + 474)
    assert srv.counters["served"] >= 100 and srv.counters["messages_sent"] >= 5000  # served, not only refused
    assert srv.counters["rejected_rate_limited"] + srv.counters["suppressed"] > 500
    honest = srv.on_request(encode_request(S, 1, 50), ("127.0.0.2", 45000), clock.now_ns)
    assert sum(len(m) for *_, m in answer(honest)) == 50  # another host is still served at once


def test_requester_table_is_bounded(clock) -> None:
    srv = server(100, max_requesters=10)
    for host in range(50):
        srv.on_request(encode_request(S, 1, 1), (f"10.0.0.{host}", 30000), clock.now_ns)
    assert len(srv.requesters) == 10 and srv.counters["requesters_evicted"] == 40
    for port in range(50):  # ports of one host are one requester
        srv.on_request(encode_request(S, 1, 1), ("10.0.1.1", 30000 + port), clock.now_ns)
    assert len(srv.requesters) == 10 and srv.counters["requesters_evicted"] == 41


def image_of(n: int) -> Image:
    img = Image()
    for i in range(1, n + 1):
        img.apply((b"R", 0, i, f"S{i}", -2))
        img.apply((b"Q", 0, i, 100 * i, 1, 100 * i + 1, 2))
    return img


def test_snapshot_is_the_image_at_its_freeze_while_live_data_goes_on() -> None:
    from retransmit.image import ImageSnapshot

    img = image_of(30)
    snap = ImageSnapshot(img, S, 100, 1)
    truth = {iid: rec.copy() for iid, rec in img.records.items()}
    snap.step(10)
    img.apply((b"Q", 2, 5, 1, 1, 2, 2))  # changes after the freeze, on encoded and not yet encoded records
    img.apply((b"Q", 2, 25, 1, 1, 2, 2))
    img.apply((b"R", 2, 99, "NEW", -2))  # an instrument created after the freeze
    got = Image()
    framer = soup.SoupFramer()
    while snap.step(7):
        pass
    for p in framer.feed(b"".join(snap.chunks)):
        m = CODECS.decode(soup.decode_packet(p)[1][2])
        if m[0] == b"I":
            got.apply(m)
    assert got.records == truth
    assert img.records[25].values[1] == 1 and img._saved is None  # the live image moved on; the freeze is over


def test_image_session_login_stream_and_reject() -> None:
    img = image_of(25)
    snap = take_snapshot(img, S, 777, 1)
    sess = ImageSession(lambda: snap, "alice", "pw")
    assert sess.on_data(soup.login_request("alice", "nope", b"", 1)) == [soup.login_rejected("not_authorized")]
    assert sess.state == "closed"
    sess = ImageSession(lambda: snap, "alice", "pw")
    out = sess.on_data(soup.login_request("alice", "pw", b"", 1))
    assert sess.snapshot is snap and sess.state == "streaming"
    out += [snap.blob, soup.end_of_session()]  # what the shell streams after the login
    framer, got, end = soup.SoupFramer(), Image(), None
    names = []
    for p in framer.feed(b"".join(bytes(x) for x in out)):
        name, fields = soup.decode_packet(p)
        names.append(name)
        if name == "sequenced_data":
            m = CODECS.decode(fields[2])
            if m[0] == b"G":
                end = m
            else:
                got.apply(m)
    assert names[0] == "login_accepted" and names[-1] == "end_of_session"
    assert got == img and end[2] == 777 and end[3] == 25
    other = ImageSession(lambda: snap)
    assert other.on_data(soup.login_request("", "", make_session(SCHEMA_FINGERPRINT, 9), 1)) == [soup.login_rejected("session_not_available")]


def test_image_login_checks_both_when_either_is_configured() -> None:
    """A password without a username (or the reverse) still guards the image: the login must match both."""
    snap = take_snapshot(image_of(3), S, 10, 1)
    for user, password, login_user, login_password, accepted in [
        ("", "pw", "", "nope", False),
        ("", "pw", "", "", False),
        ("", "pw", "bob", "pw", False),  # no username configured: a blank one is expected
        ("", "pw", "", "pw", True),
        ("alice", "", "alice", "x", False),
        ("alice", "", "alice", "", True),
        ("", "", "anyone", "any", True),  # nothing configured: open
    ]:
        sess = ImageSession(lambda: snap, user, password)
        out = sess.on_data(soup.login_request(login_user, login_password, b"", 1))
        if accepted:
            assert sess.state == "streaming" and out == [soup.login_accepted(S, 11)]
        else:
            assert sess.state == "closed" and out == [soup.login_rejected("not_authorized")], (user, password, login_user, login_password)


def test_two_handlers_on_one_host_both_get_a_range_the_other_just_got(clock) -> None:
    srv = server()
    a, b = ("10.0.0.5", 40000), ("10.0.0.5", 40001)  # one host (one set of buckets), two handlers
    assert srv.on_request(encode_request(S, 10, 5), a, clock.now_ns)
    assert srv.on_request(encode_request(S, 10, 5), b, clock.now_ns)  # b never saw a's answer
    assert srv.on_request(encode_request(S, 10, 5), a, clock.now_ns) == []  # a's own repeat inside the window
    assert srv.counters["deduplicated"] == 1
