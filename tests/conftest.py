"""Shared test helpers: a fake clock, and skip-or-fail for missing tools and privileges.

`MD_REQUIRE_ALL=1` (set by `.ci/run`) turns every "tool or privilege missing" skip into
a failure, so CI cannot go green by skipping what it was meant to run.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ALL = os.environ.get("MD_REQUIRE_ALL") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip the test with `reason` when `condition` is false; fail instead under MD_REQUIRE_ALL=1."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required in CI (MD_REQUIRE_ALL=1): {reason}")
    pytest.skip(reason)


def need_tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed (Debian package; .ci/run installs it)")
    assert path is not None
    return path


def need_root() -> None:
    need(os.geteuid() == 0, "needs root (network namespaces, nftables)")


def need_native(module: object, what: str) -> object:
    """A compiled native part (`what`, e.g. "decoders/_native.c"), or skip: a missing build fails under
    MD_REQUIRE_ALL=1 like a missing tool; the MD_BACKEND=python pass skips on purpose (it tests the other backend)."""
    if os.environ.get("MD_BACKEND", "").strip().lower() == "python":
        pytest.skip(f"MD_BACKEND=python: this pass runs without {what}")
    need(module is not None, f"{what} is not built: pip install -e . with a C compiler")
    return module


class FakeClock:
    """Nanosecond clock the tests move by hand; cores take `now_ns` from it."""

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self.now_ns = start_ns

    def advance(self, ns: int) -> int:
        self.now_ns += ns
        return self.now_ns

    def advance_ms(self, ms: float) -> int:
        return self.advance(int(ms * 1_000_000))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
