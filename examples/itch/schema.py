"""A subset of NASDAQ TotalView-ITCH 5.0, declared in construct (spec section numbers in the docs).

Generate its Wireshark dissector with
    python -m wireshark --schema examples.itch.schema --proto itch50 --description "TotalView-ITCH 5.0 subset" --ports 26400 --out itch50.lua
It shows the generator is a tool for anyone's construct schema, not only ours. All fields are
big-endian; Timestamp is nanoseconds since midnight in 6 bytes; prices are u32 with 4 implied
decimals; Stock is 8 ASCII bytes, space padded.
"""

from __future__ import annotations

from construct import BytesInteger, Const, Enum, Int8ub, Int16ub, Int32ub, Int64ub, PaddedString, Struct

Side = Enum(Int8ub, buy=ord("B"), sell=ord("S"))
EventCode = Enum(Int8ub, start_of_messages=ord("O"), start_of_system_hours=ord("S"), start_of_market_hours=ord("Q"),
                 end_of_market_hours=ord("M"), end_of_system_hours=ord("E"), end_of_messages=ord("C"))


def header(type_byte: bytes) -> list:
    return [
        "message_type" / Const(type_byte) * "message type",
        "stock_locate" / Int16ub * "locate code identifying the security",
        "tracking_number" / Int16ub * "Nasdaq internal tracking number",
        "timestamp" / BytesInteger(6) * "nanoseconds since midnight",
    ]


SystemEvent = Struct(*header(b"S"), "event_code" / EventCode * "4.1 System Event Message: event code") * "4.1 System Event"

StockDirectory = Struct(
    *header(b"R"),
    "stock" / PaddedString(8, "ascii") * "stock symbol, right padded with spaces",
    "market_category" / Int8ub * "listing market",
    "financial_status_indicator" / Int8ub * "financial status (Nasdaq-listed only)",
    "round_lot_size" / Int32ub * "shares in a round lot",
    "round_lots_only" / Int8ub * "Y: only round lots accepted",
    "issue_classification" / Int8ub * "security class",
    "issue_sub_type" / PaddedString(2, "ascii") * "security sub-type",
    "authenticity" / Int8ub * "P live, T test",
    "short_sale_threshold_indicator" / Int8ub * "Y, N or space",
    "ipo_flag" / Int8ub * "Y, N or space",
    "luld_reference_price_tier" / Int8ub * "1, 2 or space",
    "etp_flag" / Int8ub * "Y, N or space",
    "etp_leverage_factor" / Int32ub * "leverage of an ETP",
    "inverse_indicator" / Int8ub * "Y: inverse ETP",
) * "4.2.1 Stock Directory"

AddOrder = Struct(
    *header(b"A"),
    "order_reference_number" / Int64ub * "unique reference of the new order",
    "buy_sell_indicator" / Side * "B buy, S sell",
    "shares" / Int32ub * "shares of the order",
    "stock" / PaddedString(8, "ascii") * "stock symbol",
    "price" / Int32ub * "price, 4 implied decimals",
) * "4.3.1 Add Order (no MPID attribution)"

OrderExecuted = Struct(
    *header(b"E"),
    "order_reference_number" / Int64ub * "order executed",
    "executed_shares" / Int32ub * "shares executed",
    "match_number" / Int64ub * "Nasdaq match number",
) * "4.4.1 Order Executed"

OrderExecutedWithPrice = Struct(
    *header(b"C"),
    "order_reference_number" / Int64ub * "order executed",
    "executed_shares" / Int32ub * "shares executed",
    "match_number" / Int64ub * "Nasdaq match number",
    "printable" / Int8ub * "N: not to be counted in time and sales (part of a later bulk print), Y: printable",
    "execution_price" / Int32ub * "price of the execution, 4 implied decimals",
) * "4.4.2 Order Executed With Price"

OrderCancel = Struct(
    *header(b"X"),
    "order_reference_number" / Int64ub * "order partly cancelled",
    "cancelled_shares" / Int32ub * "shares removed from the order",
) * "4.4.3 Order Cancel"

OrderDelete = Struct(
    *header(b"D"),
    "order_reference_number" / Int64ub * "order removed from the book",
) * "4.4.4 Order Delete"

OrderReplace = Struct(
    *header(b"U"),
    "original_order_reference_number" / Int64ub * "order being replaced (it leaves the book)",
    "new_order_reference_number" / Int64ub * "the new order (same side and stock)",
    "shares" / Int32ub * "shares of the new order",
    "price" / Int32ub * "price of the new order, 4 implied decimals",
) * "4.4.5 Order Replace"

Trade = Struct(
    *header(b"P"),
    "order_reference_number" / Int64ub * "always 0 for non-displayed orders",
    "buy_sell_indicator" / Side * "side of the non-displayed order",
    "shares" / Int32ub * "shares matched",
    "stock" / PaddedString(8, "ascii") * "stock symbol",
    "price" / Int32ub * "match price, 4 implied decimals",
    "match_number" / Int64ub * "Nasdaq match number",
) * "4.5.1 Trade (non-cross)"

MESSAGES = {
    "system_event": SystemEvent,
    "stock_directory": StockDirectory,
    "add_order": AddOrder,
    "order_executed": OrderExecuted,
    "order_executed_with_price": OrderExecutedWithPrice,
    "order_cancel": OrderCancel,
    "order_delete": OrderDelete,
    "order_replace": OrderReplace,
    "trade": Trade,
}
