"""Whatever a spec and its file are called, the generated module compiles,
builds, and does nothing but build the model (a property test)."""

from __future__ import annotations

import keyword
import sys

import pytest

from tests.optional import require

torch = require("torch")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.backends.torch import generate_source
from strata.backends.torch.loader import load_source
from strata.compiler import build_text
from strata.errors import SpecError

TRICKY = keyword.kwlist + ["self", "config", "training", "forward", "state_dict", "__init__",
                           "__dict__", "build", "Config", "nn", "torch", "F", "math", "replace",
                           "dataclass", "KVCache", "generate", "x", "h", "pos", "mask", "T", "B",
                           "layer", "logits", "cache", "_private", "Layers", "M",
                           # the generated methods' own parameters, and what strata.compile sets
                           "logits_to_keep", "memory_mask", "max_new_tokens", "temperature", "top_k",
                           "static", "compile", "start_pos", "strata_graph", "strata_source", "compiled_step"]
PLAIN = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True)
NAMES = st.one_of(st.sampled_from(TRICKY), PLAIN, PLAIN, PLAIN)
FILE_NAMES = st.text(min_size=1, max_size=30)  # quotes, newlines, backslashes, surrogates, """

# What building a model may do: nothing a hostile file name or spec could ask for.
FORBIDDEN = ("open", "os.", "subprocess.", "socket.", "shutil.", "ctypes.", "urllib.", "http.",
             "compile", "exec", "import")
EVENTS: list[str] | None = None


def _audit(event: str, args) -> None:
    if EVENTS is not None and event.startswith(FORBIDDEN):
        EVENTS.append(event)


sys.addaudithook(_audit)


@given(var=NAMES, block=NAMES, module=NAMES, model=NAMES, stack=NAMES, inp=NAMES, origin=FILE_NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_names_give_a_module_that_only_builds(var, block, module, model, stack, inp, origin):
    global EVENTS
    spec = (f"model {model} {{\n  {var} = 8\n"
            f"  block {block} {{ residual {{ layernorm; attention(2, causal=true) as {module} }} }}\n"
            f"  stack {stack}({inp}) {{ embedding(11, {var}); repeat(2) {block} as layers; lm_head(11) }}\n}}")
    try:
        g = build_text(spec, "names.arch")
    except SpecError as e:  # a name strata refuses: refused where it is written
        assert all(d.span is not None and d.span.line >= 1 for d in e.diagnostics), str(e)
        return
    source = generate_source(g, origin=origin)
    code = compile(source, "<generated>", "exec")  # always valid Python
    assert code is not None
    module_ = load_source(source, "names")
    EVENTS = []
    try:
        net = module_.build()
    finally:
        seen, EVENTS = EVENTS, None
    assert seen == [], seen
    assert net(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 11)
    assert net.generate(torch.zeros(1, 3, dtype=torch.long), 2).shape == (1, 5)


@pytest.mark.parametrize("name", ["logits_to_keep", "temperature", "top_k", "static", "generate"])
def test_an_input_named_like_a_generate_parameter_is_refused_or_runs(name):
    """The property test's draws rarely hit these; each once gave a duplicate argument."""
    spec = (f"model m {{ stack s({name}) {{ embedding(11, 8); residual {{ attention(2, causal=true) }}; "
            "lm_head(11) }} }}")
    with pytest.raises(SpecError, match="cannot name a stack input"):
        build_text(spec, "names.arch")


def test_python_keywords_as_spec_names_are_mapped():
    """Model, block and variable names Python reserves are legal in a spec."""
    g = build_text("model None { lambda = 8\n self = 2\n __init__ = 3\n __dict__ = 1\n"
                   "  block class { mlp(self * lambda + __init__ * __dict__) }\n"
                   "  stack s(tokens) { embedding(11, lambda); class as body; lm_head(11) } }")
    source = generate_source(g)
    assert "class None_(nn.Module):" in source and "class Class(nn.Module):" in source
    assert "    lambda_: int = 8" in source and "    self_: int = 2" in source
    assert "    v__init__: int = 3" in source and "    v__dict__: int = 1" in source
    assert "MLP(config.lambda_, config.self_ * config.lambda_ + config.v__init__ * config.v__dict__)" in source
    net = load_source(source).build(lambda_=4)
    assert net(torch.zeros(1, 2, dtype=torch.long)).shape == (1, 2, 11)


def test_a_file_name_cannot_end_the_docstring():
    g = build_text("model m { stack s(tokens) { embedding(10, 4); lm_head(10) } }")
    hostile = 'x.arch"""\nimport os; os.system("echo pwned")\n"""'
    source = generate_source(g, origin=hostile)
    assert "import os" not in source.split('"""')[2]  # still inside the docstring
    tree = compile(source, "<generated>", "exec", flags=0x400)  # ast.PyCF_ONLY_AST
    imports = [n for n in tree.body if type(n).__name__ in ("Import", "ImportFrom")]
    assert [getattr(n, "module", None) or n.names[0].name for n in imports] == \
        ["math", "dataclasses", "torch", "torch.nn", "torch.nn.functional"]


@pytest.mark.parametrize("name", TRICKY)
def test_each_tricky_name_as_variable_block_and_model(name):
    """The names Python treats specially, deterministically (the property test samples them)."""
    spec = (f"model {name} {{\n  {name} = 8\n  block {name} {{ mlp(2 * {name}) }}\n"
            f"  stack s(tokens) {{ embedding(11, {name}); {name} as body; lm_head(11) }}\n}}")
    try:
        g = build_text(spec, "names.arch")
    except SpecError as e:
        assert all(d.span is not None for d in e.diagnostics), str(e)
        return
    module = load_source(generate_source(g, origin=name))
    assert module.build()(torch.zeros(1, 2, dtype=torch.long)).shape == (1, 2, 11)


def test_an_encoder_branch_named_like_the_decoders_memory_is_not_the_memory():
    """forward() once read `memory, memory = self.enc(src)`: the decoder attended to
    the branch's output instead of the encoder's (same shape: silently another
    model).  Renaming the branch must change nothing but the output's key."""
    import strata

    spec = ("model m {{ stack enc(src) {{ embedding(16, 8); branch {{ layernorm }} as {b}; "
            "residual {{ attention(2) }} }}\n stack dec(tgt, memory = enc) {{ embedding(16, 8); "
            "residual {{ cross_attention(2, memory) }}; lm_head(16) }} }}")
    torch.manual_seed(0)
    a = strata.compile(spec.format(b="memory")).eval()
    b = strata.compile(spec.format(b="pooled")).eval()
    b.load_state_dict(a.state_dict())
    src, tgt = torch.randint(0, 16, (2, 5)), torch.randint(0, 16, (2, 3))
    out_a, out_b = a(src, tgt, return_dict=True), b(src, tgt, return_dict=True)
    torch.testing.assert_close(out_a["output"], out_b["output"])
    torch.testing.assert_close(out_a["memory"], out_b["pooled"])
