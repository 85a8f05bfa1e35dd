"""ITCH 5.0 in, our channel's messages out: an order-by-order book per stock, published as top of book.

The first layer of a relay (issue 20): an exchange's order feed normalized into the instrument
directory, quotes and trades our handlers understand. Sans-I/O and deterministic: the same ITCH
messages give the same output messages, timestamps included (ITCH's nanoseconds since midnight
plus the session date's midnight, never a clock), so two relays can run as a hot-standby pair.

Rules (NASDAQ TotalView-ITCH 5.0, sections 4.2.1 and 4.3-4.5):
1. A stock directory (R) publishes an instrument directory: instrument id = the stock locate
   code, prices with 4 implied decimals (price exponent -4).
2. Add (A), executed (E), executed with price (C), cancel (X), delete (D) and replace (U) change
   the book; after each, a quote is published for the stock if its best bid or ask (price or size)
   changed. An empty side is price 0, size 0.
3. Executions are trades: E at the resting order's price, C at its execution price when printable
   (a non-printable one is counted in a later bulk print), P (non-displayed) at its price. The
   aggressor is the side opposite the resting order; the trade id is the ITCH match number.
4. Input that does not fit the book (an order reference unknown or already used, more shares
   executed or cancelled than the order has, a message for a stock never in the directory) is
   counted and changes nothing it cannot change correctly; it is never silently taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sortedcontainers import SortedDict

from mdcommon.counters import Counter, CounterSet

__all__ = ["ItchNormalizer", "NORMALIZER_COUNTERS", "PRICE_EXPONENT"]

PRICE_EXPONENT = -4  # ITCH prices carry 4 implied decimals; ours are the same integers with a declared exponent
_BUY, _SELL = ord("B"), ord("S")
_HANDLED = frozenset({"stock_directory", "add_order", "order_executed", "order_executed_with_price", "order_cancel", "order_delete",
                      "order_replace", "trade"})
_SIDES = {"buy": _BUY, "sell": _SELL, _BUY: _BUY, _SELL: _SELL, b"B": _BUY, b"S": _SELL}

NORMALIZER_COUNTERS = CounterSet(
    "relay_itch",
    [
        Counter(0, "messages", "ITCH messages read"),
        Counter(1, "quotes", "quotes published (top of book changed)"),
        Counter(2, "trades", "trades published"),
        Counter(3, "directory", "instrument directory messages published"),
        Counter(4, "unknown_order", "messages for an order reference the book does not hold (ignored)"),
        Counter(5, "duplicate_order", "adds or replaces with an order reference already on the book (ignored)"),
        Counter(6, "overfill", "executions or cancels of more shares than the order had (the order is removed)"),
        Counter(7, "unknown_stock", "orders for a stock locate never in the directory (ignored)"),
        Counter(8, "not_printable", "executions with price marked non-printable (book changed, no trade)"),
        Counter(9, "other", "ITCH messages this normalizer does not use (system events, ...)"),
        Counter(10, "bad_side", "adds or trades whose side is neither B nor S (ignored)"),
    ],
)


class _Book:
    """One stock's price levels: total shares per price, per side."""

    __slots__ = ("bids", "asks", "top")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.top = (0, 0, 0, 0)

    def change(self, side: int, price: int, shares: int) -> None:
        levels = self.bids if side == _BUY else self.asks
        left = levels.get(price, 0) + shares
        if left > 0:
            levels[price] = left
        else:
            levels.pop(price, None)

    def best(self) -> tuple[int, int, int, int]:
        bid = self.bids.peekitem(-1) if self.bids else (0, 0)
        ask = self.asks.peekitem(0) if self.asks else (0, 0)
        return (bid[0], bid[1], ask[0], ask[1])


class ItchNormalizer:
    """Feed `on_message(name, fields)`; get our message tuples back (see the module rules)."""

    def __init__(self, midnight_ns: int) -> None:
        self.midnight_ns = midnight_ns  # the session date's midnight, ns since the epoch (ITCH times are since midnight)
        self.books: dict[int, _Book] = {}
        self.orders: dict[int, list] = {}  # reference -> [stock locate, side, price, shares]
        self.counters = NORMALIZER_COUNTERS.new()

    def on_message(self, name: str, m: Mapping[str, Any]) -> list[tuple]:
        c = self.counters.values
        c[NORMALIZER_COUNTERS.messages] += 1
        ts = self.midnight_ns + m["timestamp"]
        handler = getattr(self, "_" + name, None) if name in _HANDLED else None
        if handler is None:
            c[NORMALIZER_COUNTERS.other] += 1
            return []
        return handler(ts, m)

    # -- directory ------------------------------------------------------------------

    def _stock_directory(self, ts: int, m: Mapping[str, Any]) -> list[tuple]:
        locate = m["stock_locate"]
        self.books.setdefault(locate, _Book())
        self.counters.values[NORMALIZER_COUNTERS.directory] += 1
        return [(b"R", ts, locate, m["stock"].rstrip(), PRICE_EXPONENT)]

    # -- the book -------------------------------------------------------------------

    def _side(self, value: Any) -> int | None:
        side = _SIDES.get(value if isinstance(value, (int, bytes)) else str(value))
        if side is None:
            self.counters.values[NORMALIZER_COUNTERS.bad_side] += 1
        return side

    def _add_order(self, ts: int, m: Mapping[str, Any]) -> list[tuple]:
        side = self._side(m["buy_sell_indicator"])
        if side is None:
            return []
        return self._add(ts, m["stock_locate"], m["order_reference_number"], side, m["price"], m["shares"])

    def _add(self, ts: int, locate: int, ref: int, side: int, price: int, shares: int) -> list[tuple]:
        c = self.counters.values
        book = self.books.get(locate)
        if book is None:
            c[NORMALIZER_COUNTERS.unknown_stock] += 1
            return []
        if ref in self.orders:
            c[NORMALIZER_COUNTERS.duplicate_order] += 1
            return []
        self.orders[ref] = [locate, side, price, shares]
        book.change(side, price, shares)
        return self._quote(ts, locate, book)

    def _reduce(self, ref: int, shares: int) -> tuple[list | None, int]:
        """Take `shares` off order `ref`: (the order as it was, shares actually removed)."""
        order = self.orders.get(ref)
        if order is None:
            self.counters.values[NORMALIZER_COUNTERS.unknown_order] += 1
            return None, 0
        locate, side, price, left = order
        if shares > left:
            self.counters.values[NORMALIZER_COUNTERS.overfill] += 1
            shares = left
        self.books[locate].change(side, price, -shares)
        if shares == left:
            del self.orders[ref]
        else:
            order[3] = left - shares
        return order, shares

    def _order_executed(self, ts: int, m: Mapping[str, Any]) -> list[tuple]:
        order, shares = self._reduce(m["order_reference_number"], m["executed_shares"])
        if order is None:
            return []
        locate, side, price, _ = order
        return [self._print(ts, locate, price, shares, side, m["match_number"]), *self._quote(ts, locate, self.books[locate])]

    def _order_executed_with_price(self, ts: int, m: Mapping[str, Any]) -> list[tuple]:
        order, shares = self._reduce(m["order_reference_number"], m["executed_shares"])
        if order is None:
            return []
        locate, side, _, _ = order
        out = []
        if m["printable"] == ord("Y"):
            out.append(self._print(ts, locate, m["execution_price"], shares, side, m["match_number"]))
        else:
            self.counters.values[NORMALIZER_COUNTERS.not_printable] += 1
        return out + self._quote(ts, locate, self.books[locate])

    def _order_cancel(self, ts: int, m: Mapping[str, Any]) -> list[tuple]:
        order, _ = self._reduce(m["order_reference_number"], m["cancelled_shares"])
        return [] if order is None else self._quote(ts, order[0], self.books[order[0]])

    def _order_delete(self, ts: int, m: Mapping[str, Any]) -> list[tuple]:
        ref = m["order_reference_number"]
        order = self.orders.get(ref)
        if order is None:
            self.counters.values[NORMALIZER_COUNTERS.unknown_order] += 1
            return []
        self._reduce(ref, order[3])
        return self._quote(ts, order[0], self.books[order[0]])

    def _order_replace(self, ts: int, m: Mapping[str, Any]) -> list[tuple]:
        old_ref, new_ref = m["original_order_reference_number"], m["new_order_reference_number"]
        order = self.orders.get(old_ref)
        if order is None:
            self.counters.values[NORMALIZER_COUNTERS.unknown_order] += 1
            return []
        if new_ref in self.orders:
            self.counters.values[NORMALIZER_COUNTERS.duplicate_order] += 1
            return []
        locate, side = order[0], order[1]
        self._reduce(old_ref, order[3])
        self.orders[new_ref] = [locate, side, m["price"], m["shares"]]
        book = self.books[locate]
        book.change(side, m["price"], m["shares"])
        return self._quote(ts, locate, book)  # one quote for the replace as a whole, not one per half

    def _print(self, ts: int, locate: int, price: int, shares: int, resting_side: int, match: int) -> tuple:
        self.counters.values[NORMALIZER_COUNTERS.trades] += 1
        aggressor = _SELL if resting_side == _BUY else _BUY
        return (b"T", ts, locate, price, shares, aggressor, match)

    def _trade(self, ts: int, m: Mapping[str, Any]) -> list[tuple]:  # ITCH P: a non-displayed order executed
        locate = m["stock_locate"]
        if locate not in self.books:
            self.counters.values[NORMALIZER_COUNTERS.unknown_stock] += 1
            return []
        side = self._side(m["buy_sell_indicator"])
        if side is None:
            return []
        return [self._print(ts, locate, m["price"], m["shares"], side, m["match_number"])]

    def _quote(self, ts: int, locate: int, book: _Book) -> list[tuple]:
        top = book.best()
        if top == book.top:
            return []
        book.top = top
        self.counters.values[NORMALIZER_COUNTERS.quotes] += 1
        return [(b"Q", ts, locate, *top)]

