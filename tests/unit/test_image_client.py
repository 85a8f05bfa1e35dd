"""The line handler's image client (linehandler/snapshot_io.py): its native path (decoders/_native.c
`soup_messages`, a run of record packets per call) against its per-packet Python path, on any image stream
a server or a forger can send, cut into any chunks: the same messages reach the core in the same order, and
the same end of image or the same error ends it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import linehandler.snapshot_io as snapshot_io
from decoders import CODECS, END_OF_IMAGE, DecodeError, soup
from decoders.schema import MESSAGES
from linehandler.join import JoinMixin
from linehandler.snapshot_io import ImageClient
from mdcommon import compact_image
from mdcommon.compact_image import CompactImage
from mdcommon.image import Image
from tests.conftest import need_native
from tests.schema_strategies import message_dicts

SESSION = b"MTQP000001"
NATIVE = CODECS.native

messages = st.sampled_from(sorted(MESSAGES)).flatmap(
    lambda name: message_dicts(MESSAGES[name], name).map(lambda d, name=name: CODECS.by_name[name].from_dict(d)))
records = messages.filter(lambda m: m[0] != END_OF_IMAGE)


def _packets(msgs: list[tuple]) -> list[bytes]:
    return [soup.sequenced_data(CODECS.encode(m)) for m in msgs]


odd_packets = st.sampled_from([
    soup.server_heartbeat(),
    b"\x00\x06+hello",                                 # debug text
    soup.unsequenced_data(b"x"),
    soup.sequenced_data(b"Q" + b"\x00" * 10),         # a quote cut short: the struct codecs' error
    soup.sequenced_data(b"\xee" + b"\x00" * 8),         # an unknown message type
    soup.sequenced_data(b""),                           # sequenced data holding nothing
    soup.login_accepted(b"OTHER00001", 1),              # another session
    soup.login_rejected("not_authorized"),
    soup.end_of_session(),
    b"\x00\x00",                                        # a packet of length 0
    soup.logout_request(),                              # not a server's packet
])


class _Sock:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    def recv(self, _n: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


class _Core:
    def __init__(self) -> None:
        self.log: list[Any] = []

    def on_image_messages(self, msgs: list[tuple]) -> None:
        self.log += [("msg", m) for m in msgs]

    def image_loader(self) -> None:
        return None  # no replica to load into: every record comes as a message

    def on_image_end(self, sequence: int, _now_ns: int) -> list:
        self.log.append(("end", sequence))
        return ["ended"]


def _run(chunks: list[bytes], native: Any, core: _Core | None = None) -> tuple[list, int, Any]:
    client = ImageClient.__new__(ImageClient)  # no socket: fed the chunks directly
    client.framer, client.records, client.done, client.session = soup.SoupFramer(), 0, False, SESSION
    client.sock = _Sock(chunks)
    core = _Core() if core is None else core
    saved, snapshot_io._NATIVE = snapshot_io._NATIVE, native
    outcome: Any = None
    try:
        while not client.done:
            actions = client.on_readable(core, 0)
            if actions:
                outcome = tuple(actions)
    except (OSError, DecodeError) as exc:
        outcome = (type(exc).__name__, str(exc))
    finally:
        snapshot_io._NATIVE = saved
    return core.log, client.records, outcome


def _chunks(items: list, end: bool, sequence: int, cuts: list[int]) -> list[bytes]:
    """An image stream of `items` (lists of messages, or odd packets), ended or not, cut at `cuts`."""
    stream = [soup.login_accepted(SESSION, 1)]
    for item in items:
        stream += _packets(item) if isinstance(item, list) else [item]
    if end:
        stream += _packets([(END_OF_IMAGE, 1, sequence, 3)]) + _packets([(b"Q", 1, 2, 3, 4, 5, 6)])  # nothing after it is read
    data = b"".join(stream)
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    return [data[a:b] for a, b in zip(points, points[1:])]


streams = (st.lists(st.one_of(records.map(lambda m: [m]), odd_packets), max_size=30), st.booleans(), st.integers(0, 2**40),
           st.lists(st.integers(0, 4000), max_size=12))


@settings(max_examples=300, deadline=None)
@given(*streams)
def test_the_native_path_takes_any_image_stream_as_the_python_path(items: list, end: bool, sequence: int, cuts: list[int]) -> None:
    need_native(NATIVE, "decoders/_native.c")
    chunks = _chunks(items, end, sequence, cuts)
    native = _run(chunks, NATIVE)
    python = _run(chunks, None)
    assert native == python
    sent = [m for item in items if isinstance(item, list) for m in item]
    got = [m for kind, m in native[0] if kind == "msg"]
    assert got == sent[: len(got)]  # in order, each once, up to where the stream went wrong


class _ReplicaCore(_Core):
    """A core whose image is a CompactImage: records may be loaded straight from the stream (JoinMixin's hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.image_records = CompactImage()

    image_loader = JoinMixin.image_loader

    def on_image_messages(self, msgs: list[tuple]) -> None:
        super().on_image_messages([m for m in msgs if m[0] != b"I"])
        self.image_records.apply_many(msgs)


@settings(max_examples=200, deadline=None)
@given(*streams)
def test_records_loaded_into_a_compact_replica_are_the_records_the_python_path_applies(items: list, end: bool, sequence: int,
                                                                                       cuts: list[int]) -> None:
    need_native(NATIVE, "decoders/_native.c")
    need_native(compact_image._COMPACT, "mdcommon/_compact.c")
    chunks = _chunks(items, end, sequence, cuts)
    core = _ReplicaCore()
    log, records_read, outcome = _run(chunks, NATIVE, core)
    python = _run(chunks, None)
    want = Image()
    want.apply_many([m for kind, m in python[0] if kind == "msg"])
    assert core.image_records == want
    assert log == [e for e in python[0] if e[0] != "msg" or e[1][0] != b"I"]
    assert (records_read, outcome) == python[1:]


def test_a_whole_image_reaches_the_core_in_runs() -> None:
    """200 records in one recv: one call to the core for the run, then the end of image."""
    need_native(NATIVE, "decoders/_native.c")
    recs = [(b"I", 1, i, f"S{i}", -2, ((1, 2, 100 + i), (5, 1, i))) for i in range(200)]
    data = b"".join([soup.login_accepted(SESSION, 1), *_packets(recs), *_packets([(END_OF_IMAGE, 1, 77, 200)])])
    calls: list[int] = []

    class Core(_Core):
        def on_image_messages(self, msgs: list[tuple]) -> None:
            calls.append(len(msgs))
            super().on_image_messages(msgs)

    client = ImageClient.__new__(ImageClient)
    client.framer, client.records, client.done, client.session = soup.SoupFramer(), 0, False, SESSION
    client.sock = _Sock([data])
    core = Core()
    assert client.on_readable(core, 0) == ["ended"]
    assert calls == [200] and client.records == 200 and client.done
    assert core.log == [("msg", m) for m in recs] + [("end", 77)]


def test_soup_messages_refuses_a_negative_offset() -> None:
    need_native(NATIVE, "decoders/_native.c")
    with pytest.raises(ValueError):
        NATIVE.soup_messages(b"", -1)
