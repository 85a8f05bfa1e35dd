"""Invalid configurations of each kind give the documented error and exit status 2, for every daemon."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from linehandler.__main__ import main as handler_main
from retransmit.__main__ import main as rtx_main
from tickerplant.__main__ import main as plant_main

CASES = [
    ("unknown key", "[bogus]\nx = 1\n", [], "unknown key 'bogus'"),
    ("wrong type", "stats_interval_s = \"often\"\n", [], "expected float"),
]


@pytest.mark.parametrize("name,toml,flags,message", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("run", [lambda a: plant_main(a), lambda a: handler_main(["run", *a]), lambda a: rtx_main(["serve", *a])],
                         ids=["plant", "handler", "rtx"])
def test_bad_files(run, name: str, toml: str, flags: list[str], message: str, tmp_path: Path, capsys) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(toml)
    assert run(["--config", str(f), *flags]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("run,prefix", [(lambda a: handler_main(["run", *a]), "--channel-feed-a"), (lambda a: rtx_main(["serve", *a]), "--feed-a")],
                         ids=["handler", "rtx"])
def test_bad_feeds(run, prefix: str, capsys) -> None:
    assert run([f"{prefix}-interface", "nosuch0"]) == 2
    assert "does not exist on this host; interfaces here:" in capsys.readouterr().err
    assert run([f"{prefix}-group", "10.9.9.9"]) == 2
    assert "is not a multicast address" in capsys.readouterr().err


def test_port_in_use_is_refused(capsys) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        assert rtx_main(["serve", "--request-port", str(s.getsockname()[1])]) == 2
        assert "cannot be bound" in capsys.readouterr().err
        assert plant_main(["--request-address", "127.0.0.1", "--request-port", str(s.getsockname()[1])]) == 2
        assert "cannot be bound" in capsys.readouterr().err
    finally:
        s.close()


def test_handler_bad_server_address(capsys) -> None:
    assert handler_main(["run", "--channel-nack-servers", "nohostport"]) == 2
    assert "not host:port" in capsys.readouterr().err
