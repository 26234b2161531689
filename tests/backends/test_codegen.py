"""The generated source: golden file, standalone execution, readability, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from strata.api import generate_source
from strata.cli import main

GOLDEN = Path(__file__).parent / "golden"
REFRESH = os.environ.get("STRATA_REFRESH_GOLDEN") == "1"


def test_golden_tiny_shakespeare():
    src = generate_source("specs/tiny_shakespeare.arch")
    path = GOLDEN / "tiny_shakespeare.py"
    if REFRESH or not path.exists():
        path.write_text(src)
    assert src == path.read_text(), "generated source changed; refresh with STRATA_REFRESH_GOLDEN=1"


def test_source_reads_like_nanogpt():
    src = generate_source("specs/gpt2.arch")
    assert 150 <= len(src.splitlines()) <= 350
    for line in ("class CausalSelfAttention(nn.Module):", "class MLP(nn.Module):",
                 "class Layer(nn.Module):", "class Decoder(nn.Module):", "class Gpt2(nn.Module):",
                 "self.h = nn.ModuleList([Layer() for _ in range(12)])", "x = x + h  # (B, T, 768)",
                 "def build():"):
        assert line in src, line
    assert src.count("class Layer") == 1
    imports = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]
    assert imports == ["import math", "import torch", "import torch.nn as nn",
                       "import torch.nn.functional as F"]


def test_emitted_file_runs_without_strata(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "model.py"
    assert main(["compile", "specs/tiny_shakespeare.arch", "-o", str(out)]) == 0
    script = (
        "import sys\n"
        "sys.modules['strata'] = None  # any `import strata` now fails\n"
        "import torch, model\n"
        "m = model.build()\n"
        "y = m(torch.randint(0, 65, (2, 10)))\n"
        "assert y.shape == (2, 10, 65)\n"
        "assert m.generate(torch.zeros(1, 1, dtype=torch.long), 3).shape == (1, 4)\n"
        "print('ok')\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); exec({script!r})"
    r = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_cli_compile_prints_source(capsys):
    assert main(["compile", "specs/gpt2.arch"]) == 0
    assert "class Gpt2(nn.Module):" in capsys.readouterr().out


def test_cli_compile_reports_spec_errors(tmp_path, capsys):
    bad = tmp_path / "bad.arch"
    bad.write_text("model m { stack s(tokens) { embedding(10, 4); attention(3) } }")
    assert main(["compile", str(bad), "-o", str(tmp_path / "m.py")]) == 1
    assert not (tmp_path / "m.py").exists()
