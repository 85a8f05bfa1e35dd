"""`python -m tickerplant replay --fast --frames`: a capture's frames sent as captured through a packet socket, as
tcpreplay does. What it refuses needs nothing; what it sends is checked in a private network namespace (root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from decoders.pcap import PcapWriter
from mdcommon.batch_io import BATCH
from mdcommon.replay_io import frame_replay, main
from tests.conftest import need_native, need_root, need_tool

ROOT = Path(__file__).resolve().parents[2]
A, B = ("239.197.3.1", 33301), ("239.197.3.2", 33302)


def _capture(path: Path, n: int, dst: tuple[str, int] = A) -> list[bytes]:
    w = PcapWriter(path)
    payloads = [i.to_bytes(4, "big") * (1 + i % 300) for i in range(n)]
    for i, p in enumerate(payloads):
        group, port = (dst if i % 2 == 0 else B) if dst == A else dst
        w.write(1_700_000_000_000_000_000 + i * 1000, "127.0.0.1", 40000, group, port, p)
    w.close()
    return payloads


def test_only_whole_multicast_udp_frames_are_sent_as_captured(tmp_path: Path) -> None:
    need_native(BATCH, "mdcommon/_batch_io.c")
    ok, unicast = tmp_path / "ok.pcap", tmp_path / "unicast.pcap"
    _capture(ok, 10)
    _capture(unicast, 10, dst=("127.0.0.1", 33303))
    assert BATCH.pcap_scan(ok.read_bytes()) == (0, 10)
    assert BATCH.pcap_scan(unicast.read_bytes()) is None  # a unicast destination: the datagram replay's business
    assert BATCH.pcap_scan(ok.read_bytes()[:-3]) is None  # a record cut short
    assert BATCH.pcap_scan(b"\x0a\x0d\x0d\x0a" + bytes(40)) is None  # pcapng
    with pytest.raises(ValueError, match="multicast"):
        frame_replay(unicast)
    assert main([str(ok), "--frames"]) == 2  # --frames goes with --fast
    assert main([str(ok), "--fast", "--frames", "--map", f"{A[0]}:{A[1]}=lo"]) == 2  # and remaps nothing


_RECEIVER = r"""
import json, selectors, subprocess, sys, threading
from mdcommon.mcast_recv_io import open_receiver
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["sysctl", "-qw", "net.ipv4.conf.lo.route_localnet=1", "net.ipv4.conf.lo.accept_local=1"], check=True)
groups = json.loads(sys.argv[2])
socks = [open_receiver("lo", g, p, 8 << 20)[0] for g, p in groups]
got = [[] for _ in socks]
sel = selectors.DefaultSelector()
for i, s in enumerate(socks):
    sel.register(s, selectors.EVENT_READ, i)
done = threading.Event()
def rx():
    buf = bytearray(65536)
    idle = 0
    while idle < 10:
        events = sel.select(0.1)
        idle = 0 if events else idle + (1 if done.is_set() else 0)
        for k, _ in events:
            while True:
                try:
                    n = k.fileobj.recv_into(buf)
                except BlockingIOError:
                    break
                got[k.data].append(bytes(buf[:n]).hex())
t = threading.Thread(target=rx)
t.start()
r = subprocess.run([sys.executable, "-m", "tickerplant", "replay", "--fast", "--frames", sys.argv[1]], capture_output=True, text=True)
done.set()
t.join()
print(json.dumps({"rc": r.returncode, "out": r.stdout, "err": r.stderr[-500:], "got": got}))
"""


def test_the_frames_reach_receivers_as_captured(tmp_path: Path) -> None:
    need_root()
    need_tool("unshare")
    need_native(BATCH, "mdcommon/_batch_io.c")
    cap = tmp_path / "ab.pcap"
    payloads = _capture(cap, 3000)
    r = subprocess.run(["unshare", "-n", "--", sys.executable, "-c", _RECEIVER, str(cap), json.dumps([A, B])], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0, res
    report = json.loads(res["out"])
    assert report["sent"] == 3000 and report["send_errors"] == 0
    assert res["got"][0] == [p.hex() for p in payloads[0::2]]  # every datagram, in order, byte for byte
    assert res["got"][1] == [p.hex() for p in payloads[1::2]]
