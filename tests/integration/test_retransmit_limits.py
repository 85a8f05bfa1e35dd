"""The retransmission server under abuse, live on loopback: slow readers, a bad apple."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from decoders import soup
from decoders.moldudp64 import decode_header, encode_request
from mdcommon.status_io import fetch_status
from tests.integration.mcast import unique_feeds
from tests.integration.test_end_to_end import feed_flags, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_stack(tmp_path: Path, instruments: int, rate: int, extra: list[str]):
    a, b = unique_feeds()
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    status = tmp_path / "rtx.sock"
    server = subprocess.Popen([sys.executable, "-m", "retransmit", "run", *feed_flags("", a, b), "--request-port", str(udp), "--image-port",
                               str(tcp), "--stats-interval-s", "0", "--status-socket", str(status), "--duration-s", "40", *extra],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for_port(tcp)
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-instruments", str(instruments),
                              "--source-rate", str(rate), "--source-burst-seconds", "0", "--duration-s", "30", "--stats-interval-s", "0"],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    return server, plant, udp, tcp, status


def session_of(status: Path) -> bytes:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        snap = fetch_status(str(status))
        s = snap["mirror"]["channels"]["ch1"]["session"]
        if s and snap["journal"]["next_sequence"] > 3000:
            return s.encode()
        time.sleep(0.1)
    raise TimeoutError("the mirror never caught the session")


def test_slow_readers_are_disconnected_and_memory_stays_flat(tmp_path: Path) -> None:
    """Five more clients that read nothing cost the server far less than one copy of the image each.

    The server's RSS also grows while nobody connects (the plant publishes 2,000 msg/s into
    the journal and the mirror, and the allocator keeps what it frees), so the same interval
    is measured twice in one run: once with no new client (the control), once while five slow
    readers sit on the shared snapshot. Their cost is the difference. If each client held its
    own copy of the image, the difference would be at least 5 images.
    """
    # Reuse the snapshot for a minute so that the five join the first client's (by default they would share one of their own).
    server, plant, udp, tcp, status = start_stack(tmp_path, 60_000, 2000, ["--slow-reader-timeout-s", "1", "--image-reuse-ms", "60000"])
    try:
        session = session_of(status)
        deadline = time.monotonic() + 20
        while fetch_status(str(status))["mirror"]["channels"]["ch1"]["instruments"] < 60_000:  # the whole directory mirrored
            assert time.monotonic() < deadline, "the mirror never held the 60,000 instruments"
            time.sleep(0.05)

        def client() -> socket.socket:
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that barely reads
            c.connect(("127.0.0.1", tcp))
            c.sendall(soup.login_request("", "", session, 1))
            return c

        clients = [client()]  # the first builds the snapshot all share
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            images = fetch_status(str(status))["images"]
            if images["snapshot_done"] and images["clients_now"] == 1:
                break
            time.sleep(0.05)
        image_kib = images["snapshot_bytes"] // 1024
        time.sleep(0.5)
        base = rss_kib(server.pid)
        time.sleep(3.0)
        control = rss_kib(server.pid) - base  # what 3 s of publishing costs with no new client
        base = rss_kib(server.pid)
        clients += [client() for _ in range(5)]
        time.sleep(3.0)
        grown = rss_kib(server.pid) - base
        closed = 0
        for c in clients:
            c.settimeout(5)
            try:
                while c.recv(1 << 20):
                    pass  # drain what was queued before the server gave up on us
                closed += 1
            except ConnectionResetError:
                closed += 1
            c.close()
        snap = fetch_status(str(status))
        per_client = (grown - control) / 5
        print(f"\nslow readers: 6 connected, {snap['images']['slow_readers_closed']} closed by the server; image {image_kib} KiB "
              f"(60,000 instruments, {snap['images']['snapshots_taken']} snapshot); RSS over 3 s: {control} KiB with no new client, "
              f"{grown} KiB with 5 new slow readers: {per_client:.0f} KiB a client")
        assert snap["images"]["slow_readers_closed"] == 6 and closed == 6
        assert snap["images"]["snapshots_taken"] == 1
        assert image_kib > 1000  # the image is large enough for a copy per client to show
        # Clients share one snapshot: a client's cost is its bookkeeping and a few chunk views, not an image.
        assert per_client < image_kib / 8
    finally:
        plant.terminate()
        server.terminate()
        plant.wait(timeout=10)
        server.wait(timeout=10)


def recovery_time(udp: int, session: bytes, seq: int) -> float:
    """Seconds until a 200-message request is wholly answered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    t0 = time.perf_counter()
    s.sendto(encode_request(session, seq, 200), ("127.0.0.1", udp))
    got = 0
    while got < 200:
        data = s.recv(65536)
        _, first, count = decode_header(data)
        assert first != 0, "the honest requester was rejected"
        got += count
    s.close()
    return time.perf_counter() - t0


def test_a_bad_apple_does_not_delay_an_honest_recovery(tmp_path: Path) -> None:
    server, plant, udp, tcp, status = start_stack(tmp_path, 1000, 5000, [])
    try:
        session = session_of(status)
        baseline = sorted(recovery_time(udp, session, 1000 + 300 * i) for i in range(5))[2]
        stop = threading.Event()
        sent = [0]

        def flood() -> None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.2", 0))  # another host: requesters are buckets by address, whatever their ports
            s.setblocking(False)
            while not stop.is_set():
                try:
                    s.sendto(encode_request(session, 1 + (sent[0] % 40) * 25, 2000), ("127.0.0.1", udp))  # new ranges: no dedupe
                    sent[0] += 1
                except BlockingIOError:
                    time.sleep(0.0001)
                if sent[0] % 50 == 0:
                    time.sleep(0.001)  # ~5,000 requests/s: 100x the 50/s a requester is allowed
            s.close()

        t = threading.Thread(target=flood)
        t.start()
        time.sleep(0.5)
        try:
            under_flood = sorted(recovery_time(udp, session, 2500 + 300 * i) for i in range(5))[2]
        finally:
            stop.set()
            t.join()
        snap = fetch_status(str(status))["server"]
        print(f"\nhonest 200-message recovery: {baseline * 1e3:.1f} ms alone, {under_flood * 1e3:.1f} ms while one requester sent "
              f"{sent[0]} requests ({snap['rejected_rate_limited']} rate-limited, {snap['suppressed']} suppressed)")
        assert under_flood < max(0.2, 5 * baseline)  # the stated bound: 200 ms (or 5x the time alone)
        assert snap["rejected_rate_limited"] + snap["suppressed"] > 100  # the bad apple hit its own bucket
    finally:
        plant.terminate()
        server.terminate()
        plant.wait(timeout=10)
        server.wait(timeout=10)


def test_a_restarted_server_keeps_its_history(tmp_path: Path) -> None:
    from decoders import CODECS
    from decoders.moldudp64 import decode_datagram

    a, b = unique_feeds()
    udp, tcp, plant_udp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    journal_file = tmp_path / "journal.bin"
    status = tmp_path / "rtx.sock"
    # what was published while the server was down is repaired from the plant's journal, as in production
    cmd = [sys.executable, "-m", "retransmit", "run", *feed_flags("", a, b), "--request-port", str(udp), "--image-port", str(tcp),
           "--stats-interval-s", "0", "--status-socket", str(status), "--journal-file", str(journal_file), "--duration-s", "30",
           "--repair-servers", f"127.0.0.1:{plant_udp}"]
    first = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for_port(tcp)
    plant = subprocess.Popen([sys.executable, "-m", "tickerplant", *feed_flags("", a, b), "--source-rate", "5000", "--source-burst-seconds", "0",
                              "--duration-s", "30", "--stats-interval-s", "0", "--request-address", "127.0.0.1", "--request-port", str(plant_udp)],
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        session = session_of(status)
        first.terminate()
        assert first.wait(timeout=10) == 0
        second = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_port(tcp)
            time.sleep(1.0)
            snap = fetch_status(str(status))
            assert snap["journal"]["first_sequence"] == 1  # the history from before the restart
            assert snap["mirror"]["channels"]["ch1"]["stream"]["gaps_recovered_by_nack"] >= 1  # the downtime, from the plant
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(5)
            s.sendto(encode_request(session, 1, 10), ("127.0.0.1", udp))
            _, seq, count, msgs = decode_datagram(s.recv(65536), CODECS)
            s.close()
            assert (seq, count) == (1, 10) and msgs[0][0] == b"S"  # sequence 1: the start-of-session event
            c = socket.create_connection(("127.0.0.1", tcp), timeout=5)  # and the image, rebuilt from the file
            c.sendall(soup.login_request("", "", session, 1))
            name, fields = soup.decode_packet(soup.SoupFramer().feed(c.recv(64))[0])
            c.close()
            assert name == "login_accepted"
        finally:
            second.terminate()
            second.wait(timeout=10)
            print("\n" + [ln for ln in second.stderr.read().splitlines() if "journal_loaded" in ln][0][-160:])
    finally:
        plant.terminate()
        plant.wait(timeout=10)
