"""Module names: how each module is named, and the names Python refuses.

A module is named by the spec's `as NAME`, else by its component's (or block's)
default name, numbered when one scope uses it more than once (`drop_1`,
`drop_2`).  Module names (and stack names) become attributes of PyTorch modules
and the keys of their state dicts, so a name Python or `nn.Module` already uses
is refused where the spec writes it, at check time.  (Variable names are not
refused: the generated `Config` maps them to safe identifiers.)

    >>> check_module_name("ln_f", None)
    >>> check_module_name("training", None)
    Traceback (most recent call last):
    ...
    strata.errors.EvalError: 'training' cannot name a module: every PyTorch module has an attribute 'training'
"""

from __future__ import annotations

import keyword
from collections import Counter

from strata.components import COMPONENTS
from strata.dsl import ast as A
from strata.errors import EvalError

__all__ = ["FORWARD_NAMES", "MODULE_ATTRIBUTES", "check_input_name", "check_module_name",
           "check_output_name", "default_name", "plan_names", "repeats_block", "take_name"]

# nn.Module's own attributes (torch 2.x: dir(nn.Module) and what __init__ sets),
# plus those strata's generated classes add.  Names starting with "_" are all
# refused, so private ones need not be listed.
MODULE_ATTRIBUTES = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children",
    "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward",
    "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half", "ipu",
    "load_state_dict", "modules", "mtia", "named_buffers", "named_children", "named_modules",
    "named_parameters", "parameters", "register_backward_hook", "register_buffer",
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_",
    "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad",
    # strata's generated classes, and what strata.compile sets on the model it returns
    "config", "generate", "new_cache", "compiled_step",
})
# strata.compile sets strata_graph, strata_source, strata_report, ... on the model
STRATA_PREFIX = "strata_"


def check_module_name(name: str, span, what: str = "a module") -> None:
    """Raise a located EvalError when `name` cannot be a PyTorch module attribute."""
    if keyword.iskeyword(name):
        raise EvalError(f"'{name}' cannot name {what}: it is a Python keyword", span,
                        "pick another name with `as NAME`")
    if name.startswith("_"):
        raise EvalError(f"'{name}' cannot name {what}: names starting with '_' are private "
                        "to PyTorch modules", span, "pick another name with `as NAME`")
    if name in MODULE_ATTRIBUTES:
        raise EvalError(f"'{name}' cannot name {what}: every PyTorch module has an attribute "
                        f"'{name}'", span, "pick another name with `as NAME`")
    if name.startswith(STRATA_PREFIX):
        raise EvalError(f"'{name}' cannot name {what}: names starting with '{STRATA_PREFIX}' are the "
                        "attributes strata sets on a compiled model (strata_graph, strata_source)", span,
                        "pick another name with `as NAME`")


# Names the generated forward() and generate() methods use for their own values
# and parameters (and the runtime's generate(), which the method calls).
FORWARD_NAMES = frozenset({"self", "x", "h", "T", "B", "pos", "positions", "rope", "mask", "cache", "start_pos",
                           "attention_mask", "layer", "layer_mask", "config", "return_dict", "past",
                           "logits_to_keep", "memory_mask", "max_new_tokens", "temperature", "top_k", "static",
                           "compile", "generate"})


def check_input_name(name: str, span) -> None:
    """Stack inputs become forward() parameters: Python keywords and the names the
    generated forward uses itself are refused."""
    if keyword.iskeyword(name):
        raise EvalError(f"'{name}' cannot name a stack input: it is a Python keyword", span,
                        "inputs become arguments of the model's forward(); pick another name")
    if name in FORWARD_NAMES - {"x"}:
        raise EvalError(f"'{name}' cannot name a stack input: the generated forward() uses it", span,
                        "pick another name, e.g. tokens or ids")


def check_output_name(name: str, span) -> None:
    """Branch outputs become variables of forward() and keys of its dict."""
    check_module_name(name, span, "an output")
    if name in FORWARD_NAMES:
        raise EvalError(f"'{name}' cannot name an output: the generated forward() uses it", span,
                        "name the branch with `as NAME`")


def repeats_block(s: A.Repeat, blocks: dict) -> bool:
    """`repeat(n) layer`: each instance *is* the block; any other body is
    a scope of its own per instance (`h.0.attn`, `h.1.attn`, ...)."""
    return len(s.body) == 1 and isinstance(s.body[0], A.Use) and s.body[0].name in blocks


def default_name(stmt, blocks: dict) -> str | None:
    """The name a statement's module gets without `as NAME`."""
    if isinstance(stmt, A.Use):
        if stmt.name in blocks:
            return stmt.name
        spec = COMPONENTS.get(stmt.name)
        return spec.default_name if spec else stmt.name
    if isinstance(stmt, A.Repeat):
        return stmt.body[0].name if repeats_block(stmt, blocks) else "layers"
    return None


def plan_names(body: list, blocks: dict) -> dict[str, int]:
    """How many statements of a scope take each default name (two or more are numbered)."""
    counts: Counter = Counter()

    def visit(stmts):
        for s in stmts:
            if isinstance(s, (A.Use, A.Repeat)) and s.alias is None:
                n = default_name(s, blocks)
                if n:
                    counts[n] += 1
            if isinstance(s, (A.Residual, A.Parallel, A.Seq, A.Branch)):
                visit(s.body)

    visit(body)
    return dict(counts)


def take_name(stmt, sc, blocks: dict) -> str:
    """Name `stmt`'s module in scope `sc` (its `plan`, `counters`, `used`); a name
    used twice in one scope, or one Python refuses, is a located error."""
    if stmt.alias is not None:
        name = stmt.alias
    else:
        base = default_name(stmt, blocks) or "module"
        if sc.plan.get(base, 0) > 1:
            sc.counters[base] += 1
            name = f"{base}_{sc.counters[base]}"
        else:
            name = base
    check_module_name(name, stmt.span)
    if name in sc.used:
        first = sc.used[name]
        raise EvalError(f"the name '{name}' is already used in '{sc.path}'", stmt.span,
                        f"first used at line {first.line}; pick another with `as NAME`"
                        if first else "pick another with `as NAME`")
    sc.used[name] = stmt.span
    return name
