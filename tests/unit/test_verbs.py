"""The three daemons take the same verbs: `run` starts one, `status` looks at a running one."""

from __future__ import annotations

import tomllib

import pytest

from linehandler.__main__ import main as handler_main
from retransmit.__main__ import main as rtx_main
from tickerplant.__main__ import main as plant_main

MAINS = {"tickerplant": plant_main, "linehandler": handler_main, "retransmit": rtx_main}


@pytest.mark.parametrize("name", MAINS)
def test_run_print_config_is_the_effective_configuration(name: str, capsys) -> None:
    assert MAINS[name](["run", "--print-config"]) == 0
    assert tomllib.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", MAINS)
def test_an_unknown_verb_is_refused_with_the_list(name: str, capsys) -> None:
    assert MAINS[name](["launch"]) == 2
    err = capsys.readouterr().err
    assert f"{name}: unknown command 'launch'" in err and "run" in err and "status" in err


def test_earlier_forms_keep_working(capsys) -> None:
    assert plant_main(["--print-config"]) == 0  # the plant without a verb
    plant = capsys.readouterr().out
    assert rtx_main(["serve", "--print-config"]) == 0  # the server's old verb
    assert tomllib.loads(plant) and tomllib.loads(capsys.readouterr().out)


def test_status_of_a_missing_socket_is_a_clear_error(tmp_path, capsys) -> None:
    for name, main in MAINS.items():
        assert main(["status", "--socket", str(tmp_path / "none.sock"), "--once"]) != 0, name
