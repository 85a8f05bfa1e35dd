"""The packages import downward only (docs/architecture.md, "Layers"), function-level imports included:

    tools      bench/, examples/, tools/, wireshark/ (the generator)
    daemons    relay/  ->  tickerplant/  ->  retransmit/  ->  linehandler/    (a relay is a line handler in
               and a plant out; the plant serves re-requests with the server's core; the server's mirror is
               a line handler); none imports another's __main__
    common     mdcommon/     imports only the wire
    wire       decoders/     imports nothing of ours

An `ast` walk, so a newcomer's drawing of the system stays true: a new upward import fails here with the
file and line that made it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("decoders", "mdcommon", "linehandler", "retransmit", "tickerplant", "relay", "wireshark", "tools", "bench", "examples")
ALLOWED = {
    "decoders": set(),
    "mdcommon": {"decoders"},
    "linehandler": {"decoders", "mdcommon"},
    "retransmit": {"decoders", "mdcommon", "linehandler"},
    "tickerplant": {"decoders", "mdcommon", "retransmit"},
    "relay": {"decoders", "mdcommon", "linehandler", "retransmit", "tickerplant"},  # a line handler in, a plant out
    "wireshark": {"decoders"},
    "tools": {"decoders", "mdcommon", "linehandler", "retransmit", "tickerplant", "relay"},
}


def _imports(package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) for every absolute import of one of our packages inside `package`."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [(str(path.relative_to(ROOT)), node.lineno, n) for n in names if n.split(".")[0] in OURS]
    return found


def test_every_package_imports_only_the_layers_below_it() -> None:
    wrong = [f"{f}:{line} imports {mod}" for pkg, allowed in ALLOWED.items() for f, line, mod in _imports(pkg)
             if mod.split(".")[0] not in allowed | {pkg}]
    assert not wrong, "\n".join(wrong)


def test_no_package_imports_another_ones_command_line() -> None:
    wrong = [f"{f}:{line} imports {mod}" for pkg in ALLOWED for f, line, mod in _imports(pkg)
             if mod.endswith(".__main__") and mod.split(".")[0] != pkg]
    assert not wrong, "\n".join(wrong)


def test_the_allowed_edges_form_no_cycle() -> None:
    seen: dict[str, int] = {}

    def visit(p: str) -> None:
        assert seen.get(p) != 1, f"cycle through {p}"
        if seen.get(p) == 2:
            return
        seen[p] = 1
        for q in ALLOWED[p]:
            visit(q)
        seen[p] = 2

    for p in ALLOWED:
        visit(p)


def _third_party_imports(packages: tuple[str, ...]) -> set[str]:
    """Top-level module names imported anywhere in `packages` that are not ours."""
    found = set()
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - set(OURS)


def test_every_declared_runtime_dependency_is_imported_by_the_packages() -> None:
    """A runtime dependency nobody imports is weight on every install; one used only by tests belongs in the test extra."""
    import re
    import tomllib
    from importlib.metadata import packages_distributions

    def norm(name: str) -> str:  # PEP 503: prometheus_client and prometheus-client are one distribution
        return re.sub(r"[-_.]+", "-", name).lower()

    declared = {norm(re.split(r"[<>=!~ ;\[]", d)[0]) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    shipped = ("decoders", "mdcommon", "linehandler", "retransmit", "tickerplant", "relay", "wireshark")
    by_module = packages_distributions()
    imported = {norm(dist) for module in _third_party_imports(shipped) for dist in by_module.get(module, [])}
    unused = sorted(declared - imported)
    assert not unused, f"declared in [project] dependencies but imported by no package: {unused} (use them or move them to an extra)"
