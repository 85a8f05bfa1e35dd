"""`python -m decoders` turns hex or raw datagrams into JSON lines, errors into JSON on stderr."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from decoders import CODECS, SCHEMA_FINGERPRINT, make_session
from decoders.__main__ import decode_stream, main
from decoders.moldudp64 import encode_datagram, encode_heartbeat

ROOT = Path(__file__).resolve().parents[2]
S = make_session(SCHEMA_FINGERPRINT, 9)


def test_hex_file_gives_one_json_line_per_message(tmp_path: Path, capsys) -> None:
    dg = encode_datagram(S, 41, [CODECS.encode((b"R", 1, 3, "XYZ", -2)), CODECS.encode((b"Q", 2, 3, 150, 1, 160, 2))])
    f = tmp_path / "in.hex"
    f.write_text(f"# two datagrams\n{dg.hex()}\n{encode_heartbeat(S, 43).hex()}\n")
    assert main([str(f)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"session": S.decode(), "sequence": 41, "type": "instrument_directory", "msg_type": "R", "timestamp_ns": 1,
         "instrument_id": 3, "symbol": "XYZ", "price_exponent": -2},
        {"session": S.decode(), "sequence": 42, "type": "quote", "msg_type": "Q", "timestamp_ns": 2, "instrument_id": 3,
         "bid_price": 150, "bid_size": 1, "ask_price": 160, "ask_size": 2},
        {"session": S.decode(), "sequence": 43, "event": "heartbeat"},
    ]


def test_raw_file_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.bin"
    good.write_bytes(encode_datagram(S, 7, [CODECS.encode((b"T", 1, 2, 3, 4, ord("B"), 5))]))
    bad = tmp_path / "bad.bin"
    bad.write_bytes(encode_datagram(S, 7, [CODECS.encode((b"T", 1, 2, 3, 4, ord("B"), 5))])[:-3])
    out, err = io.StringIO(), io.StringIO()
    from decoders.__main__ import _datagrams

    inputs = list(_datagrams(good.read_bytes(), "raw", "good")) + list(_datagrams(bad.read_bytes(), "raw", "bad"))
    assert decode_stream(iter(inputs), 65507, out, err) == 1
    assert json.loads(out.getvalue())["aggressor"] == "buy"
    e = json.loads(err.getvalue())
    assert (e["input"], e["error"]) == ("bad", "block_past_end")


def test_stdin_hex_through_the_module_entry_point() -> None:
    dg = encode_datagram(S, 1, [CODECS.encode((b"F", 1, 2, 7, 1, -5))])
    r = subprocess.run([sys.executable, "-m", "decoders", "-"], input=dg.hex().encode(), capture_output=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["value"] == -5


def test_bundled_sample_decodes() -> None:
    r = subprocess.run([sys.executable, "-m", "decoders", "examples/sample_datagrams.hex"], capture_output=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    types = [json.loads(x).get("type", json.loads(x).get("event")) for x in r.stdout.splitlines()]
    assert types == ["system_event", "instrument_directory", "quote", "trade", "field_update", "heartbeat"]
