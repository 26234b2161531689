"""Front-end speed and memory: `strata summary llama2_70b --json` and `strata check gpt2`.

Targets (issue: spec language foundation): summary of llama2_70b under 1 s wall
and 150 MB peak memory; check of gpt2 under 0.3 s.  Each command runs as a real
subprocess (interpreter start-up and imports included), several times; the
median wall time and the peak resident memory are reported, next to a bare
`python -c pass` for scale, and the median CPU time (user + system), which
other processes on a shared machine bend less than wall time.  `check` of a spec with passes runs them on the
graph (networkx imported), so gpt2 and llama2_70b with two passes are timed
too.  `--base DIR`: each strata command also runs from the checkout DIR
(first on PYTHONPATH), interleaved, for a before/after on the same machine.

    python benchmarks/frontend.py [--runs 7] [--base /path/to/older/checkout]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what a user's passes section might hold: a fusion and a quantize (docs/passes.md)
PASSES = 'passes {\n  fuse_qkv\n  quantize(int8_dynamic, on="mlp")\n}\n'


def run(cmd: list[str], path: str | None = None) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds of one subprocess (`path`: first
    on its PYTHONPATH)."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([path] + [p for p in [env.get("PYTHONPATH")] if p])
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec the command with stdout discarded
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execvpe(cmd[0], cmd, env)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--base", help="an older checkout: its strata commands are timed too, interleaved")
    ap.add_argument("--smoke", action="store_true", help="`strata check specs/gpt2.arch` only, to test that "
                    "the script runs")
    return ap


def main() -> None:
    args = parser().parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(args, Path(tmp))


def measure(args, tmp: Path) -> None:
    py = sys.executable
    for name in ("gpt2", "llama2_70b"):
        (tmp / f"{name}_passes.arch").write_text((ROOT / f"specs/{name}.arch").read_text() + PASSES)
    (tmp / "llama2_7b.arch").write_text((ROOT / "specs/llama2_7b.arch").read_text())  # llama2_70b imports it
    strata = {
        "strata check specs/gpt2.arch": ["check", str(ROOT / "specs/gpt2.arch")],
        "strata check gpt2 + 2 passes": ["check", str(tmp / "gpt2_passes.arch")],
        "strata check llama2_70b + 2 passes": ["check", str(tmp / "llama2_70b_passes.arch")],
        "strata summary specs/llama2_70b.arch --json": ["summary", str(ROOT / "specs/llama2_70b.arch"), "--json"],
    }
    if args.smoke:
        strata = dict(list(strata.items())[:1])
    cases: dict[str, tuple[list[str], str | None]] = {"python -c pass (scale)": ([py, "-c", "pass"], None)}
    for name, argv in strata.items():
        cases[name] = ([py, "-m", "strata.cli", *argv], str(ROOT))
        if args.base:
            cases[name + " (base)"] = ([py, "-m", "strata.cli", *argv], args.base)
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cases}
    for cmd, path in cases.values():  # warm the lark grammar cache and the OS file cache
        run(cmd, path)
    for _ in range(args.runs):  # interleaved, so load changes hit every case alike
        for name, (cmd, path) in cases.items():
            results[name].append(run(cmd, path))
    print(f"{'command':52} {'median wall':>12} {'min wall':>10} {'peak RSS':>10} {'median CPU':>11}")
    for name, rs in results.items():
        walls = [w for w, _, _ in rs]
        print(f"{name:52} {statistics.median(walls):10.3f} s {min(walls):8.3f} s "
              f"{max(m for _, m, _ in rs):7.1f} MB {statistics.median(c for _, _, c in rs):9.3f} s")


if __name__ == "__main__":
    main()
