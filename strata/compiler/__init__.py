"""The compiler: spec AST -> graph IR.  Never imports torch.

    resolve.py    imports and `extends` -> one self-contained model
    elaborate.py  the model's statements -> IR ops with shapes (components/ say how)
    sections.py   the passes { } and train { } sections, checked
    build.py      the three in order: build, build_file, build_text
    ir.py         the graph IR, lint, tabular dump
    cost.py       parameters, FLOPs, memory;  summary.py  the `strata summary` table
    select.py     pass selectors (`on=`);  positions.py  where a model's positions end

    >>> g = build_text('''
    ... model tiny {
    ...   stack decoder(tokens) { embedding(10, 4) as wte; layernorm; lm_head(tie=wte) }
    ... }''')
    >>> g.graph.parameters
    48
"""

from strata.compiler.build import Analysis, analyze_text, as_graph, build, build_file, build_text
from strata.compiler.select import select

__all__ = ["Analysis", "analyze_text", "as_graph", "build", "build_file", "build_text", "select"]
