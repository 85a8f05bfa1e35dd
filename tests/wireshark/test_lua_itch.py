"""The generator on a third-party schema: a TotalView-ITCH 5.0 subset, decoded by tshark as construct parses it.

Wireshark's own nasdaq_itch dissector (4.0 on Debian 12, and 4.4 alike) can be attached to MoldUDP64 blocks
(`-d udp.port==N,moldudp64 -d moldudp64.payload,nasdaq_itch`) but knows only the ASCII ITCH 2.0 and 3.0 layouts: it
shows these 5.0 messages as "TotalView-ITCH 3.0" with shifted, garbled fields. So here construct's parse is the
reference for the dissector; the schema itself is checked against an independent ITCH 5.0 parser, itchfeed, in
tests/unit/test_itch_example.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from construct import EnumIntegerString

from decoders import fingerprint, make_session, schema_tag
from decoders.moldudp64 import encode_datagram
from examples.itch.schema import MESSAGES
from tests.conftest import need_tool
from tests.wireshark.test_moldudp64_interop import write_pcap
from wireshark.__main__ import main as generate_main

SAMPLES = {
    "system_event": dict(stock_locate=0, tracking_number=1, timestamp=34_200_000_000_000, event_code="start_of_market_hours"),
    "stock_directory": dict(stock_locate=7, tracking_number=2, timestamp=1, stock="ACME    ", market_category=ord("Q"),
                            financial_status_indicator=ord("N"), round_lot_size=100, round_lots_only=ord("N"), issue_classification=ord("C"),
                            issue_sub_type="Z ", authenticity=ord("P"), short_sale_threshold_indicator=ord("N"), ipo_flag=ord(" "),
                            luld_reference_price_tier=ord("1"), etp_flag=ord("N"), etp_leverage_factor=0, inverse_indicator=ord("N")),
    "add_order": dict(stock_locate=7, tracking_number=3, timestamp=2**47 - 1, order_reference_number=2**64 - 1, buy_sell_indicator="buy",
                      shares=300, stock="ACME    ", price=1_234_500),
    "order_executed": dict(stock_locate=7, tracking_number=4, timestamp=5, order_reference_number=42, executed_shares=100, match_number=77),
    "trade": dict(stock_locate=7, tracking_number=5, timestamp=6, order_reference_number=0, buy_sell_indicator="sell", shares=10,
                  stock="ACME    ", price=99, match_number=78),
}


def test_itch_subset_decodes_like_construct(tmp_path: Path) -> None:
    tshark = need_tool("tshark")
    lua = tmp_path / "itch50.lua"
    assert generate_main(["--schema", "examples.itch.schema", "--proto", "itch50", "--description", "TotalView-ITCH 5.0 subset",
                          "--ports", "26400", "--out", str(lua)]) == 0
    session = make_session(fingerprint(MESSAGES), 1)
    assert session[:4] == schema_tag(fingerprint(MESSAGES))
    blobs = {name: MESSAGES[name].build(values) for name, values in SAMPLES.items()}
    pcap = tmp_path / "itch.pcap"
    write_pcap(pcap, [encode_datagram(session, 1, list(blobs.values()))])
    r = subprocess.run([tshark, "-X", f"lua_script:{lua}", "-r", str(pcap), "-d", "udp.port==31001,itch50", "-T", "json",
                        "--no-duplicate-keys", "-J", "itch50"], capture_output=True, text=True, timeout=60)
    assert "Lua:" not in r.stderr and "_ws.lua.error" not in r.stdout, r.stderr
    layer = json.loads(r.stdout)[0]["_source"]["layers"]["itch50"]
    assert "_ws.expert" not in json.dumps(layer), json.dumps(layer)[:1000]
    for block, (name, blob) in zip(layer["itch50.block"], blobs.items()):
        shown = block[f"itch50.{name}"]
        parsed = MESSAGES[name].parse(blob)
        for key, value in parsed.items():
            if key.startswith("_") or key == "message_type":
                continue
            got = shown[f"itch50.{name}.{key}"]
            if isinstance(value, EnumIntegerString):  # an enum: tshark shows the number, construct the name
                assert got == str(int(value)), (name, key, got)
            else:
                assert got == str(value), (name, key, got, value)
