"""`python -m wireshark`: write the Lua dissector plugin for a schema.

    python -m wireshark [--out PATH] [--schema MODULE] [--proto NAME] [--ports 31001,31002] [--no-heuristic]

The schema module must define `MESSAGES` (name -> construct Struct, first field a
one-byte type Const), as `decoders.schema` does. The plugin for our own schema is kept in
wireshark/plugins/ (a test checks it is current). Install it into Wireshark's personal
plugins folder (`~/.local/lib/wireshark/plugins/`), or load it once with
`tshark -X lua_script:PATH`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from decoders import fingerprint, schema_tag

from .luagen import LuaOptions, generate

__all__ = ["main", "DEFAULT_PLUGIN", "render_default"]

DEFAULT_PLUGIN = Path(__file__).resolve().parent / "plugins" / "mdmold.lua"


def render(schema: str, opts: LuaOptions) -> str:
    module = importlib.import_module(schema)
    messages = module.MESSAGES
    fp = fingerprint(messages)
    return generate(messages, schema_tag(fp), fp, opts)


def render_default() -> str:
    return render("decoders.schema", LuaOptions())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wireshark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEFAULT_PLUGIN), help=f"plugin file to write (default {DEFAULT_PLUGIN})")
    ap.add_argument("--schema", default="decoders.schema", help="module defining MESSAGES (default decoders.schema)")
    ap.add_argument("--proto", default="mdmold", help="protocol (filter) name (default mdmold)")
    ap.add_argument("--description", default="Market data over MoldUDP64", help="protocol description")
    ap.add_argument("--ports", default="31001,31002", help="UDP ports decoded by default (default 31001,31002)")
    ap.add_argument("--no-heuristic", action="store_true", help="do not register the UDP heuristic")
    args = ap.parse_args(argv)
    opts = LuaOptions(args.proto, args.description, tuple(int(x) for x in args.ports.split(",") if x), not args.no_heuristic)
    text = render(args.schema, opts)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
