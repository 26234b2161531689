"""The IR's data, typed: what every key on the graph, a node and an edge means,
in one place.

A graph is a networkx MultiDiGraph whose attribute dicts are the classes below
(`IRGraph` sets networkx's dict factories), so a reader writes `g.graph.stacks`,
`g.nodes[n].op` and `e.shape` — a field with a type and a meaning — where it
once wrote a string key.  They stay dicts: networkx, JSON and copies keep
working, and `lint` checks every field's type after every pass.

    >>> d = NodeData(op="linear", attrs={"in": 4, "out": 8}, scope="s", component="s.fc",
    ...              kind="linear", params={"weight": (8, 4)}, tied={}, span=None)
    >>> d.op, d.params["weight"], d.sym
    ('linear', (8, 4), None)
    >>> check_fields(d, "node s.fc")
    >>> check_fields(NodeData(d, op=3), "node s.fc")
    Traceback (most recent call last):
    ...
    strata.compiler.ir_types.IRTypeError: node s.fc: op is int, expected str
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["ATTRS", "EdgeData", "GraphData", "IRTypeError", "NodeData", "PASS_MARKS", "check_attrs", "check_fields",
           "ir_graph_class"]

_MISSING = object()


class IRTypeError(Exception):
    """A field of the IR holds a value of the wrong type (a bug in strata)."""


class Field:
    """One key of an attribute dict, read and written as an attribute.

    types: the accepted Python types (None allowed when `optional`); required
    fields must be present once the owner is complete (lint checks it);
    optional ones read as `default` when absent."""

    def __init__(self, types: tuple[type, ...] | type, doc: str, *, optional: bool = False,
                 default: Any = None):
        self.types = types if isinstance(types, tuple) else (types,)
        self.doc, self.optional, self.default = doc, optional, default
        self.name = ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name
        owner.FIELDS = {**getattr(owner, "FIELDS", {}), name: self}

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.get(self.name, _MISSING)
        if value is _MISSING:
            if self.optional:
                return self.default
            raise AttributeError(f"{owner.__name__} has no {self.name!r} yet")
        return value

    def __set__(self, obj, value) -> None:
        obj[self.name] = value


class _Typed(dict):
    FIELDS: ClassVar[dict[str, Field]] = {}


# ---------------------------------------------------------------- the graph

class GraphData(_Typed):
    """`g.graph`: the model as a whole."""

    name = Field(str, "the model's name (`model NAME { }`)")
    file = Field(str, "the spec file the model was read from ('<string>' for text)", optional=True)
    stacks = Field(list, "the stacks in order: {name, input, output, seq, ...} each")
    outputs = Field(dict, "output name -> the node that produces it")
    scopes = Field(dict, "scope path -> {block, stack, ...}: the block instances")
    repeats = Field(list, "{path, block, count, instances}: each `repeat` (`layer x 12`)")
    components = Field(dict, "component path -> {kind, options, span, ...}: every instance")
    vars = Field(dict, "the spec's variables, evaluated: name -> value")
    var_syms = Field(dict, "the variables as symbolic expressions (for `config.d`)",
                     optional=True, default=None)
    passes = Field(list, "passes still to apply: {name, options, span} each")
    applied = Field(list, "passes applied, in order: {name, options, record} each",
                    optional=True, default=())
    train = Field((dict, type(None)), "the `train { }` section, validated (None: none)")
    train_keys = Field(list, "the settings the `train { }` section writes (the rest of `train` are "
                       "defaults)", optional=True, default=())
    parameters = Field(int, "parameter count (ties counted once)", optional=True, default=None)
    nonzero_parameters = Field(int, "parameters left non-zero by unstructured pruning",
                               optional=True, default=None)
    spec_params = Field(dict, "state_dict key -> shape before any pass (a checkpoint's names)",
                        optional=True, default=None)
    distill = Field(dict, "the `distill(teacher, ...)` pass's settings, for training",
                    optional=True, default=None)


# ---------------------------------------------------------------- nodes

class NodeData(_Typed):
    """`g.nodes[n]`: one op.  Node ids are module paths (`decoder.h.3.attn.q`)."""

    op = Field(str, "one of ir.OPS")
    attrs = Field(dict, "the op's attributes (ir.ATTRS lists them per op)")
    scope = Field(str, "the block instance (`decoder.h.3`) or stack holding it")
    component = Field((str, type(None)), "the component instance (`decoder.h.3.attn`); None for "
                      "structural ops (a residual `add`, a stack `input`)")
    kind = Field(str, "the component kind (`attention`, `mlp`, ...; the op for structural ones)")
    params = Field(dict, "local name -> shape; the state_dict key is f'{node}.{name}'")
    tied = Field(dict, "local name -> the state_dict key it shares (not counted as parameters)")
    span = Field(object, "where the spec wrote it (dsl Span), for errors", optional=True)
    sym = Field(tuple, "the output shape as symbolic axes ((kind, value), ...)", optional=True)
    out_shape = Field(tuple, "the shape produced where no edge carries it (outputs, a bias)",
                      optional=True)
    seq = Field((int, str), "a position embedding's sequence axis", optional=True)


class EdgeData(_Typed):
    """The data of an edge u -> v: the tensor flowing into v's operand `port`."""

    shape = Field(tuple, "ints and symbols (`B`, `T`)")
    dtype = Field(str, "'int64' for token ids, 'float' for activations")
    port = Field(int, "the operand slot of the destination (attention: q=0, k=1, v=2)")
    part = Field(int, "which part of a `split` (a fused projection) this edge carries",
                 optional=True)


# ---------------------------------------------------------------- op attributes

# node.attrs, per op: every key a node of that op may carry, and what it means.
# A pass that marks nodes (quantize, prune, lora, ...) declares its keys here;
# lint refuses a key no entry names (a typo, or a reader with no declared meaning).
ATTRS: dict[str, dict[str, str]] = {
    "input": {"name": "the input's name (`ids`, `token_type_ids`)", "dtype": "int64 | float",
              "optional": "the model runs without it (a default is used)"},
    "embedding": {
        "role": "token (ids -> x) | position | token_type (x -> x + e) | relative_position",
        "vocab": "rows of the table", "dim": "width", "ctx": "positions a learned table holds",
        "type": "learned | sinusoidal | rope | alibi | relative", "scale": "output multiplier",
        "offset": "index offset of a learned position table (OPT's 2)",
        "buckets": "relative-position buckets (T5)", "max_distance": "relative distance cap (T5)",
        "heads": "heads a relative bias serves", "bidirectional": "relative buckets both ways"},
    "linear": {
        "in": "input width", "out": "output width", "bias": "has a bias",
        "role": "q | k | v | o | qkv | gate | up | down | head | ... (None: unnamed)",
        "scale": "output multiplier (a head's logit scale)", "softcap": "tanh cap on the output",
        "fused": "the projections a fusion merged, in order",
        "quant": "the badge the quantize pass gives it (`int8`, `int4 g128`)",
        "quant_scheme": "the scheme its kernel runs (int8_dynamic, int4_weight, ...)",
        "quant_bits": "bits per weight of the scheme", "group_size": "weights per scale group",
        "qat": "trained with fake quantization", "lora": "LoRA adapter {rank, alpha, dropout}",
        "low_rank": "a | b: which factor of a low-rank pair (x -> a -> b)", "rank": "the factorisation's rank",
        "density": "fraction of weights left non-zero by pruning", "prune_method": "how it was pruned"},
    "norm": {"type": "layer | rms", "eps": "epsilon", "bias": "has a bias",
             "unit_offset": "weight stored as w - 1 (Gemma)", "per_head": "normalises each head (qk-norm)"},
    "attention": {
        "heads": "query heads", "kv_heads": "key / value heads (GQA)", "head_dim": "width per head",
        "causal": "masks the future", "cross": "keys and values from another stack",
        "rope": "rotary settings {theta, dim, ...} or None", "alibi": "adds ALiBi biases",
        "relative": "adds the stack's relative-position bias", "window": "sliding window or None",
        "scale": "logit scale (None: 1/sqrt(head_dim))", "softcap": "tanh cap on the logits",
        "dropout": "attention-probability dropout"},
    "activation": {"fn": "gelu | relu | silu | ..."},
    "add": {"why": "what the sum is (residual, parallel, ...) for labels"},
    "mul": {"why": "what the product is (SwiGLU's gate, ...)"},
    "dropout": {"p": "drop probability"},
    "moe": {"experts": "routed experts", "top_k": "experts per token", "hidden": "expert width",
            "act": "expert activation", "gated": "experts are gated MLPs", "bias": "has biases",
            "normalize": "top-k weights renormalised", "shared": "always-on shared experts"},
    "pool": {"mode": "which token stands for the sequence (first: [CLS])"},
    "split": {"sizes": "widths of the parts", "parts": "the names of the parts"},
}


# Marks passes registered later declare (Pass.marks; strata.passes fills it).
PASS_MARKS: dict[str, str] = {}


def check_attrs(op: str, attrs: dict, where: str, extra: dict | None = None) -> None:
    """Raise IRTypeError when `attrs` holds a key ATTRS does not declare for `op`
    (nor `extra`, those the node's component declares, Component.attrs, nor a
    registered pass's Pass.marks)."""
    known = ATTRS.get(op, {})
    for k in attrs:
        if k not in known and k not in PASS_MARKS and not (extra and k in extra):
            raise IRTypeError(f"{where}: attribute {k!r} is not one a {op!r} node has "
                              "(declare it in strata/compiler/ir_types.py ATTRS, "
                              "its component's `attrs` or its pass's `marks`)")


def check_fields(d: _Typed, where: str) -> None:
    """Raise IRTypeError when a required field is missing or any field has the wrong type."""
    for name, f in type(d).FIELDS.items():
        if name not in d:
            if not f.optional:
                raise IRTypeError(f"{where}: no {name!r}")
            continue
        value = d[name]
        if value is None and (f.optional or type(None) in f.types):
            continue
        if not isinstance(value, f.types):
            want = " or ".join(t.__name__ for t in f.types if t is not type(None))
            raise IRTypeError(f"{where}: {name} is {type(value).__name__}, expected {want}")


_CLASS: list = []


def ir_graph_class():
    """The networkx MultiDiGraph whose graph, node and edge dicts are typed
    (built on first use: `strata check` never imports networkx)."""
    if not _CLASS:
        import networkx as nx  # lazy: startup

        class IRGraph(nx.MultiDiGraph):
            graph_attr_dict_factory = GraphData
            node_attr_dict_factory = NodeData
            edge_attr_dict_factory = EdgeData

        _CLASS.append(IRGraph)
    return _CLASS[0]
