"""The daemons never die on a datagram: 100,000 random and mutated datagrams and requests, sent at a
running plant's groups and a running retransmission server while a handler takes the real stream.
Afterwards every daemon is up, counted what it refused, and the handler delivered the plant's stream
exactly (once, in order, no GapEvent).

The mutations are what a broken or hostile sender produces: random bytes, truncations, byte flips and
rewritten headers (sequence 0, a random far-ahead sequence, other schemas and instances, counts that
lie) of real datagrams the handler has already received. None is a well-formed datagram of our session
inside the receive window ahead of the stream, and no two continue each other (a header flip applied
alike to consecutive datagrams would): coordinated forgeries a sender on the LAN can always make
(docs/operations.md; `sources` keeps them out), and no fuzzing is needed to show that.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from decoders.moldudp64 import decode_header, encode_request
from linehandler.config import ChannelConfig, FeedConfig, HandlerConfig
from linehandler.events import GapEvent
from linehandler.handler_io import LineHandler
from mdcommon.mcast_send_io import open_sender
from mdcommon.status_io import fetch_status
from tests.integration.mcast import collect, receiver, unique_feeds
from tests.integration.test_end_to_end import feed_flags, free_port, published, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
N_DATAGRAMS = 60_000
N_REQUESTS = 40_000


def _mutations(real: list[bytes], rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        d = bytearray(rng.choice(real))
        kind = rng.randrange(7)
        if kind == 0:
            d = bytearray(rng.randbytes(rng.randrange(0, 200)))
        elif kind == 1:
            d = d[: rng.randrange(0, len(d))]
        elif kind == 2 and len(d) > 20:  # flipped body bytes of a datagram already delivered: compared, never delivered
            for _ in range(rng.randrange(1, 4)):
                d[rng.randrange(20, len(d))] ^= 1 << rng.randrange(8)
        elif kind == 2:
            d = d[:-1]
        elif kind == 3:
            d[10:18] = rng.choice([0, rng.randrange(10**9, 2**64)]).to_bytes(8, "big")
        elif kind == 4:
            d[0:10] = rng.choice([b"ZZZZ", d[0:4]]) + bytes(rng.choice(b"0123456789ABCDEFZ") for _ in range(6))
        elif kind == 5:
            d[18:20] = rng.choice([0, 1, 2, 0xFFFF, rng.randrange(65536)]).to_bytes(2, "big")
        else:
            d += rng.randbytes(rng.randrange(1, 30))
        out.append(bytes(d))
    return out


def _kernel_drops(inodes: set[int]) -> int:
    """Datagrams the kernel dropped at these UDP sockets (receive buffer full): /proc/net/udp's last column."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[9]) in inodes:
            total += int(f[-1])
    return total


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def test_daemons_take_100k_bad_datagrams_and_requests_and_the_stream_stays_exact(tmp_path: Path) -> None:
    a, b = unique_feeds()
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    status = tmp_path / "rtx.sock"
    server = subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", a, b), "--request-port", str(udp),
                               "--image-port", str(tcp), "--stats-interval-s", "0", "--duration-s", "40", "--status-socket", str(status)],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for_port(tcp)
    record = tmp_path / "published.jsonl"
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "5000", "--duration-s", "6",
                              "--source-burst-seconds", "0", "--stats-interval-s", "0", "--end-of-session-linger-ms", "300",
                              "--record-file", str(record)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    delivered: list[int] = []
    events: list = []
    config = HandlerConfig(channel=ChannelConfig(feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1]),
                                                 nack_servers=[f"127.0.0.1:{udp}"], image_servers=[f"127.0.0.1:{tcp}"]),
                           stats_interval_s=0, exit_on_session_end=True)
    handler = LineHandler(config, lambda ch, seq, msg: delivered.append(seq), lambda ch, ev: events.append(ev))
    spy = receiver(*a)
    sent = {"datagrams": 0, "requests": 0}

    def fuzz() -> None:
        rng = random.Random(16)
        real = collect({"a": spy}, lambda g: len(g["a"]) >= 50, 10)["a"]
        time.sleep(0.2)  # the copies are behind the stream by now
        session = decode_header(real[-1])[0]
        mcast = open_sender("lo", source_address="127.0.0.2")
        uni = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        uni.bind(("127.0.0.3", 0))
        requests = _mutations([encode_request(session, rng.randrange(1, 3000), rng.randrange(1, 3000)) for _ in range(50)]
                              + real[:10], rng, N_REQUESTS)
        bad = _mutations(real, rng, N_DATAGRAMS)
        try:
            for i, d in enumerate(bad):
                mcast.sendto(d, a if i % 2 else b)
                sent["datagrams"] += 1
                if i % 3 == 0 and requests:
                    uni.sendto(requests.pop(), ("127.0.0.1", udp))
                    sent["requests"] += 1
                if i % 2000 == 0:
                    time.sleep(0.01)  # spread over the run instead of one burst the receive buffers drop
            for r in requests:
                uni.sendto(r, ("127.0.0.1", udp))
                sent["requests"] += 1
        finally:
            mcast.close()
            uni.close()

    thread = threading.Thread(target=fuzz)
    thread.start()
    try:
        handler.run(duration_s=40)
        ch = handler.status()["channels"]["ch1"]
        # what the kernel dropped at the handler's feed sockets and the mirror's (the server's UDP sockets), should
        # the machine starve them both at once while the fuzzer floods loopback
        handler_drops = _kernel_drops({os.fstat(s.fileno()).st_ino for s in handler.channels[0].socks.values()})
        mirror_drops = _kernel_drops(_socket_inodes(server.pid))
    finally:
        thread.join()
        handler.close()
        spy.close()
    try:
        assert server.poll() is None, f"the retransmission server died: {server.stderr.read()[-2000:] if server.stderr else ''}"
        rtx = fetch_status(str(status))
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert plant.wait(timeout=15) == 0
    assert sent == {"datagrams": N_DATAGRAMS, "requests": N_REQUESTS}
    last = max(published(record))
    gaps = [e for e in events if isinstance(e, GapEvent)]
    if handler_drops and mirror_drops and gaps:
        # The kernel dropped datagrams at the handler and at the mirror alike (seen once in CI, on a fresh
        # machine): a range lost by both is lost, and the promise is then that it is reported, precisely.
        # Every sequence is delivered once, in order, or inside exactly one GapEvent, never both.
        lost = {s for g in gaps for s in range(g.first, g.last + 1)}
        assert sum(g.last - g.first + 1 for g in gaps) == len(lost)
        assert delivered == sorted(set(delivered)) and not lost & set(delivered)
        assert set(delivered) | lost == set(range(1, last + 1)), (gaps[:5], handler_drops, mirror_drops)
        print(f"\nfuzz: the kernel dropped {handler_drops} datagrams at the handler and {mirror_drops} at the mirror; "
              f"{len(lost)} messages reported lost in {len(gaps)} GapEvents, the rest delivered exactly")
    else:
        assert not gaps, (gaps[:5], ch["stream"], handler_drops, mirror_drops)
        assert delivered == list(range(1, last + 1))
    assert ch["core_errors"] == 0 and rtx["server"]["core_errors"] == 0 and rtx["mirror"]["channels"]["ch1"]["core_errors"] == 0
    refused = {k: ch["feeds"]["A"][k] + ch["feeds"]["B"][k] for k in ("malformed", "schema_mismatch", "old_session", "other_session", "unconfirmed", "conflicts")}
    requests = rtx["server"]
    print(f"\nfuzz: {last} messages delivered exactly under {N_DATAGRAMS} bad datagrams ({refused}) and {N_REQUESTS} bad requests "
          f"(server: requests {requests['requests']}, suppressed {requests['suppressed']}, "
          f"rejected malformed {requests['rejected_malformed']}, wrong session {requests['rejected_wrong_session']})")
    assert sum(refused.values()) > N_DATAGRAMS // 2  # most arrived, and each was counted somewhere
    assert requests["requests"] > N_REQUESTS // 2
