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
@pytest.mark.parametrize("run", [lambda a: plant_main(a), lambda a: handler_main(["run", *a]), lambda a: rtx_main(["run", *a])],
                         ids=["plant", "handler", "rtx"])
def test_bad_files(run, name: str, toml: str, flags: list[str], message: str, tmp_path: Path, capsys) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(toml)
    assert run(["--config", str(f), *flags]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("run,prefix", [(lambda a: handler_main(["run", *a]), "--channel-feed-a"), (lambda a: rtx_main(["run", *a]), "--feed-a")],
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
        assert rtx_main(["run", "--request-port", str(s.getsockname()[1])]) == 2
        assert "cannot be bound" in capsys.readouterr().err
        assert plant_main(["--request-address", "127.0.0.1", "--request-port", str(s.getsockname()[1])]) == 2
        assert "cannot be bound" in capsys.readouterr().err
    finally:
        s.close()


def test_handler_bad_server_address(capsys) -> None:
    assert handler_main(["run", "--channel-nack-servers", "nohostport"]) == 2
    assert "not host:port" in capsys.readouterr().err


def test_a_server_given_by_name_is_resolved_once_so_its_answers_are_recognised(capsys) -> None:
    """Issue 16 item 9: `localhost:31101` passed validation, then every retransmission was dropped as
    unknown_unicast (a packet's source is an address, the configured server a name)."""
    from linehandler.handler_io import parse_address

    assert parse_address("localhost:31101") == ("127.0.0.1", 31101)
    assert handler_main(["run", "--channel-nack-servers", "no-such-host.invalid:31101"]) == 2
    assert "does not resolve" in capsys.readouterr().err


@pytest.mark.parametrize("count", ["0", "65536", "100000"])
def test_a_request_size_the_wire_cannot_carry_is_refused(count: str, capsys) -> None:
    """Issue 16 item 15: above 65535 the NACK encoder raised struct.error in the running daemon; 0 gave
    endless rejects."""
    assert handler_main(["run", "--recovery-max-request-messages", count]) == 2
    assert "max_request_messages must be in 1..65535" in capsys.readouterr().err


def test_a_plant_sending_from_an_address_its_nic_lacks_is_refused(capsys) -> None:
    assert plant_main(["--feed-b-source-address", "192.0.2.7"]) == 2
    assert "feed_b.source_address 192.0.2.7 is not an address of lo" in capsys.readouterr().err


def test_a_foreign_feed_needs_a_schema_that_loads_and_has_no_images_or_pool(capsys) -> None:
    assert handler_main(["run", "--channel-schema", "no.such.module"]) == 2
    assert "schema 'no.such.module'" in capsys.readouterr().err
    assert handler_main(["run", "--channel-schema", "examples.itch.schema", "--channel-image-servers", "127.0.0.1:9"]) == 2
    assert "has no initial images" in capsys.readouterr().err
    from relay.__main__ import main as relay_main

    assert relay_main(["itch", "--upstream-schema", ""]) == 2
    assert "read with the ITCH schema" in capsys.readouterr().err
    assert relay_main(["itch", "--plant-feed-a-group", "239.194.9.1", "--plant-feed-a-port", "26400"]) == 2
    assert "publish on a group it reads" in capsys.readouterr().err
