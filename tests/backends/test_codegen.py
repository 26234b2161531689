"""The generated source: golden file, standalone execution, readability, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from strata.api import generate_source
from strata.cli import main
from tests.optional import require

GOLDEN = Path(__file__).parent / "golden"
REFRESH = os.environ.get("STRATA_REFRESH_GOLDEN") == "1"


# Passes a spec's golden shows (quantize, prune and distill leave the source as the
# plain model's until they lower to kernels; a golden per pass shows when they do).
PASS_SPEC = """
model tiny_llama {{
  vocab = 64
  d     = 32
  heads = 4
  depth = 2
  block layer {{
    residual {{ rmsnorm as attn_norm; attention(heads, kv_heads=2, causal=true, bias=false) }}
    residual {{ rmsnorm as mlp_norm; mlp(3 * d, act=swiglu, bias=false) }}
  }}
  stack decoder(tokens) {{
    embedding(vocab, d) as embed
    position(rotary)
    repeat(depth) layer as layers
    rmsnorm as norm
    linear(d) as proj
    lm_head(vocab)
  }}
}}
passes {{ {passes} }}
"""
PASSES = {"fuse_qkv": "fuse_qkv", "fuse_mlp": "fuse_mlp",
          "quantize": 'quantize(int8_dynamic, on="mlp")', "prune": 'prune(0.5, on="mlp")',
          "low_rank": 'low_rank(8, on="decoder.proj")', "distill": 'distill("teacher.arch")'}
SPECS = ["gpt2", "llama2_7b", "bert_base", "transformer_base", "tiny_shakespeare", "t5_small", "gemma2_2b"]


def check_golden(name: str, src: str) -> None:
    """Compare with tests/backends/golden/NAME.py; STRATA_REFRESH_GOLDEN=1 rewrites it.
    A missing golden fails: every change to generated code is reviewed as a diff."""
    path = GOLDEN / f"{name}.py"
    if REFRESH:
        path.write_text(src)
    assert path.exists(), f"no golden {path}; create it with STRATA_REFRESH_GOLDEN=1"
    assert src == path.read_text(), f"generated source of {name} changed; refresh with STRATA_REFRESH_GOLDEN=1"


@pytest.mark.parametrize("name", SPECS)
def test_golden_specs(name):
    check_golden(name, generate_source(f"specs/{name}.arch"))


@pytest.mark.parametrize("name", PASSES)
def test_golden_per_pass(tmp_path, name):
    spec = tmp_path / "tiny_llama.arch"
    spec.write_text(PASS_SPEC.format(passes=PASSES[name]))
    (tmp_path / "teacher.arch").write_text(PASS_SPEC.format(passes="").replace("depth = 2", "depth = 4"))
    src = generate_source(spec).replace(str(spec), "tiny_llama.arch")
    check_golden(f"pass_{name}", src)


def test_gpt2_reads_like_nanogpt():
    src = generate_source("specs/gpt2.arch")
    lines = src.splitlines()
    # 220 before the static KV cache, crop and the compiled step; 258 with the decoding head (runtime helpers);
    # 273 with generate's check of the learned positions (a ValueError with the limit, not an IndexError)
    assert len(lines) <= 273
    for line in ("class CausalSelfAttention(nn.Module):", "class MLP(nn.Module):",
                 "class Layer(nn.Module):", "class Decoder(nn.Module):", "class Gpt2(nn.Module):",
                 "    d: int = 768", "self.h = nn.ModuleList([Layer(config) for _ in range(config.depth)])",
                 "x = x + self.drop_1(self.attn(self.ln_1(x), mask=mask, cache=cache))",
                 "self.mlp = MLP(config.d, 4 * config.d)",
                 "self.decoder.lm_head.weight = self.decoder.wte.weight  # tied: one Parameter",
                 "def build(config=None, **changes):"):
        assert line in src, line
    assert src.count("class Layer") == 1
    # sizes come from the config: the only 768 is Config's default
    assert sum("768" in ln for ln in lines) == 1
    assert "GPT-2's init" not in src and 'device="meta"' not in src and "tied_weights" not in src
    imports = [ln for ln in lines if ln.startswith(("import ", "from "))]
    assert imports == ["import math", "from dataclasses import dataclass, replace", "import torch",
                       "import torch.nn as nn", "import torch.nn.functional as F"]


def test_shape_comments_only_where_the_shape_changes():
    src = generate_source("specs/gpt2.arch")
    decoder = src[src.index("class Decoder"):src.index("class Gpt2")]
    commented = [ln.split("#")[1].strip() for ln in decoder.splitlines() if "# (" in ln]
    assert commented == ["(B, T, d)", "(B, T, vocab)"]
    layer = src[src.index("class Layer"):src.index("class Decoder")]
    assert "# (" not in layer  # nothing in a layer changes the shape of the stream


def test_emitted_file_runs_without_strata(tmp_path):
    require("torch")
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
