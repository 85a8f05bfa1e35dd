"""A synthetic NASDAQ TotalView-ITCH 5.0 session for tests: valid, random, built with construct (examples/itch/)."""

from __future__ import annotations

import random

from examples.itch.schema import MESSAGES

MIDNIGHT = 1_796_256_000_000_000_000  # a session date's midnight, ns since the epoch
STOCKS = {1: "AAPL", 2: "MSFT", 3: "ZVZZT"}


def session(seed: int, n: int) -> list[tuple[str, bytes]]:
    """(message name, ITCH bytes) of a valid random session: every reference used exists, no overfill."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    t = 34_200_000_000_000  # 9:30
    live: dict[int, list] = {}  # ref -> [locate, side, price, shares]
    next_ref = 1
    match = 1

    def emit(name: str, **fields) -> None:
        nonlocal t
        t += rng.randrange(1, 50_000)
        base = {"stock_locate": fields.pop("stock_locate", 0), "tracking_number": 0, "timestamp": t}
        out.append((name, MESSAGES[name].build({**base, **fields})))

    for locate, stock in STOCKS.items():
        emit("stock_directory", stock_locate=locate, stock=stock.ljust(8), market_category=ord("Q"), financial_status_indicator=ord("N"),
             round_lot_size=100, round_lots_only=ord("N"), issue_classification=ord("C"), issue_sub_type="Z ", authenticity=ord("P"),
             short_sale_threshold_indicator=ord("N"), ipo_flag=ord("N"), luld_reference_price_tier=ord("1"), etp_flag=ord("N"),
             etp_leverage_factor=0, inverse_indicator=ord("N"))
    for _ in range(n):
        kind = rng.choices(["A", "E", "C", "X", "D", "U", "P"], weights=[40, 12, 6, 10, 10, 10, 4])[0]
        if kind == "A" or not live:
            locate = rng.choice(list(STOCKS))
            side = rng.choice(["buy", "sell"])
            # bids below 100.00 and asks above, mostly, with some crossing levels shared by many orders
            price = 1_000_000 + (rng.randrange(-20, 3) if side == "buy" else rng.randrange(-2, 21)) * 100
            shares = rng.choice([100, 200, 300, 500, 1000])
            live[next_ref] = [locate, side, price, shares]
            emit("add_order", stock_locate=locate, order_reference_number=next_ref, buy_sell_indicator=side, shares=shares,
                 stock=STOCKS[locate].ljust(8), price=price)
            next_ref += 1
            continue
        ref = rng.choice(list(live))
        locate, side, price, shares = live[ref]
        if kind in "EC":
            qty = rng.randrange(1, shares + 1)
            if kind == "E":
                emit("order_executed", stock_locate=locate, order_reference_number=ref, executed_shares=qty, match_number=match)
            else:
                emit("order_executed_with_price", stock_locate=locate, order_reference_number=ref, executed_shares=qty, match_number=match,
                     printable=rng.choice([ord("Y"), ord("N")]), execution_price=price + rng.randrange(-3, 4) * 100)
            match += 1
        elif kind == "X":
            qty = rng.randrange(1, shares + 1)
            emit("order_cancel", stock_locate=locate, order_reference_number=ref, cancelled_shares=qty)
        elif kind == "D":
            qty = shares
            emit("order_delete", stock_locate=locate, order_reference_number=ref)
        elif kind == "U":
            new_price, new_shares = price + rng.randrange(-3, 4) * 100, rng.choice([100, 300, 700])
            emit("order_replace", stock_locate=locate, original_order_reference_number=ref, new_order_reference_number=next_ref,
                 shares=new_shares, price=new_price)
            del live[ref]
            live[next_ref] = [locate, side, new_price, new_shares]
            next_ref += 1
            continue
        else:  # P: a non-displayed order matched
            emit("trade", stock_locate=locate, order_reference_number=0, buy_sell_indicator=rng.choice(["buy", "sell"]),
                 shares=rng.choice([100, 200]), stock=STOCKS[locate].ljust(8), price=price, match_number=match)
            match += 1
            continue
        live[ref][3] -= qty
        if live[ref][3] == 0:
            del live[ref]
    return out
