"""What the benchmarks share: summaries (median, min, max), percentiles, samples files, groups, the C floor.

Figures are collected as *samples*: one value per repetition, under a name, in a JSON file
(`{"figures": {name: [v1, v2, ...]}, "notes": {...}}`). A ratio is computed inside one
repetition (both sides measured in that repetition) and stored as its own figure, so the
report's ratio is the median of same-run ratios, never a ratio of two medians.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["ROOT", "Samples", "summarize", "percentiles", "fmt", "groups", "compile_floor", "proc_cpu_s", "proc_rss_bytes",
           "self_rss_bytes", "merge_samples"]


def summarize(values: Iterable[float]) -> tuple[float, float, float, int]:
    """(median, min, max, n) of the finite values; NaNs when there are none."""
    vals = [float(v) for v in values if v is not None and v == v]
    if not vals:
        nan = float("nan")
        return nan, nan, nan, 0
    return statistics.median(vals), min(vals), max(vals), len(vals)


def percentiles(values: list[float], qs: Iterable[float] = (0.5, 0.99, 0.999)) -> list[float]:
    """Nearest-rank percentiles of `values` (sorted here), NaN for an empty list."""
    if not values:
        return [float("nan") for _ in qs]
    v = sorted(values)
    return [v[min(len(v) - 1, int(q * len(v)))] for q in qs]


def fmt(x: float, digits: int = 3) -> str:
    """A figure for a table: thousands separators for big numbers, `digits` significant digits for small ones."""
    if x is None or x != x:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


class Samples:
    """Named figures, one value per repetition; notes are free text (errors, settings)."""

    def __init__(self) -> None:
        self.figures: dict[str, list[float]] = {}
        self.notes: dict[str, str] = {}

    def add(self, name: str, value: float | None) -> None:
        self.figures.setdefault(name, []).append(float("nan") if value is None else float(value))

    def note(self, name: str, text: str) -> None:
        self.notes[name] = text

    def to_json(self) -> dict:
        return {"figures": self.figures, "notes": self.notes}

    def print_medians(self, width: int = 50) -> None:
        """Every figure's median [min–max] over the repetitions, for the step's own log."""
        print("\nmedian [min–max]:")
        for k, v in self.figures.items():
            med, lo, hi, n = summarize(v)
            print(f"  {k:{width}} {fmt(med)} [{fmt(lo)}–{fmt(hi)}] n={n}")

    def write(self, path: str | Path | None) -> None:
        text = json.dumps(self.to_json(), indent=1)
        if path:
            Path(path).write_text(text)
        else:
            print(text)

    @classmethod
    def load(cls, path: str | Path) -> Samples:
        s = cls()
        data = json.loads(Path(path).read_text())
        s.figures = {k: list(v) for k, v in data.get("figures", {}).items()}
        s.notes = dict(data.get("notes", {}))
        return s


def merge_samples(parts: Iterable[Samples]) -> Samples:
    """One Samples holding every part's values (repetitions run as separate processes)."""
    out = Samples()
    for p in parts:
        for k, v in p.figures.items():
            out.figures.setdefault(k, []).extend(v)
        out.notes.update(p.notes)
    return out


def groups(prefix: str = "239.197") -> tuple[tuple[str, int], tuple[str, int]]:
    """A fresh A/B pair of loopback groups and ports, so concurrent runs never share a group."""
    rng = random.Random()
    x, port = rng.randrange(1, 250), rng.randrange(20000, 60000, 2)
    return (f"{prefix}.{x}.1", port), (f"{prefix}.{x}.2", port + 1)


_FLOOR_EXE: Path | None = None


def compile_floor() -> Path:
    """bench/floor.c compiled with the system compiler (once per process, into a cache folder)."""
    global _FLOOR_EXE
    if _FLOOR_EXE is not None and _FLOOR_EXE.exists():
        return _FLOOR_EXE
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("no C compiler (cc): apt-get install -y gcc")
    out = Path(os.environ.get("XDG_CACHE_HOME", "/tmp")) / f"md-bench-floor-{os.getuid()}"
    out.mkdir(parents=True, exist_ok=True)
    exe = out / "floor"
    src = ROOT / "bench" / "floor.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
    _FLOOR_EXE = exe
    return exe


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid: int) -> int:
    """Resident set size of a running process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def self_rss_bytes() -> int:
    return proc_rss_bytes(os.getpid())


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def wait_quiet(seconds: float) -> None:
    """Let the machine settle between runs (sockets closed, caches warm)."""
    time.sleep(seconds)
