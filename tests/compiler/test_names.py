"""Names Python or PyTorch cannot take are refused where the spec writes them."""

from __future__ import annotations

import pytest

from strata.compiler import build_text
from strata.errors import SpecError


@pytest.mark.parametrize("body,where,message", [
    ("embedding(10, 4) as training", (1, 29), "'training' cannot name a module: every PyTorch module"),
    ("embedding(10, 4) as class", (1, 29), "'class' cannot name a module: it is a Python keyword"),
    ("embedding(10, 4) as _hidden", (1, 29), "names starting with '_' are private"),
    ("embedding(10, 4); branch { layernorm } as x", (1, 47), "'x' cannot name an output"),
    # once a runtime TypeError: the branch's variable replaced the forward's logits_to_keep argument
    ("embedding(10, 4); branch { layernorm } as logits_to_keep", (1, 47), "'logits_to_keep' cannot name an output"),
    # once a TypeError from strata.compile setting model.strata_graph on a stack module
    ("embedding(10, 4) as strata_graph", (1, 29), "names starting with 'strata_' are the attributes strata sets"),
])
def test_module_and_output_names(body, where, message):
    with pytest.raises(SpecError) as e:
        build_text(f"model m {{ stack s(tokens) {{ {body} }} }}", "n.arch")
    d = e.value.diagnostics[0]
    assert (d.span.line, d.span.col) == where and message in d.message, str(e.value)
    assert d.hint


def test_stack_and_input_names():
    with pytest.raises(SpecError) as e:
        build_text("model m { stack forward(tokens) { embedding(10, 4) } }", "n.arch")
    assert "'forward' cannot name a stack" in str(e.value)
    with pytest.raises(SpecError) as e:
        build_text("model m { stack s(pos) { embedding(10, 4) } }", "n.arch")
    assert "'pos' cannot name a stack input: the generated forward() uses it" in str(e.value)
    assert e.value.diagnostics[0].span.line == 1


@pytest.mark.parametrize("name", ["logits_to_keep", "memory_mask", "max_new_tokens", "temperature", "top_k",
                                  "static", "compile", "generate"])
def test_inputs_named_like_the_generated_methods_parameters(name):
    """Each once made a forward() or generate() with a duplicate argument (a
    SyntaxError from strata.compile) or shadowed the runtime's generate()."""
    spec = (f"model m {{ stack enc(src) {{ embedding(10, 4) }}\n"
            f" stack dec({name}, memory = enc) {{ embedding(10, 4); residual {{ cross_attention(2, memory) }}; "
            f"lm_head(10) }} }}")
    with pytest.raises(SpecError) as e:
        build_text(spec, "n.arch")
    d = e.value.diagnostics[0]
    assert f"'{name}' cannot name a stack input" in d.message and (d.span.line, d.span.col) == (2, 12)
    with pytest.raises(SpecError) as e:
        build_text("model m { stack strata_source(tokens) { embedding(10, 4) } }", "n.arch")
    assert "'strata_source' cannot name a stack" in str(e.value)
