"""A machine without a C compiler installs the project with a warning, not a failure, and runs it on the
pure-Python backend (setup.py's optional extensions; decoders/native.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_wheel_builds_without_a_compiler_and_says_why_it_is_pure_python(tmp_path: Path) -> None:
    src = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(src)], check=True)  # no build/ or compiled files of ours
    env = {**os.environ, "CC": "/bin/false", "PIP_NO_CACHE_DIR": "1"}
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"),
                        str(src)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    log = r.stdout + r.stderr
    for ext in ("decoders._native", "mdcommon._batch_io", "mdcommon._replica"):
        assert f"the native backend {ext} was not built" in log, ext
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith(".so")]  # pure Python inside
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # -S: no .pth files, so not this checkout's editable install; the dependencies from this venv's site-packages
    path = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    out = subprocess.run([sys.executable, "-S", "-c", "import decoders; print(decoders.BACKEND, '|', decoders.BACKEND_REASON, '|', decoders.__file__)"],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, check=True).stdout
    assert out.startswith("python | not built") and out.strip().endswith(str(site / "decoders" / "__init__.py")), out
