"""The ITCH 5.0 normalizer (relay/normalizer.py) against an independent book.

A synthetic ITCH session (stock directory, then random adds, executions with and without price,
cancels, deletes, replaces and non-displayed trades, all of them valid) is built with construct
(examples/itch/). The same bytes are read by `itchfeed` (PyPI, an independent parser) into a small
reference book kept here, the plain way: every live order in a dict, the top of book found by
scanning them. After every message, each quote the normalizer published must equal the reference's
top of book for that stock at that point, a quote must come exactly when the top changed, and every
trade must be the reference's execution.
"""

from __future__ import annotations

import os

os.environ["ITCH_NO_CPP"] = "1"  # the pure-Python parser is the reference, not its optional C++ drop-in

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from itch.messages import messages as ITCH_TYPES  # noqa: E402

from examples.itch.schema import MESSAGES  # noqa: E402
from relay.normalizer import ItchNormalizer  # noqa: E402
from tests.itch_session import MIDNIGHT, STOCKS, session  # noqa: E402


class ReferenceBook:
    """The plain way, from itchfeed's reading: every live order, the top of book by scanning them."""

    def __init__(self) -> None:
        self.orders: dict[int, list] = {}

    def apply(self, m) -> list[tuple]:
        """itchfeed message `m` -> the trades it prints, as (locate, price, shares, aggressor, match)."""
        t = m.message_type
        if t == b"A":
            self.orders[m.order_reference_number] = [m.stock_locate, m.buy_sell_indicator, m.price, m.shares]
        elif t in (b"E", b"C"):
            o = self.orders[m.order_reference_number]
            o[3] -= m.executed_shares
            aggressor = b"S" if o[1] == b"B" else b"B"
            price = o[2] if t == b"E" else m.execution_price
            self._drop_empty(m.order_reference_number)
            if t == b"E" or m.printable == b"Y":
                return [(o[0], price, m.executed_shares, aggressor, m.match_number)]
        elif t == b"X":
            self.orders[m.order_reference_number][3] -= m.cancelled_shares
            self._drop_empty(m.order_reference_number)
        elif t == b"D":
            del self.orders[m.order_reference_number]
        elif t == b"U":
            o = self.orders.pop(m.order_reference_number)
            self.orders[m.new_order_reference_number] = [o[0], o[1], m.price, m.shares]
        elif t == b"P":
            return [(m.stock_locate, m.price, m.shares, b"S" if m.buy_sell_indicator == b"B" else b"B", m.match_number)]
        return []

    def _drop_empty(self, ref: int) -> None:
        if self.orders[ref][3] == 0:
            del self.orders[ref]

    def top(self, locate: int) -> tuple[int, int, int, int]:
        bids = [(p, s) for loc, side, p, s in self.orders.values() if loc == locate and side == b"B"]
        asks = [(p, s) for loc, side, p, s in self.orders.values() if loc == locate and side == b"S"]
        bid = max((p for p, _ in bids), default=0)
        ask = min((p for p, _ in asks), default=0)
        return (bid, sum(s for p, s in bids if p == bid) if bids else 0, ask, sum(s for p, s in asks if p == ask) if asks else 0)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(50, 600))
def test_every_quote_is_the_reference_books_top_and_every_trade_its_execution(seed: int, n: int) -> None:
    norm = ItchNormalizer(MIDNIGHT)
    ref = ReferenceBook()
    tops = {locate: (0, 0, 0, 0) for locate in STOCKS}
    for name, raw in session(seed, n):
        theirs = ITCH_TYPES[raw[:1]](raw)
        out = norm.on_message(name, MESSAGES[name].parse(raw))
        trades = ref.apply(theirs)
        ts = MIDNIGHT + theirs.timestamp
        if name == "stock_directory":
            assert out == [(b"R", ts, theirs.stock_locate, theirs.stock.decode().rstrip(), -4)]
            continue
        got_trades = [m for m in out if m[0] == b"T"]
        assert got_trades == [(b"T", ts, loc, p, s, a[0], match) for loc, p, s, a, match in trades], name
        locate = theirs.stock_locate
        quotes = [m for m in out if m[0] == b"Q"]
        top = ref.top(locate)
        if top != tops[locate]:
            assert quotes == [(b"Q", ts, locate, *top)], (name, quotes, top)
            tops[locate] = top
        else:
            assert quotes == [], (name, quotes)
    assert norm.counters["unknown_order"] == norm.counters["overfill"] == norm.counters["duplicate_order"] == 0


def test_input_that_does_not_fit_the_book_is_counted_and_changes_nothing() -> None:
    norm = ItchNormalizer(MIDNIGHT)
    (_, directory), = session(1, 0)[:1]
    norm.on_message("stock_directory", MESSAGES["stock_directory"].parse(directory))
    base = {"stock_locate": 1, "tracking_number": 0, "timestamp": 1}
    add = {**base, "order_reference_number": 7, "buy_sell_indicator": "buy", "shares": 100, "stock": "AAPL    ", "price": 990_000}
    assert norm.on_message("add_order", add) == [(b"Q", MIDNIGHT + 1, 1, 990_000, 100, 0, 0)]
    assert norm.on_message("add_order", add) == []  # the same reference again
    assert norm.on_message("add_order", {**add, "stock_locate": 9, "order_reference_number": 8}) == []  # a stock never listed
    assert norm.on_message("order_delete", {**base, "order_reference_number": 99}) == []
    out = norm.on_message("order_cancel", {**base, "order_reference_number": 7, "cancelled_shares": 500})  # more than it has
    assert out == [(b"Q", MIDNIGHT + 1, 1, 0, 0, 0, 0)]
    c = norm.counters
    assert (c["duplicate_order"], c["unknown_stock"], c["unknown_order"], c["overfill"]) == (1, 1, 1, 1)


def test_a_side_that_is_neither_buy_nor_sell_is_counted_not_a_crash() -> None:
    norm = ItchNormalizer(MIDNIGHT)
    (_, directory), = session(1, 0)[:1]
    norm.on_message("stock_directory", MESSAGES["stock_directory"].parse(directory))
    raw = bytearray(MESSAGES["add_order"].build({"stock_locate": 1, "tracking_number": 0, "timestamp": 1, "order_reference_number": 7,
                                                 "buy_sell_indicator": "buy", "shares": 100, "stock": "AAPL    ", "price": 990_000}))
    raw[19] = ord("X")  # the side byte
    assert norm.on_message("add_order", MESSAGES["add_order"].parse(bytes(raw))) == []
    assert norm.counters["bad_side"] == 1
