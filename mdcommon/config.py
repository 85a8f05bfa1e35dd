"""Daemon configuration: dataclasses whose fields carry a doc and a unit, loaded from TOML,
overridden by command-line flags only when a flag is given (hypercorn's rule).

    @dataclass
    class FeedConfig:
        group: str = opt("239.194.1.1", "multicast group")
        port: int = opt(31001, "UDP port")

Nested dataclasses are TOML tables (`[feed_a]`) and flag prefixes (`--feed-a-group`).
Every field appears in `--help` with its unit and default, and in `describe()` for the
generated reference; unknown TOML keys are errors, never ignored.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tomllib
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

__all__ = ["opt", "load", "load_table", "daemon_config", "add_arguments", "apply_arguments", "describe", "to_toml", "ConfigFileError"]

T = TypeVar("T")


class ConfigFileError(ValueError):
    """The TOML file has a key the daemon does not know, or a value of the wrong type."""


def opt(default: Any, doc: str, unit: str = "", choices: tuple | None = None) -> Any:
    """A configuration field with its documentation."""
    meta = {"doc": doc, "unit": unit, "choices": choices}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        # deep: nested tables must never be shared between two configurations
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _check_type(path: str, value: Any, hint: Any) -> Any:
    base = getattr(hint, "__origin__", hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base in (int, float, str, bool) and not (isinstance(value, base) and not (base is int and isinstance(value, bool))):
        raise ConfigFileError(f"{path}: expected {base.__name__}, got {value!r}")
    if (base is list or hint is list) and not isinstance(value, list):
        raise ConfigFileError(f"{path}: expected a list, got {value!r}")
    return value


def _apply_table(obj: Any, table: dict[str, Any], prefix: str) -> None:
    hints = _hints(type(obj))
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigFileError(f"unknown key {path!r} (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigFileError(f"{path}: expected a table")
            _apply_table(current, value, path + ".")
        else:
            choices = names[key].metadata.get("choices")
            value = _check_type(path, value, hints[key])
            if choices and value not in choices:
                raise ConfigFileError(f"{path}: {value!r} is not one of {choices}")
            setattr(obj, key, value)


def load_table(cls: type[T], table: dict[str, Any], prefix: str = "") -> T:
    """Defaults, then one TOML table (an entry of an array of tables)."""
    if not isinstance(table, dict):
        raise ConfigFileError(f"{prefix or 'entry'}: expected a table, got {table!r}")
    obj = cls()
    _apply_table(obj, table, prefix)
    return obj


def load(cls: type[T], path: str | Path | None) -> T:
    """Defaults, then the TOML file at `path` (if any)."""
    obj = cls()
    if path is not None:
        try:
            with open(path, "rb") as fh:
                table = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{path}: {exc}") from None
        _apply_table(obj, table, "")
    return obj


def _walk(cls: type, prefix: str = "", inst: Any = None) -> list[tuple[str, dataclasses.Field, Any, Any]]:
    """(dotted name, field, type hint, effective default) for every leaf option.

    Defaults are read from an instance, table by table, so a table whose default differs
    from its class's (feed B is `FeedConfig(group="239.194.2.1", port=31002)`) shows what
    the daemon really uses.
    """
    out = []
    inst = cls() if inst is None else inst
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        default = getattr(inst, f.name)
        if dataclasses.is_dataclass(default):
            out += _walk(type(default), f"{prefix}{f.name}.", default)
        else:
            out.append((f"{prefix}{f.name}", f, hints[f.name], default))
    return out


def _help(f: dataclasses.Field, default: Any) -> str:
    unit = f.metadata.get("unit", "")
    return f"{f.metadata.get('doc', '')}" + (f" [{unit}]" if unit else "") + f" (default: {default!r})"


def _metavar(unit: str, hint: Any) -> str:
    text = unit.replace("µs", "us").replace(" ", "_").replace("/", "_PER_") if unit and unit.isascii() or "µs" in unit else hint.__name__
    return text.upper()


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per leaf option: `feed_a.group` → `--feed-a-group`; default None = not given."""
    for name, f, hint, default in _walk(cls):
        flag = "--" + name.replace(".", "-").replace("_", "-")
        dest = "cfg__" + name.replace(".", "__")
        if hint is bool:
            parser.add_argument(flag, dest=dest, default=None, action=argparse.BooleanOptionalAction, help=_help(f, default))
        elif hint is list or getattr(hint, "__origin__", None) is list:
            parser.add_argument(flag, dest=dest, default=None, action="append", help=_help(f, default) + "; repeat for several")
        else:
            parser.add_argument(flag, dest=dest, default=None, type=hint, choices=f.metadata.get("choices"),
                                metavar=_metavar(f.metadata.get("unit", ""), hint),
                                help=_help(f, default))


def apply_arguments(obj: Any, args: argparse.Namespace) -> None:
    """Flags that were given override the file and the defaults."""
    for key, value in vars(args).items():
        if not key.startswith("cfg__") or value is None:
            continue
        parts = key[5:].split("__")
        target = obj
        for p in parts[:-1]:
            target = getattr(target, p)
        setattr(target, parts[-1], value)


def describe(cls: type) -> list[tuple[str, str, str, Any]]:
    """(TOML key, unit, doc, default) for the generated configuration reference."""
    return [(name, f.metadata.get("unit", ""), f.metadata.get("doc", ""), default) for name, f, _, default in _walk(cls)]


def to_toml(obj: Any) -> str:
    """The effective configuration as TOML (for `--print-config`)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines: list[str] = []

    def emit(o: Any, prefix: str) -> None:
        tables = []
        for f in dataclasses.fields(o):
            v = getattr(o, f.name)
            if dataclasses.is_dataclass(v):
                tables.append((f"{prefix}{f.name}", v))
            elif v is not None:
                lines.append(f"{f.name} = {value(v)}")
        for name, sub in tables:
            lines.append(f"\n[{name}]")
            emit(sub, name + ".")

    emit(obj, "")
    return "\n".join(lines) + "\n"


def daemon_config(prog: str, doc: str | None, cls: type[T], argv: list[str], validate: Any) -> T | int:
    """The usual daemon start: `--config FILE`, a flag per option, `--print-config`, validation.

    Returns the effective configuration, or an exit status: 0 after `--print-config`, 2 with
    the error printed when the file or a value is refused (`validate` raises ValueError)."""
    import sys

    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="TOML configuration file; flags override it")
    ap.add_argument("--print-config", action="store_true", help="print the effective configuration as TOML and exit")
    add_arguments(ap, cls)
    args = ap.parse_args(argv)
    try:
        config = load(cls, args.config)
        apply_arguments(config, args)
        if args.print_config:
            sys.stdout.write(to_toml(config))
            return 0
        validate(config)
    except ValueError as exc:  # ConfigFileError and mdcommon.validate_io.ConfigError are ValueErrors
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return 2
    return config
