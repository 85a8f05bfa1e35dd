"""Hypothesis strategies derived from the IR, so every declared message gets generated values."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from decoders import ir


def _int_range(node: ir.Int) -> tuple[int, int]:
    bits = node.size * 8
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if node.signed else (0, (1 << bits) - 1)


def value_strategy(node: ir.Node) -> st.SearchStrategy[Any]:
    if isinstance(node, ir.Int):
        lo, hi = _int_range(node)
        return st.integers(lo, hi)
    if isinstance(node, ir.ConstNode):
        return st.just(node.value)
    if isinstance(node, ir.EnumNode):
        lo, hi = _int_range(node.base)
        return st.one_of(st.sampled_from([name for name, _ in node.mapping]), st.integers(lo, hi))
    if isinstance(node, ir.BytesNode):
        return st.binary(min_size=node.length, max_size=node.length)
    if isinstance(node, ir.GreedyBytesNode):
        return st.binary(max_size=64)
    if isinstance(node, ir.StringNode) and node.kind == "padded":
        return st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=node.length)
    if isinstance(node, ir.PrefixedArrayNode):
        return st.lists(value_strategy(node.element), max_size=8)
    if isinstance(node, ir.StructNode):
        fields = [f for f in node.fields if not isinstance(f, ir.PaddingNode)]
        return st.fixed_dictionaries({f.name: value_strategy(f) for f in fields})
    raise TypeError(f"no strategy for {node.path}: {type(node).__name__}")


def message_dicts(con: Any, name: str) -> st.SearchStrategy[dict[str, Any]]:
    return value_strategy(ir.walk(con, name, name))


def plain(obj: Any) -> Any:
    """construct's Container/ListContainer as plain dicts/lists, without `_io`; enum names as str."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, str):
        return str(obj)
    return obj
