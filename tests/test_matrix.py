"""Every feature with every other, as a user composes them: specs of one's own in
one's own folder (tests/matrix_specs.py) × every pass family × the commands in
the order a user runs them:

    train (a few steps) -> train --resume -> eval -> generate -> compress
    -> compile the compressed output and run it -> eval the compressed output

Each cell succeeds, or a command gives a clean refusal: exit 1 or 2 with one
line that says why (never an internal error, never a traceback).  Cells that
must succeed are listed; the rest may refuse only for the reason given.

`make test` runs all of it (about 80 s on 2 cores).  The fast subset (each spec
with a few passes, each pass on some spec) is `pytest -k matrix_fast`; the rest
of the product and a hypothesis test that draws random small specs through the
same commands are marked `matrix` (`pytest -m matrix`).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
from pathlib import Path

import pytest

from tests.matrix_specs import PASSES, SPECS, write_spec, write_teacher
from tests.optional import require

torch = require("torch")
require("torchao")

from strata.cli import main  # noqa: E402

# Refusals a cell may give, by pass: (commands, pattern of the one-line reason).
# 2:4 trains (in float, masks held) but runs only on sm80+ GPUs, fp8 only on
# sm89+ GPUs; Wanda needs activations, which compress reads from calibration data
# (eval and generate calibrate on the run's own data).
MAY_REFUSE = {
    "2:4": ({"eval", "generate", "compress"}, r"2:4.*compute capability >= 8\.0, not on cpu"),
    "wanda": ({"compress"}, r"calibration"),
    "fp8": ({"train", "resume", "eval", "generate", "compress"}, r"fp8 quantization needs a CUDA GPU"),
}
# Objectives that do not write text refuse `generate`, saying so.
NO_TEXT = r"does not generate text"

FAST = [("plain", "none"), ("plain", "int8_dynamic"), ("derived", "distill+int8"), ("derived", "lora"),
        ("llama", "int4_weight"), ("llama", "structured"), ("llama", "qat"), ("encdec", "int8_dynamic"),
        ("encdec", "low_rank"), ("mlm", "magnitude"), ("mlm", "int8_weight"), ("classify", "distill"),
        ("classify", "wanda"), ("plain", "2:4"), ("llama", "fp8")]
ALL = [c for c in itertools.product(SPECS, PASSES) if c not in FAST]


def strata(*args) -> tuple[int, str, str]:
    """`strata ARGS` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def clean_refusal(code: int, err: str) -> bool:
    """Exit 1 or 2 with a located or one-line error; never an internal error."""
    if code not in (1, 2) or "internal error" in err or "Traceback" in err:
        return False
    lines = [x for x in err.strip().splitlines() if x.strip()]
    return code == 1 or len(lines) == 1


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("user")


_TEACHERS: dict[tuple[Path, str], Path] = {}


def teacher(root: Path, name: str) -> Path:
    """The spec trained as a teacher, once per module: root/teachers/NAME-run."""
    key = (root, name)
    if key not in _TEACHERS:
        spec = write_teacher(root, name)
        run = root / "teachers" / f"{name}-run"
        code, _, err = strata("train", spec, "--out", run, "--steps", 2, "-q")
        assert code == 0, err
        _TEACHERS[key] = run
    return _TEACHERS[key]


def model_inputs(net) -> tuple:
    """Token ids for every stack that reads tokens (src, tgt for an encoder-decoder)."""
    n = sum(1 for s in net.strata_graph.graph["stacks"] if s["inputs"])
    return tuple(torch.randint(0, 200, (1, 8)) for _ in range(max(n, 1)))


def run_cell(root: Path, spec_name: str, pass_name: str) -> list[str]:
    """The commands of one cell, in order; returns what each did ("ok" or the
    refusal).  Fails on an internal error, a messy refusal, or an unexpected one."""
    if pass_name.startswith("distill"):
        teacher(root, spec_name)
    cell = f"{spec_name}-{pass_name.replace(':', '_').replace('+', '_')}"
    spec = write_spec(root, spec_name, PASSES[pass_name], stem=cell)
    return run_spec(root, cell, spec, pass_name)


def run_spec(root: Path, cell: str, spec: Path, pass_name: str) -> list[str]:
    run, comp = root / "runs" / cell, root / "compressed" / cell
    steps: list[str] = []

    def step(what: str, *args) -> bool:
        code, out, err = strata(*args)
        if code == 0:
            steps.append(f"{what}: ok")
            return True
        assert clean_refusal(code, err), f"{cell}: {what}: exit {code}\n{err}"
        allowed = MAY_REFUSE.get(pass_name)
        if what == "generate" and re.search(NO_TEXT, err):
            steps.append(f"{what}: refused ({err.strip()})")
            return False
        assert allowed and what in allowed[0] and re.search(allowed[1], err), \
            f"{cell}: {what} refused unexpectedly:\n{err}"
        steps.append(f"{what}: refused ({err.strip()})")
        return False

    if not step("train", "train", spec, "--out", run, "--steps", 2, "-q"):
        return steps
    step("resume", "train", spec, "--out", run, "--resume", "--steps", 3, "-q")
    step("eval", "eval", run, "--max-batches", 2)
    step("generate", "generate", run, "--tokens", 4, "--temperature", 0)
    extra = ["--pass", "quantize(int8_dynamic)"] if not PASSES[pass_name] else []
    if not step("compress", "compress", run, "-o", comp, *extra):
        return steps
    assert step("compile", "compile", comp, "-o", root / "compressed" / f"{cell}.py")
    import strata as api

    net = api.compile(comp).eval()
    with torch.no_grad():
        out = net(*model_inputs(net))
    first = out if isinstance(out, torch.Tensor) else next(iter(out.values()))
    assert torch.isfinite(first).all(), cell
    steps.append("run compressed: ok")
    step("eval compressed", "eval", comp, "--max-batches", 2)
    return steps


def check_cell(root: Path, spec_name: str, pass_name: str) -> None:
    steps = run_cell(root, spec_name, pass_name)
    if pass_name not in MAY_REFUSE:
        assert all(s.endswith(": ok") or s.startswith("generate: refused") for s in steps), steps
        assert len(steps) >= 8, steps


@pytest.mark.parametrize("spec_name,pass_name", FAST, ids=[f"{s}-{p}" for s, p in FAST])
def test_matrix_fast(root, spec_name, pass_name):
    check_cell(root, spec_name, pass_name)


@pytest.mark.matrix
@pytest.mark.parametrize("spec_name,pass_name", ALL, ids=[f"{s}-{p}" for s, p in ALL])
def test_matrix_whole(root, spec_name, pass_name):
    check_cell(root, spec_name, pass_name)


# ------------------------------------------------------------------ random specs

hypothesis = require("hypothesis")
st = hypothesis.strategies

RANDOM_PASSES = ["none", "int8_dynamic", "int8_weight", "int4_weight", "magnitude", "low_rank", "lora", "qat"]


@st.composite
def small_decoders(draw) -> str:
    """A small decoder-only spec drawn from the choices a user makes: norm, position
    encoding, heads and grouped KV heads, MLP activation, depth, tied head."""
    d = draw(st.sampled_from([16, 32]))
    heads = draw(st.sampled_from([1, 2, 4]))
    kv = draw(st.sampled_from([h for h in (1, 2, 4) if heads % h == 0]))
    norm = draw(st.sampled_from(["layernorm", "rmsnorm"]))
    pos = draw(st.sampled_from(["learned", "sinusoidal", "rotary"]))
    act = draw(st.sampled_from(["gelu", "relu", "swiglu"]))
    depth = draw(st.integers(1, 2))
    tied = draw(st.booleans())
    position = f"position({pos}, ctx)" if pos != "rotary" else "position(rotary)"
    head = "lm_head(tie=embed)" if tied else "lm_head(vocab, bias=false)"
    return f"""model drawn {{
  vocab = 300
  ctx = 32
  d = {d}
  block layer {{
    residual {{ {norm}; attention({heads}, kv_heads={kv}, causal=true) }}
    residual {{ {norm}; mlp(2 * d, act={act}) }}
  }}
  stack decoder(tokens) {{
    embedding(vocab, d) as embed
    {position}
    repeat({depth}) layer as layers
    {norm}
    {head}
  }}
}}
"""


@pytest.mark.matrix
@hypothesis.settings(max_examples=6, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(spec=small_decoders(), pass_name=st.sampled_from(RANDOM_PASSES))
def test_matrix_random_specs(tmp_path_factory, spec, pass_name):
    root = tmp_path_factory.mktemp("drawn")
    (root / "work").mkdir()
    path = root / "work" / "drawn.arch"
    passes = PASSES[pass_name]
    path.write_text(spec + (f"passes {{\n  {passes}\n}}\n" if passes else ""))
    steps = run_spec(root, f"drawn-{pass_name}", path, pass_name)
    assert all(s.endswith(": ok") for s in steps) and len(steps) == 8, (spec, pass_name, steps)
