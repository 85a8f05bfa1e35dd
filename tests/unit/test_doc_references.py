"""Every file a docstring or comment points at exists, and every section it names is in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("decoders", "mdcommon", "linehandler", "retransmit", "tickerplant", "wireshark", "tools", "bench", "examples", "tests")
REFERENCE = re.compile(r"(docs/[\w.-]+\.md)(?:, \"([^\"]+)\")?")


def test_docs_named_in_the_code_exist_with_their_sections() -> None:
    missing = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for doc, section in REFERENCE.findall(path.read_text()):
                target = ROOT / doc
                if not target.exists():
                    missing.append(f"{path.relative_to(ROOT)}: {doc} does not exist")
                elif section and not re.search(rf"^#+ .*{re.escape(section)}", target.read_text(), re.M):
                    missing.append(f"{path.relative_to(ROOT)}: {doc} has no section {section!r}")
    assert not missing, "\n".join(missing)
