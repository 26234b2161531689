"""Specs and hostile inputs shared by the diagram tests (built once per session)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPECS = ("gpt2", "llama2_7b", "transformer_base", "bert_base")
LEVELS = ("model", "block", "op")

# Reserved words as module, block, stack and model names; a teacher string full
# of characters mermaid, dot and HTML read; a name longer than any label line.
# The teacher is written into the graph after the passes ran: the spec itself
# must name a teacher that exists (a model of the file), and no model or file
# can be called this.
HOSTILE_TEACHER = 'a "q" <b> & #c [d] {e} (f) | `g` ;h; %%i üñí 名前 --> end; <br/> &amp; #quot;'
HOSTILE = '''
model teacher { stack s(t) { embedding(10, 8); lm_head(10) } }
model end {
  d = 8
  block subgraph { residual { layernorm as style; attention(2, causal=true) as click } }
  stack graph(default) {
    embedding(10, d) as classDef
    repeat(2) subgraph as end
    linear(4) as a_very_long_module_name_that_goes_on_and_on_and_on_and_on_for_ever_and_ever
    lm_head(10) as direction
  }
}
passes {
  distill(teacher)
  quantize(int8_weight)
  prune(0.5)
  low_rank(2, on="linear")
  fuse_qkv
}
'''


# A repeat whose instances differ by index (two variants), and a repeat of an
# inline body (no named block).
VARIANTS = '''
model var {
  d = 16
  block layer(w) { residual { rmsnorm; attention(2, causal=true, window=w) } }
  stack decoder(tokens) {
    embedding(50, d) as wte
    repeat(4, i) layer(w = 8 if i % 2 == 0 else 1000) as h
    repeat(2) { residual { rmsnorm; mlp(32) } } as tail
    lm_head(tie=wte)
  }
}
'''


@cache
def variants_graph():
    from strata.compiler import build_text

    return build_text(VARIANTS, "variants.arch")


@cache
def graph(name: str):
    from strata.compiler import build_file

    return build_file(ROOT / "specs" / f"{name}.arch")


@cache
def hostile_graph():
    from strata.compiler import build_text
    from strata.passes import apply_passes

    g = apply_passes(build_text(HOSTILE, "hostile.arch"))
    g.graph["distill"].update(teacher=HOSTILE_TEACHER, teacher_name=HOSTILE_TEACHER)
    return g
