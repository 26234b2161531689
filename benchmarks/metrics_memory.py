"""Memory and time of reading a large metrics.jsonl: the workbench's curves
(`strata serve`'s Runs tab, `strata.serve.runs.run_view`), `run.metrics[-1]` and
a pass over `run.metrics` (the Python API).

    python benchmarks/metrics_memory.py [--mb 50]

Writes a run folder whose metrics.jsonl is MB megabytes of tiny training lines
(`{"step":N,"train_loss":1.5}`, ~30 bytes each), then runs each reader in a
fresh process and prints how much its peak RSS grew over the same process
after its imports (ru_maxrss), and the seconds it took (wall and CPU: on a
shared machine the CPU seconds are the steadier figure).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import resource, sys, time
from pathlib import Path
from strata.serve.files import Root
from strata.serve.runs import run_view
from strata.train.run_folder import RunFolder

case, folder = sys.argv[1], Path(sys.argv[2])
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before, t, cpu = rss(), time.perf_counter(), time.process_time()
if case == "workbench":
    got = len(run_view(Root(folder), ".")["train"])
elif case == "last":
    got = RunFolder(folder, {}).metrics[-1]["step"]
else:
    got = sum(1 for r in RunFolder(folder, {}).metrics if "train_loss" in r)
print(rss() - before, rss(), time.perf_counter() - t, time.process_time() - cpu, got)
"""
CASES = {"workbench": "run_view (the Runs tab's curves)",
         "last": "run.metrics[-1]",
         "iterate": "for r in run.metrics"}


def write_metrics(path: Path, size: int) -> int:
    """`size` bytes (about) of one-record training lines; the number of lines."""
    n, written = 0, 0
    with open(path, "w") as f:
        while written < size:
            chunk = "".join(f'{{"step":{i},"train_loss":1.5}}\n' for i in range(n, n + 100_000))
            f.write(chunk)
            written += len(chunk)
            n += 100_000
    return n


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50)
    return ap


def main() -> None:
    args = parser().parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        lines = write_metrics(Path(tmp) / "metrics.jsonl", int(args.mb * 1e6))
        size = os.path.getsize(Path(tmp) / "metrics.jsonl")
        print(f"metrics.jsonl: {size / 1e6:.1f} MB, {lines:,} lines")
        print(f"{'reader':38} {'peak RSS growth':>16} {'peak RSS':>10} {'wall':>8} {'CPU':>8}")
        for case, title in CASES.items():
            out = subprocess.run([sys.executable, "-c", CHILD, case, tmp], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            grew, peak, wall, cpu = int(out[0]), int(out[1]), float(out[2]), float(out[3])
            print(f"{title:38} {grew / 1e6:13.1f} MB {peak / 1e6:7.0f} MB {wall:7.1f} s {cpu:7.1f} s")


if __name__ == "__main__":
    main()
