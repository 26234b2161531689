"""The code base, generated files' runtime helpers included, passes ruff (pyproject's rules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "strata", "tests", "benchmarks"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_generated_source_passes_ruff(tmp_path):
    from strata.api import generate_source

    for spec in ("gpt2", "bert_base", "transformer_base", "llama2_7b"):
        (tmp_path / f"{spec}.py").write_text(generate_source(f"specs/{spec}.arch"))
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--select", "E4,E7,E9,F",
                        "--line-length", "120", str(tmp_path)], capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_merge_conflict_markers():
    """A merge left `<<<<<<< HEAD` in README's command table once; no tracked text file keeps one."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.split()
    if not files:  # not a git checkout (an sdist): nothing to scan
        return
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".toml", ".arch", ".yaml", ".yml", ".json", ".js", ".txt", ".sh") \
                or not path.is_file():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if line.startswith(("<<<<<<< ", ">>>>>>> ")) or line == "=======" and path.suffix != ".md":
                found.append(f"{name}:{i}: {line}")
    assert not found, "\n".join(found)
