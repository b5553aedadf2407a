"""Throwaway virtual environments for installing a plugin without touching the shared one.

The new environment sees the shared environment's packages (ofelia, its
dependencies, pip) through a ``.pth`` file that calls ``site.addsitedir``,
so the editable installs' own ``.pth`` hooks run too; anything installed
into it lands in the throwaway environment only. Building one takes about
a second and needs no network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ThrowawayVenv:
    def __init__(self, root: Path) -> None:
        self.root = root
        venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
        self.python = root / "bin" / "python"
        purelib = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        shared = sysconfig.get_paths()["purelib"]
        Path(purelib, "_ofelia_shared_env.pth").write_text(f"import site; site.addsitedir({shared!r})\n")

    def install(self, project: Path) -> None:
        """Install a project (not editable) into this environment only."""
        subprocess.run(
            [str(self.python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
             "--no-index", "--disable-pip-version-check", str(project)],
            check=True, capture_output=True, text=True,
        )

    def ofelia(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``python -m ofelia_core ARGS`` in this environment with ``env`` added to a clean one."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
        return subprocess.run(
            [str(self.python), "-m", "ofelia_core", *args],
            capture_output=True, text=True, env={**base, **(env or {})}, cwd=str(REPO), timeout=120,
        )


def shared_python() -> str:
    return sys.executable
