"""Real virtual environments for tests, made once per session (or once per machine) and reused.

Why real venvs: the fingerprint, bisect and replay --match are about what real wheels compute (NumPy's SIMD
dispatch, OpenBLAS's kernels, scikit-learn's defaults); a fake would only test the fake. Making one costs
seconds to a minute, so each set of requirements is made once: under the session's temporary folder, or
under ``ENVCAP_TEST_VENVS`` when set (kept across sessions, as on a developer's machine).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

BIN = Path(sys.executable).parent


class VenvCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def python(self, requirements: Sequence[str], *, python: str | None = None) -> Path:
        """The interpreter of a venv holding exactly ``requirements`` (pip specifiers or wheel paths)."""
        base = python or _base_interpreter()
        key = hashlib.sha256("\n".join([base, *sorted(requirements)]).encode()).hexdigest()[:12]
        label = "-".join(r.rsplit("/", 1)[-1].split("-")[0].replace("==", "") for r in sorted(requirements))[:60]
        folder = self.root / f"{label or 'bare'}-{key}"
        interpreter = folder / "bin" / "python"
        with open(self.root / ".lock", "w") as handle:  # concurrent sessions share the folder
            fcntl.flock(handle, fcntl.LOCK_EX)
            if (folder / ".ready").is_file():
                return interpreter
            shutil.rmtree(folder, ignore_errors=True)
            _make(folder, base, requirements)
            (folder / ".ready").write_text("\n".join(requirements) + "\n")
        return interpreter


def _base_interpreter() -> str:
    """The interpreter this venv was made from (a venv of a venv would hide the real one)."""
    return str(Path(getattr(sys, "_base_executable", sys.executable)).resolve())


def _make(folder: Path, base: str, requirements: Sequence[str]) -> None:
    uv = shutil.which("uv") or str(BIN / "uv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    if Path(uv).exists():
        subprocess.run([uv, "venv", "--quiet", "--seed", "--python", base, str(folder)], check=True, env=env)
        if requirements:
            subprocess.run([uv, "pip", "install", "--quiet", "--python", str(folder / "bin" / "python"),
                            *requirements], check=True, env=env, timeout=1800)
        return
    subprocess.run([base, "-m", "venv", str(folder)], check=True)
    if requirements:
        subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements],
                       check=True, timeout=1800)
