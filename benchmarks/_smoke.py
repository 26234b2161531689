"""`--smoke`: a benchmark's own code on a model small enough for a test run
(tests/benchmarks/test_smoke.py); the figures it prints then mean nothing."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from pathlib import Path

HELP = "tiny model and sizes, to test that the script runs (the figures mean nothing)"
ROOT = Path(__file__).resolve().parents[1]
# GPT-2 small's vocabulary and context (token ids and lengths stay valid) at toy
# width and depth: HF GPT2Config keywords, and the spec's variables alike.
GPT2 = {"n_embd": 64, "n_head": 4, "n_layer": 2}
_VARS = {"d": GPT2["n_embd"], "heads": GPT2["n_head"], "depth": GPT2["n_layer"]}


def gpt2_spec() -> str:
    """specs/gpt2.arch at toy size (GPT2), in a temporary file kept until exit."""
    return shrunk("gpt2", **_VARS)


def shrunk(spec: str, **values: int) -> str:
    """specs/SPEC.arch with some of its variables changed (shrunk("gpt2", depth=2)),
    in a temporary file kept until exit."""
    text = (ROOT / "specs" / f"{spec}.arch").read_text(encoding="utf-8")
    for name, value in values.items():
        text, n = re.subn(rf"^(\s*{name}\s*=\s*)\d+", rf"\g<1>{value}", text, count=1, flags=re.M)
        assert n == 1, f"specs/{spec}.arch: no `{name} = ...` to shrink"
    tmp = tempfile.mkdtemp(prefix="strata-smoke-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    path = Path(tmp) / f"{spec}.arch"
    path.write_text(text, encoding="utf-8")
    return str(path)
