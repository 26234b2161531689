"""Names a spec gives that become Python names in generated code.

Module names (`as NAME`, stack names) become attributes of PyTorch modules and
the keys of their state dicts, so a name Python or `nn.Module` already uses is
refused where the spec writes it, at check time.  (Variable names are not
refused: the generated `Config` maps them to safe identifiers.)

    >>> check_module_name("ln_f", None)
    >>> check_module_name("training", None)
    Traceback (most recent call last):
    ...
    strata.errors.EvalError: 'training' cannot name a module: every PyTorch module has an attribute 'training'
"""

from __future__ import annotations

import keyword

from strata.errors import EvalError

__all__ = ["FORWARD_NAMES", "MODULE_ATTRIBUTES", "check_input_name", "check_module_name",
           "check_output_name"]

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
    # strata's generated classes
    "config", "generate", "new_cache",
})


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


# Names the generated forward() methods use for their own values.
FORWARD_NAMES = frozenset({"self", "x", "h", "T", "B", "pos", "positions", "rope", "mask", "cache", "start_pos",
                           "attention_mask", "layer", "layer_mask", "config", "return_dict", "past"})


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
