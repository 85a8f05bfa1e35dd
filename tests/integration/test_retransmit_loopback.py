"""The retransmission server seen from the wire, on loopback, while the plant publishes.

Unlike the end-to-end test (which goes through the line handler), this speaks raw MoldUDP64 and SoupBinTCP, so a
wrong answer cannot be hidden by the handler's own recovery: the NACK answer must carry exactly the plant's messages
at those sequence numbers, and the image served at sequence N must equal, field by field, the plant's image at N.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from decoders import CODECS, soup
from decoders.moldudp64 import decode_datagram, encode_request
from mdcommon.image import Image
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags, free_port, published, wait_for_port
from tests.integration.test_retransmit_limits import session_of

ROOT = Path(__file__).resolve().parents[2]


def fetch_image(port: int, session: bytes) -> tuple[list[tuple], tuple]:
    """Log in over SoupBinTCP and read record images up to end of image; return (records, end_of_image)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        c.sendall(soup.login_request("", "", session, 1))
        framer = soup.SoupFramer()
        records: list[tuple] = []
        while True:
            data = c.recv(1 << 16)
            assert data, "the server closed before end of image"
            for pkt in framer.feed(data):
                name, fields = soup.decode_packet(pkt)
                if name == "login_accepted" or name == "server_heartbeat":
                    continue
                assert name == "sequenced_data", (name, fields)
                msg = CODECS.decode(fields[-1])
                if msg[0] == b"G":
                    return records, msg
                assert msg[0] == b"I", msg
                records.append(msg)
    finally:
        c.close()


def test_nack_and_image_over_the_wire_match_what_the_plant_published(tmp_path: Path) -> None:
    a, b = unique_feeds()
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    record = tmp_path / "published.jsonl"
    status = tmp_path / "rtx.sock"
    server = subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", a, b), "--request-port", str(udp),
                               "--image-port", str(tcp), "--stats-interval-s", "0", "--status-socket", str(status), "--duration-s", "30"],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for_port(tcp)
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "10000",
                              "--source-instruments", "300", "--source-burst-seconds", "0", "--duration-s", "4",
                              "--stats-interval-s", "0", "--end-of-session-linger-ms", "300", "--record-file", str(record)],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        session = session_of(status)
        records, end = fetch_image(tcp, session)  # while the plant is still publishing
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(encode_request(session, 100, 500), ("127.0.0.1", udp))
        answers = []
        got = 0
        while got < 500:
            answers.append(decode_datagram(s.recv(65536), CODECS))
            got += len(answers[-1][3])
        s.sendto(encode_request(session, 1, 0), ("127.0.0.1", udp))  # count 0: an explicit reject, never silence
        reject = decode_datagram(s.recv(65536), CODECS)
        s.close()
        assert plant.wait(timeout=20) == 0
    finally:
        server.terminate()
        server.wait(timeout=10)
    truth = published(record)
    # the NACK answer: ordinary downstream datagrams, contiguous, exactly the plant's messages
    expect = 100
    for sess, first, _count, msgs in answers:
        assert sess == session and first == expect
        for i, msg in enumerate(msgs):
            assert msg == truth[first + i]
        expect += len(msgs)
    assert expect == 600
    assert reject[1] == 0 and CODECS.to_dict(reject[3][0])["reason"] == "count_out_of_range"
    # the image at N: field by field against the plant's state after exactly the messages with seq <= N
    n = end[2]
    assert 0 < n < max(truth)  # taken mid-stream, so the consistency point matters
    at_n = Image()
    for seq in sorted(truth):
        if seq > n:
            break
        at_n.apply(truth[seq])
    expected = list(at_n.record_messages(0))
    assert end[3] == len(records) == len(expected)
    for got_rec, want in zip(records, expected, strict=True):
        assert got_rec[2:] == want[2:]  # instrument, symbol, exponent, every (field, type, value); not the timestamp
    served = Image()
    for r in records:
        served.load_record(r)
    assert served == at_n
    final = Image()
    for seq in sorted(truth):
        final.apply(truth[seq])
    assert final != at_n  # the comparison can tell an image at N from a later one
