"""Wall time of `ofelia validate` on the example configs, as a user runs it
(a fresh process each time: interpreter start, imports, parsing, validation).

    .venv/bin/python bench/bench_validate.py [--runs 30]

Target: under 300 ms wall. Prints a markdown table (median, p95, p99, max).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import markdown_table, summary_ms

REPO = Path(__file__).resolve().parent.parent
OFELIA = [str(Path(sys.executable).parent / "ofelia")]


def time_command(args: list[str], runs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
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
                     "yes" if s["p99"] < 300 or label.startswith("python") else "NO"])
    print(markdown_table(["command", "median ms", "p95 ms", "p99 ms", "max ms", "under 300 ms"], rows))


if __name__ == "__main__":
    main()
