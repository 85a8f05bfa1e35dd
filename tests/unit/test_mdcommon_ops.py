"""Operator-facing shared pieces: config checks name the fix, the status socket answers JSON, logs are key=value."""

from __future__ import annotations

import io
import json
import logging
import selectors
import socket
import threading
from pathlib import Path

import pytest

from mdcommon.logs import event, setup_logging
from mdcommon.status_io import StatusServer, fetch_status
from mdcommon.validate_io import (
    ConfigError,
    check_interface,
    check_interface_address,
    check_multicast_group,
    check_port,
    check_rcvbuf,
    check_unicast_port_free,
)


def test_unknown_interface_lists_the_ones_that_exist() -> None:
    check_interface("lo")
    with pytest.raises(ConfigError, match=r"'nosuch0' does not exist.*lo"):
        check_interface("nosuch0")


def test_a_sender_address_must_belong_to_its_interface() -> None:
    check_interface_address("lo", "127.0.0.1", "feed_a.source_address")
    check_interface_address("lo", "", "feed_a.source_address")  # empty: the kernel picks
    with pytest.raises(ConfigError, match=r"feed_a.source_address 192.0.2.7 is not an address of lo \(its IPv4 addresses: 127.0.0.1\)"):
        check_interface_address("lo", "192.0.2.7", "feed_a.source_address")
    with pytest.raises(ConfigError, match="not an IPv4 address"):
        check_interface_address("lo", "plant-a", "feed_a.source_address")


def test_group_and_port_checks() -> None:
    assert check_multicast_group("239.194.1.1") == "239.194.1.1"
    with pytest.raises(ConfigError, match="not a multicast address"):
        check_multicast_group("10.0.0.1")
    with pytest.raises(ConfigError, match="not an IPv4 address"):
        check_multicast_group("nope")
    with pytest.raises(ConfigError):
        check_port(70000)


def test_port_in_use_is_reported() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        with pytest.raises(ConfigError, match="cannot be bound"):
            check_unicast_port_free("127.0.0.1", s.getsockname()[1])
    finally:
        s.close()


def test_capped_receive_buffer_says_how_to_raise_it() -> None:
    assert check_rcvbuf(4 << 20, 8 << 20) is None
    warning = check_rcvbuf(4 << 20, 425984)
    assert warning is not None and "sysctl -w net.core.rmem_max=4194304" in warning


def _serve_one(server: StatusServer, fetch) -> list:
    """Run `fetch` in a thread while the daemon's loop serves whoever connects; what it returned."""
    got: list = []
    client = threading.Thread(target=lambda: got.append(fetch()))
    sel = selectors.DefaultSelector()
    sel.register(server.sock, selectors.EVENT_READ)
    client.start()
    try:
        for _ in range(100):
            if sel.select(timeout=0.05):
                server.on_readable()
            if not client.is_alive():
                break
    finally:
        client.join(5)
        sel.close()
    return got


def test_status_socket_serves_a_json_snapshot(tmp_path: Path) -> None:
    server = StatusServer(str(tmp_path / "s.sock"), lambda: {"feeds": {"A": {"datagrams": 3}}})
    try:
        got = _serve_one(server, lambda: fetch_status(server.path))
    finally:
        server.close()
    assert got == [{"feeds": {"A": {"datagrams": 3}}}]


def test_logs_are_key_value_or_json() -> None:
    out = io.StringIO()
    setup_logging("info", stream=out)
    log = logging.getLogger("linehandler")
    event(log, "feed_stale", feed="A", silent_ms=3000, reason="no data")
    line = out.getvalue().strip()
    assert line.endswith('info linehandler feed_stale feed=A silent_ms=3000 reason="no data"'), line
    out2 = io.StringIO()
    setup_logging("info", json_lines=True, stream=out2)
    event(log, "gap", first=5, last=9)
    assert json.loads(out2.getvalue())["first"] == 5
    setup_logging("warning")


def test_print_config_is_valid_toml_that_loads_back(tmp_path: Path) -> None:
    import tomllib

    from linehandler.config import HandlerConfig
    from mdcommon import config as cfg

    c = cfg.load(HandlerConfig, None)
    c.channel.feed_a.group = "239.9.9.9"
    c.channels = [{"name": "x", "feed_a": {"group": "239.1.1.1", "port": 5}}]
    text = cfg.to_toml(c)
    tomllib.loads(text)
    f = tmp_path / "eff.toml"
    f.write_text(text)
    again = cfg.load(HandlerConfig, f)
    assert again == c


def test_configurations_never_share_nested_tables() -> None:
    from linehandler.config import HandlerConfig

    a, b = HandlerConfig(), HandlerConfig()
    a.channel.feed_a.interface = "changed"
    a.channels.append({"name": "x"})
    assert b.channel.feed_a.interface == "lo" and b.channels == []


def test_status_socket_refuses_to_replace_a_file_or_a_live_socket_and_is_owner_only(tmp_path: Path) -> None:
    """Issue 16 item 12: the daemon unlinked whatever was at the configured path and set no mode."""
    import os
    import stat

    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        StatusServer(str(precious), dict)
    assert precious.read_text() == "keep me"
    path = str(tmp_path / "s.sock")
    live = StatusServer(path, dict)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with pytest.raises(OSError, match="in use"):
            StatusServer(path, dict)
    finally:
        live.sock.close()  # a daemon killed -9: its socket file stays, nobody listens
    again = StatusServer(path, dict)  # the leftover is replaced
    again.close()


def test_a_large_snapshot_arrives_whole(tmp_path: Path) -> None:
    """Issue 16 item 12: a partial non-blocking send truncated the JSON."""
    import time

    big = {f"channel{i}": {"figures": list(range(200))} for i in range(300)}  # about 700 KB: more than a socket buffer

    def slow_reader() -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(server.path)
            time.sleep(0.01)  # reads a moment after connecting, as a status tool on a busy host does
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return json.loads(b"".join(chunks))

    server = StatusServer(str(tmp_path / "s.sock"), lambda: big)
    try:
        assert _serve_one(server, slow_reader) == [big]
    finally:
        server.close()


def test_the_plant_wakes_within_a_microsecond_of_its_timers() -> None:
    """tighten_timer_slack: Linux's default 50 µs timer slack made every batch due every 100 µs leave late."""
    import subprocess
    import sys

    code = ("from mdcommon.daemon_io import tighten_timer_slack; ok = tighten_timer_slack(); "
            "print(ok, open('/proc/self/timerslack_ns').read().strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "1000"]
