"""Synthetic source determinism and bursts; JSON-lines source; plant configuration and its errors."""

from __future__ import annotations

import io
import socket
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders import CODECS
from mdcommon import config as cfg
from tests.conftest import need_native
from tickerplant.__main__ import main, validate
from tickerplant.config import PlantConfig
from tickerplant.plant_io import session_instance_for
from tickerplant.source import RateSchedule, SyntheticMarket, read_json_lines


def test_same_seed_same_messages() -> None:
    a, b = SyntheticMarket(500, seed=3), SyntheticMarket(500, seed=3)
    ma = a.next_messages(2000, 1) + a.next_messages(10, 2)
    mb = b.next_messages(2000, 1) + b.next_messages(10, 2)
    assert ma == mb
    assert ma != SyntheticMarket(500, seed=4).next_messages(2010, 1)
    for m in ma:
        CODECS.encode(m)  # every generated message fits its layout
    assert {m[0] for m in ma} == {b"Q", b"T", b"F"}


def test_directory_for_200k_instruments() -> None:
    d = list(SyntheticMarket(200_000).directory(5))
    assert len(d) == 200_000 and d[0] == (b"R", 5, 1, "SYM000001", -4) and d[-1][2] == 200_000


def test_opening_bell_burst() -> None:
    s = RateSchedule(1000, burst_multiplier=4, burst_seconds=2)
    assert s.due(1_000_000_000) == 4000
    assert s.due(2_000_000_000) == 8000
    assert s.due(3_000_000_000) == 9000


def test_json_lines_source() -> None:
    text = '{"type": "quote", "instrument_id": 1, "bid_price": 10, "bid_size": 1, "ask_price": 11, "ask_size": 2}\n' \
           '# comment\n{"type": "trade", "timestamp_ns": 5, "instrument_id": 1, "price": 10, "size": 3, "aggressor": "buy", "trade_id": 1}\n'
    msgs = list(read_json_lines(io.StringIO(text), now_ns=99))
    assert msgs == [(b"Q", 99, 1, 10, 1, 11, 2), (b"T", 5, 1, 10, 3, ord("B"), 1)]
    with pytest.raises(ValueError, match="line 1: quote: missing ask_size"):
        list(read_json_lines(io.StringIO('{"type": "quote", "instrument_id": 1, "bid_price": 1, "bid_size": 1, "ask_price": 1}'), 0))
    with pytest.raises(ValueError, match="line 1"):
        list(read_json_lines(io.StringIO('{"type": "nope"}'), 0))


def test_flags_override_the_file_only_when_given(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('heartbeat_interval_ms = 250\n[feed_a]\ngroup = "239.1.1.1"\n[source]\nrate = 5.0\n')
    config = cfg.daemon_config("python -m tickerplant", None, PlantConfig, ["--config", str(f), "--source-rate", "7"], validate)
    assert (config.heartbeat_interval_ms, config.feed_a.group, config.source.rate, config.feed_b.group) == (250.0, "239.1.1.1", 7.0, "239.194.2.1")
    assert "heartbeat_interval_ms = 250.0" in cfg.to_toml(config)


def test_invalid_configurations_give_clear_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[feed_a]\ngroupp = \"239.1.1.1\"\n")
    assert main(["--config", str(bad)]) == 2
    assert "unknown key 'feed_a.groupp'" in capsys.readouterr().err
    assert main(["--feed-a-interface", "nosuch0"]) == 2
    assert "does not exist on this host; interfaces here:" in capsys.readouterr().err
    assert main(["--feed-b-group", "10.1.1.1"]) == 2
    assert "not a multicast address" in capsys.readouterr().err
    c = PlantConfig()
    c.feed_b.group, c.feed_b.port = c.feed_a.group, c.feed_a.port
    with pytest.raises(ValueError, match="same interface, group and port"):
        validate(c)


def test_print_config(capsys) -> None:
    assert main(["--print-config", "--source-instruments", "12"]) == 0
    out = capsys.readouterr().out
    assert "[source]" in out and "instruments = 12" in out


def test_a_restart_never_reuses_a_session_instance(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    first = session_instance_for(-1, state, 1_800_000_000.2)
    second = session_instance_for(-1, state, 1_800_000_000.7)  # same second
    assert second == first + 1
    assert session_instance_for(5, "", 0) == 5
    assert socket.if_nametoindex("lo")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), instruments=st.integers(1, 50_000), sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=5))
def test_the_c_synthetic_market_is_the_python_one(seed: int, instruments: int, sizes: list[int]) -> None:
    """tickerplant/_synthetic.c draws what the Python generator draws (standbys regenerate each other's stream
    from the seed): the same messages, and the same random state, mids and trade ids after every batch."""
    from tickerplant import source

    need_native(source._SYNTHETIC, "tickerplant/_synthetic.c")
    fast, plain = SyntheticMarket(instruments, seed=seed), SyntheticMarket(instruments, seed=seed)
    for k, n in enumerate(sizes):
        assert fast.next_messages(n, 1_000 + k) == plain._next_messages_python(n, 1_000 + k)
        assert (fast.rng.getstate(), fast.mid, fast.trade_id) == (plain.rng.getstate(), plain.mid, plain.trade_id)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), calls=st.lists(st.tuples(st.sampled_from(["c", "python", "look"]), st.integers(0, 700)),
                                                  min_size=1, max_size=12))
def test_the_c_generator_keeps_its_state_between_calls_and_hands_it_back(seed: int, calls: list[tuple[str, int]]) -> None:
    """The C generator keeps the random state in a buffer of its own between calls (paced batches of a few
    messages each); the Python generator, or anybody reading `rng`, takes it back first. Any interleaving of
    the three gives the Python generator's messages and state."""
    from tickerplant import source

    need_native(source._SYNTHETIC, "tickerplant/_synthetic.c")
    mixed, plain = SyntheticMarket(300, seed=seed), SyntheticMarket(300, seed=seed)
    for k, (how, n) in enumerate(calls):
        if how == "look":
            assert mixed.rng.getstate() == plain.rng.getstate()
            continue
        got = mixed.next_messages(n, k) if how == "c" else mixed._next_messages_python(n, k)
        assert got == plain._next_messages_python(n, k)
    assert (mixed.rng.getstate(), mixed.mid, mixed.trade_id) == (plain.rng.getstate(), plain.mid, plain.trade_id)


def test_the_c_generator_refuses_a_state_that_is_not_one() -> None:
    from tickerplant import source

    c = need_native(source._SYNTHETIC, "tickerplant/_synthetic.c")
    market = SyntheticMarket(10, seed=1)
    good = c.state_buffer(market.rng.getstate()[1])
    assert c.state_tuple(good) == market.rng.getstate()[1]
    for bad in (good[:-1], bytearray(len(good))[:-4] + (625).to_bytes(4, sys.byteorder), bytearray(len(good) - 4) + (-1).to_bytes(4, sys.byteorder, signed=True)):
        with pytest.raises(ValueError):
            c.next_messages(bad, 1, 0, market.mid, market.trade_id, 10, source._C_CONSTS)
    for bad_state in ((1,) * 624, (2**32,) + (0,) * 623 + (624,), (0,) * 624 + (625,)):
        with pytest.raises(ValueError):
            c.state_buffer(bad_state)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.lists(st.tuples(st.integers(0, 2500), st.sampled_from(["drop", "batch", "some", "ints"]),
                                                           st.integers(0, 2**16)), min_size=1, max_size=10))
def test_the_c_generator_reuses_only_what_nobody_holds(seed: int, steps: list[tuple[int, str, int]]) -> None:
    """The C generator fills again in place the tuples (and their ints) of messages the caller dropped
    (pyobj_reuse.h). Whatever the caller keeps, a whole batch, some messages or single ints, keeps its value
    through every later batch, and every batch is still the Python generator's."""
    from tickerplant import source

    need_native(source._SYNTHETIC, "tickerplant/_synthetic.c")
    fast, plain = SyntheticMarket(50, seed=seed), SyntheticMarket(50, seed=seed)
    kept: list[tuple[object, str]] = []  # (object kept, its repr then)
    for k, (n, keep, pick) in enumerate(steps):
        got = fast.next_messages(n, 10**12 + k)
        assert got == plain._next_messages_python(n, 10**12 + k)
        if keep == "batch":
            kept.append((got, repr(got)))
        elif keep == "some":
            kept += [(m, repr(m)) for m in got[pick % 7::7]]
        elif keep == "ints":
            kept += [(m[j], repr(m[j])) for m in got[pick % 5::5] for j in range(2, len(m)) if isinstance(m[j], int)]
        del got
        for obj, then in kept:
            assert repr(obj) == then
    assert (fast.rng.getstate(), fast.mid, fast.trade_id) == (plain.rng.getstate(), plain.mid, plain.trade_id)


def test_the_c_generator_takes_only_int64_arrays_of_every_instrument() -> None:
    from array import array

    from tickerplant import source

    c = need_native(source._SYNTHETIC, "tickerplant/_synthetic.c")
    market = SyntheticMarket(10, seed=1)
    state = c.state_buffer(market.rng.getstate()[1])
    for mid, trade_id in ((list(market.mid), market.trade_id), (market.mid, array("i", [0] * 10)), (market.mid[:9], market.trade_id),
                          (market.mid, market.trade_id[:9]), (bytes(80), market.trade_id)):
        with pytest.raises(ValueError, match="array"):
            c.next_messages(state, 1, 0, mid, trade_id, 10, source._C_CONSTS)
    assert len(c.next_messages(state, 5, 0, market.mid, market.trade_id, 10, source._C_CONSTS)) == 5
