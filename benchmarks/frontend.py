"""Front-end speed and memory: `strata summary llama2_70b --json` and `strata check gpt2`.

Targets (issue: spec language foundation): summary of llama2_70b under 1 s wall
and 150 MB peak memory; check of gpt2 under 0.3 s.  Each command runs as a real
subprocess (interpreter start-up and imports included), several times; the
median wall time and the peak resident memory are reported, next to a bare
`python -c pass` for scale.

    python benchmarks/frontend.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one subprocess."""
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec the command with stdout discarded
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    py = sys.executable
    cases = {
        "python -c pass (scale)": [py, "-c", "pass"],
        "strata check specs/gpt2.arch": [py, "-m", "strata.cli", "check", str(ROOT / "specs/gpt2.arch")],
        "strata summary specs/llama2_70b.arch --json":
            [py, "-m", "strata.cli", "summary", str(ROOT / "specs/llama2_70b.arch"), "--json"],
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    run(cases["strata check specs/gpt2.arch"])  # warm the lark grammar cache and the OS file cache
    for _ in range(args.runs):  # interleaved, so load changes hit every case alike
        for name, cmd in cases.items():
            results[name].append(run(cmd))
    print(f"{'command':48} {'median wall':>12} {'min wall':>10} {'peak RSS':>10}")
    for name, rs in results.items():
        walls = [w for w, _ in rs]
        print(f"{name:48} {statistics.median(walls):10.3f} s {min(walls):8.3f} s "
              f"{max(m for _, m in rs):7.1f} MB")


if __name__ == "__main__":
    main()
