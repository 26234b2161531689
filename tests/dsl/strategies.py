"""Hypothesis strategies for random valid spec ASTs (every one the text form can hold).

Names avoid the grammar's keywords but include YAML's troublemakers (`yes`,
`on`, `null`) and the YAML form's own keys (`items`, `value`, `comment`), so
the round trips exercise quoting and the long forms.
"""

from __future__ import annotations

from hypothesis import strategies as st

from strata.dsl import ast as A
from strata.dsl.yaml_nodes import KEYWORDS

# Drawn from pools (cheap for hypothesis) plus a little free text.
_NAMES = ["a", "b", "d", "x", "_", "_h2", "Layer", "heads", "vocab", "tie", "memory", "window",
          "yes", "no", "on", "off", "null", "Null", "True", "y", "let", "comment", "items", "value",
          "body", "index", "inputs", "params", "vars", "as_", "iff", "model2"]
names = st.sampled_from([n for n in _NAMES if n not in KEYWORDS])
# A use named `comment` is refused by the YAML writer when it also has a comment.
use_names = names.filter(lambda s: s != "comment")


def _unique(elements, max_size=3, min_size=0):
    """Lists of nodes with distinct names.  The names are drawn first: a retry on a
    repeated name is cheap (unique_by on the nodes reprs the whole strategy)."""
    def named(ns):
        return st.tuples(*[elements.map(lambda e, n=n: e.model_copy(update={"name": n}))
                           for n in ns]).map(list)
    return st.lists(names, min_size=min_size, max_size=max_size, unique=True).flatmap(named)


# Printable text: no surrogates, controls, unassigned or private-use code points.
_chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn", "Co"))
_STRINGS = ["", " ", "gelu", "4*d", "decoder.h.*.mlp.*", "true", "null", "~", "yes", "- x",
            "a # b", "#", '"q"', "it's", "back\\slash", "tab\there", "two\nlines", "trail\n",
            "x: y", "[1]", "{a}", "1e-3", "0x1F", "-1", ".inf", "é ü 中", "\u2028", "(1,)"]
strings = st.one_of(st.sampled_from(_STRINGS), st.text(_chars, max_size=4))
_line = st.one_of(st.sampled_from(["", " ", "why", " indented", "a: b", "# hash", "- item",
                                   "trailing ", "ü"]),
                  st.text(st.characters(codec="utf-8", exclude_categories=(
                      "Cs", "Cc", "Cn", "Co", "Zl", "Zp")), max_size=6))
comments = st.one_of(st.none(), st.none(), st.none(),
                     st.lists(_line, min_size=1, max_size=3).map("\n".join))

_spelled = st.sampled_from([("1e-3", 0.001), ("1_000", 1000), ("0.50", 0.5), (".5", 0.5),
                            ("5.", 5.0), ("007", 7), ("1E5", 100000.0), ("2.5e+2", 250.0)])

numbers = st.one_of(
    st.integers(0, 10**20).map(lambda v: A.Num(value=v)),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(lambda v: A.Num(value=abs(v))),
    _spelled.map(lambda tv: A.Num(value=tv[1], text=tv[0])),
)
leaves = st.one_of(
    numbers,
    strings.map(lambda s: A.Str(value=s)),
    st.sampled_from([True, False, None]).map(lambda v: A.Const(value=v)),
    st.lists(names, min_size=1, max_size=3).map(lambda ps: A.Name(id=".".join(ps))),
)


def _keywords(values):
    return _unique(st.builds(A.Keyword, name=names, value=values))


def _compound(children):
    return st.one_of(
        st.builds(A.BinOp, op=st.sampled_from(A.BINARY_OPS), left=children, right=children),
        st.builds(A.UnaryOp, op=st.sampled_from(A.UNARY_OPS), operand=children),
        st.builds(A.Cond, test=children, body=children, orelse=children),
        st.builds(A.Call, func=names, args=st.lists(children, max_size=3), kwargs=_keywords(children)),
        st.builds(A.Tuple, items=st.lists(children, min_size=1, max_size=3)),
    )


exprs = st.recursive(leaves, _compound, max_leaves=5)
aliases = st.one_of(st.none(), names)

uses = st.builds(A.Use, name=use_names, args=st.lists(exprs, max_size=2), kwargs=_keywords(exprs),
                 alias=aliases, comment=comments)
assigns = st.builds(A.Assign, name=names, value=exprs, comment=comments)


def _constructs(children):
    bodies = st.lists(children, max_size=3)
    return st.one_of(
        st.builds(A.Residual, body=bodies, comment=comments),
        st.builds(A.Parallel, body=bodies, comment=comments),
        st.builds(A.Seq, body=bodies, comment=comments),
        st.builds(A.Branch, body=bodies, alias=aliases, comment=comments),
        st.builds(A.Repeat, count=exprs, index=aliases, body=bodies, alias=aliases, comment=comments),
        # the common `repeat(depth) layer as h` shape
        st.builds(A.Repeat, count=exprs, index=aliases, alias=aliases, comment=comments,
                  body=st.builds(A.Use, name=use_names, args=st.lists(exprs, max_size=2))
                  .map(lambda u: [u])),
    )


statements = st.recursive(st.one_of(uses, assigns), _constructs, max_leaves=4)
bodies = st.lists(statements, max_size=3)

params = st.builds(A.Param, name=names, default=st.one_of(st.none(), exprs))
blocks = st.builds(A.BlockDef, name=names, params=_unique(params), body=bodies, comment=comments)
stack_inputs = st.builds(A.StackInput, name=names, source=aliases)
stacks = st.builds(A.StackDef, name=names, inputs=st.lists(stack_inputs, min_size=1, max_size=3),
                   body=bodies, comment=comments)
models = st.builds(A.ModelDef, name=names, extends=aliases, vars=_unique(assigns, 4),
                   blocks=_unique(blocks, 1), stacks=_unique(stacks, 2), comment=comments)
imports = st.builds(A.Import, path=strings, comment=comments,
                    names=st.one_of(st.none(), st.lists(names, min_size=1, max_size=3)))
passes = st.builds(A.Passes, items=st.lists(uses, max_size=3), comment=comments)
trains = st.builds(A.Train, items=_unique(assigns, 4), comment=comments)

specs = st.builds(A.SpecFile, imports=st.lists(imports, max_size=2), blocks=_unique(blocks, 1),
                  models=_unique(models, 2), passes=st.one_of(st.none(), passes),
                  train=st.one_of(st.none(), trains))
