"""SoupBinTCP framing: packets split correctly from any chunking of the stream; bad packets raise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders import DecodeError, DecodeErrorKind, soup

STREAM = [
    soup.login_request("alice", "secret", b"", 1),
    soup.login_accepted(b"MTQP000001", 17),
    soup.sequenced_data(b"Q" + b"\x00" * 44),
    soup.server_heartbeat(),
    soup.unsequenced_data(b"hello"),
    soup.client_heartbeat(),
    soup.end_of_session(),
    soup.logout_request(),
    soup.login_rejected("session_not_available"),
]


@settings(deadline=None)  # a scheduling stall on a shared CI machine is not a failure of the framer
@given(cuts=st.lists(st.integers(0, sum(map(len, STREAM))), max_size=20))
def test_framer_reassembles_any_chunking(cuts: list[int]) -> None:
    data = b"".join(STREAM)
    points = sorted(set([0, len(data), *cuts]))
    framer = soup.SoupFramer()
    got: list[bytes] = []
    for a, b in zip(points, points[1:]):
        got += framer.feed(data[a:b])
    assert got == STREAM
    assert framer.pending_bytes == 0


def test_packets_decode_with_spec_fields() -> None:
    names = [soup.decode_packet(p)[0] for p in STREAM]
    assert names == ["login_request", "login_accepted", "sequenced_data", "server_heartbeat", "unsequenced_data",
                     "client_heartbeat", "end_of_session", "logout_request", "login_rejected"]
    _, login = soup.decode_packet(STREAM[0])
    assert login[2:] == (b"alice ", b"secret    ", b" " * 10, b" " * 19 + b"1")
    _, accepted = soup.decode_packet(STREAM[1])
    assert (accepted[2], soup.parse_numeric(accepted[3])) == (b"MTQP000001", 17)
    assert soup.decode_packet(STREAM[-1])[1][2] == ord("S")


def test_zero_length_and_unknown_type_raise() -> None:
    with pytest.raises(DecodeError) as err:
        soup.SoupFramer().feed(b"\x00\x00")
    assert err.value.kind == DecodeErrorKind.ZERO_LENGTH
    with pytest.raises(DecodeError) as err:
        soup.decode_packet(b"\x00\x01?")
    assert err.value.kind == DecodeErrorKind.UNKNOWN_TYPE
    with pytest.raises(DecodeError) as err:
        soup.decode_packet(b"\x00\x02H\x00")  # heartbeat with a payload
    assert err.value.kind == DecodeErrorKind.LENGTH_MISMATCH
    with pytest.raises(DecodeError):
        soup.parse_numeric(b"  12x")
