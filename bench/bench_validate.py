"""Wall time of `ofelia validate` on the example configs, as a user runs it
(a fresh process each time: interpreter start, imports, parsing, validation).

    .venv/bin/python bench/bench_validate.py [--runs 30]

Target: under 300 ms wall. Prints a markdown table (median, p95, p99, max).
"""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import markdown_table, summary_ms

REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 300
OFELIA = [str(Path(sys.executable).parent / "ofelia")]


def compile_sources() -> None:
    """Byte-compile the project as a regular install would, so no run pays for compiling.

    An editable install has no .pyc files until a first import writes them,
    and PYTHONDONTWRITEBYTECODE (set on some machines) stops even that.
    """
    for package in ("ofelia_core", "hookspecs/ofelia_hookspecs"):
        compileall.compile_dir(str(REPO / package), quiet=1)


def time_command(args: list[str], runs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_") and k != "PYTHONDONTWRITEBYTECODE"}
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO)
        samples.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {result.stderr}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    compile_sources()
    cases = [
        ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"]),
        ("ofelia validate examples/config.ini", [*OFELIA, "validate", "--config", "examples/config.ini"]),
        ("ofelia validate examples/config.yaml", [*OFELIA, "validate", "--config", "examples/config.yaml"]),
    ]
    rows = []
    for label, args in cases:
        print(f"bench: {label} x{runs}", file=sys.stderr)
        s = summary_ms(time_command(args, runs))
        rows.append([label, f"{s['median']:.0f}", f"{s['p95']:.0f}", f"{s['p99']:.0f}", f"{s['max']:.0f}",
                     f"{s['p99'] / TARGET_MS:.2f}"])
    print(markdown_table(["command", "median ms", "p95 ms", "p99 ms", "max ms", "ratio p99 / 300 ms target"], rows))


if __name__ == "__main__":
    main()
