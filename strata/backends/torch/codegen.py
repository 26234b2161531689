"""Lower the graph IR to readable PyTorch source.

The walk, top to bottom:
  1. per stack, decide what attention needs (rotary cos/sin, a mask, a KV cache);
  2. per scope (stack or block instance), group its nodes into *units*: a
     component (`attn`), a child block, a repeat, or a bare `add`;
  3. order the units topologically and name the values they produce (`x`, `h`,
     ...) by liveness, so residuals read `x = x + h` whatever the wiring;
  4. emit one class per distinct block (by `ir.scope_signature`), one per
     component variant, one per stack and one for the model.

    >>> from strata.compiler import build_text
    >>> src = generate_source(build_text('''model m {
    ...   stack decoder(tokens) { embedding(10, 4) as wte; layernorm; lm_head(tie=wte) } }'''))
    >>> "class M(nn.Module):" in src
    True
"""

from __future__ import annotations

import networkx as nx

from strata.backends.torch import helpers as H
from strata.backends.torch.analysis import (
    RESERVED,
    Analysis,
    CodegenError,
    Unit,
    camel,
    shape_comment,
)
from strata.backends.torch.lowering import Lowering
from strata.backends.torch.toplevel import TopLevel
from strata.compiler import ir

__all__ = ["Codegen", "CodegenError", "Unit", "generate_source"]


def repeat_list(vals: list[str]) -> str:
    """`[a, b] * 2` for a list that repeats a period, else the list itself."""
    for p in range(1, len(vals)):
        if len(vals) % p == 0 and vals == vals[:p] * (len(vals) // p):
            return f"[{', '.join(vals[:p])}] * {len(vals) // p}"
    return f"[{', '.join(vals)}]"


class Codegen(Analysis, Lowering, TopLevel):
    """IR -> source; see the module docstring for the walk."""

    def block_class(self, path: str, extras: list[str]) -> str:
        key = (ir.scope_signature(self.g, path), tuple(extras))
        if key in self.block_classes:
            return self.block_classes[key]
        block = self.scopes[path].get("block") or path.rsplit(".", 2)[-2]
        init, fwd = self.scope_body(path, ["x"] + extras)
        params = ["self", "x"] + [e if e in self.stacks[path.split(".")[0]]["memory"] else f"{e}=None"
                                  for e in extras]
        source = "\n".join([
            "class {name}(nn.Module):",
            f'    """One `{block}` block."""', "",
            "    def __init__(self):", "        super().__init__()", *init, "",
            f"    def forward({', '.join(params)}):", *fwd]) + "\n"
        name = self.define(camel(block), source)
        self.block_classes[key] = name
        return name

    def extra_arg(self, e: str, child: str, masks: dict, stack: str) -> str:
        """How a scope passes argument `e` to its child block (or repeat instance) `child`."""
        if e in self.stacks[stack]["memory"]:
            return e
        if e == "mask" or e in self.info[stack].masks.values():
            kinds = self.attention_kinds(child)
            if e == "mask" and len(kinds) <= 1:
                return f"mask={masks[kinds[0]] if kinds else None}"
            kind = next(k for k, v in self.info[stack].masks.items() if v == e)
            return f"{e}={masks[kind]}"
        return f"{e}={e}"

    # ------------------------------------------------------------ bodies
    def instance_ctor(self, path: str, extras: list[str]) -> str:
        if path in self.scopes:
            return self.block_class(path, extras) + "()"
        ctor = self.module_ctor(path)
        if ctor is None:
            raise CodegenError(f"'{path}': a repeated {self.comps[path]['kind']} has no module")
        return ctor

    def scope_body(self, scope: str, params: list[str]) -> tuple[list[str], list[str]]:
        """__init__ and forward lines of the stack or block at `scope`."""
        stack = scope.split(".")[0]
        info = self.info[stack]
        units = self.units(scope)
        init: list[str] = []
        fwd: list[str] = []
        env: dict[str, str] = {}
        inside_scope = {n for u in units for n in u.nodes}
        for u in units:
            for src in u.ins:
                if src in inside_scope or src in env:
                    continue
                mem = self.memory_name(src, stack)
                env[src] = mem or "x"
        for u in units:
            if u.kind == "node" and self.g.nodes[u.path]["op"] == "input":
                env[u.path] = self.g.nodes[u.path]["attrs"]["name"]
        if scope == stack:
            for path, c in self.comps.items():
                if c["scope"] == scope and c["kind"] == "position" and path not in self.g:
                    ctor = self.module_ctor(path)
                    if ctor:
                        init.append(f"        self.{path.rsplit('.', 1)[1]} = {ctor}")
                        self.position_attr = path.rsplit(".", 1)[1]
        last: dict[str, int] = {}
        for i, u in enumerate(units):
            for src in u.ins:
                last[src] = i
        end = len(units)
        for u in units:
            if u.out in self.branch_of or u.out == self.outputs.get("output"):
                last[u.out] = end
        scope_out = self.stacks[stack]["output"] if scope == stack else units[-1].out
        last[scope_out] = end
        reserved = RESERVED | set(info.masks.values()) | set(params) - {"x"}
        masks = self.scope_masks(scope, params)
        for i, u in enumerate(units):
            if u.kind == "node" and self.g.nodes[u.path]["op"] == "input":
                continue
            args = [env[s] for s in u.ins]
            live = {env[n] for n, j in last.items() if j > i and n in env}
            if u.out in self.branch_of:
                name = self.branch_of[u.out]
            elif u.ins and last.get(u.ins[0]) == i and args[0] not in reserved:
                name = args[0]
            else:
                name = next(c for c in ["x", "h"] + [f"h{k}" for k in range(2, 99)]
                            if c not in live and c not in reserved)
            attr = u.path[len(scope) + 1:]
            comment = shape_comment(self.shape_of(u.out))
            if u.kind == "node":
                d = self.g.nodes[u.path]
                if d["op"] != "add":
                    raise CodegenError(f"'{u.path}': op '{d['op']}' outside a component")
                fwd.append(f"        {name} = {args[0]} + {args[1]}{comment}")
            elif u.kind == "block":
                ex = self.extras(u.path)
                init.append(f"        self.{attr} = {self.block_class(u.path, ex)}()")
                call = ", ".join([args[0]] + [self.extra_arg(e, u.path, masks, stack) for e in ex])
                fwd.append(f"        {name} = self.{attr}({call}){comment}")
            elif u.kind == "repeat":
                ex = self.extras(u.path)
                rep = next(r for r in self.g.graph["repeats"] if r["path"] == u.path)
                ctors = [self.instance_ctor(p, ex) for p in rep["instances"]]
                if len(set(ctors)) == 1:
                    init.append(f"        self.{attr} = nn.ModuleList([{ctors[0]} for _ in range({len(ctors)})])")
                else:
                    init.append(f"        self.{attr} = nn.ModuleList([{', '.join(ctors)}])")
                first_inst = rep["instances"][0]
                ex_call = ex if first_inst in self.scopes else [e for e in ex if e in self.comp_params(first_inst)]
                # per-instance masks: alternating local / global layers each get their own
                per_layer = None
                if "mask" in ex_call:
                    vals = [self.extra_arg("mask", p, masks, stack).split("=", 1)[1] for p in rep["instances"]]
                    if len(set(vals)) > 1:
                        per_layer = repeat_list(vals)
                call = ", ".join([name] + ["mask=layer_mask" if e == "mask" and per_layer else
                                           self.extra_arg(e, first_inst, masks, stack) for e in ex_call])
                if name != args[0]:
                    fwd.append(f"        {name} = {args[0]}")
                loop = f"layer, layer_mask in zip(self.{attr}, {per_layer})" if per_layer else f"layer in self.{attr}"
                fwd += [f"        for {loop}:", f"            {name} = layer({call}){comment}"]
            else:
                ctor = self.module_ctor(u.path)
                if ctor is not None:
                    tied = self.g.nodes[u.path]["tied"] if u.path in self.g else {}
                    note = f"  # weight tied to {tied['weight']}" if "weight" in tied else ""
                    init.append(f"        self.{attr} = {ctor}{note}")
                fwd += self.comp_call(u, attr, args, name, comment, info, masks)
            env[u.out] = name
        outs = [env[scope_out]]
        if scope == stack:
            outs += [env[n] for n in self.outputs.values() if n in self.branch_of and n.startswith(stack + ".")]
        fwd.append(f"        return {', '.join(outs)}")
        return init, fwd

    def stack_class(self, st: dict) -> str:
        name = st["name"]
        info = self.info[name]
        self.position_attr = None
        inputs = self.stack_inputs(st)
        optional = [i for i in inputs if self.g.nodes[f"{name}.{i}"]["attrs"].get("optional")]
        required = [i for i in inputs if i not in optional]
        params = ["self"] + required + list(st["memory"]) + [f"{i}=None" for i in optional]
        if info.padding:
            params.append("attention_mask=None")
        if info.cache:
            params += ["cache=None", "start_pos=0"]
        init, body = self.scope_body(name, ["x"] + required + optional + list(st["memory"]))
        tok = required[0]
        sp = "start_pos" if info.cache else "0"
        pre: list[str] = []
        uses_pos = any(c["scope"] == name and c["kind"] == "position" and c["options"]["kind"] != "none"
                       for c in self.comps.values())
        if uses_pos or info.mask:
            pre.append(f"        T = {tok}.shape[1]")
        if uses_pos:
            start = f"{sp}, {sp} + T, " if info.cache else "T, "
            pre.append(f"        pos = torch.arange({start}device={tok}.device)  # (T,)")
        for o in optional:
            pre += [f"        if {o} is None:", f"            {o} = torch.zeros_like({tok})"]
        if info.rope and self.position_attr:
            pre.append(f"        rope = self.{self.position_attr}(pos)  # cos, sin: (T, {info.rope['dims']})")
        if info.mask:
            for kind, var in info.masks.items():
                pre += self.mask_lines(info, kind, var, tok, sp)
        source = "\n".join([
            "class {name}(nn.Module):",
            f'    """The `{name}` stack."""', "",
            "    def __init__(self):", "        super().__init__()", *init, "",
            f"    def forward({', '.join(params)}):", *pre, *body]) + "\n"
        base = camel(name)
        if base in self.taken:
            base += "Stack"
        return self.define(base, source)

    def mask_lines(self, info, kind: tuple, var: str, tok: str, sp: str) -> list[str]:
        """Build the stack's mask `var` for self-attentions of `kind` = (causal, window), once
        per forward and only when needed: causal attention within its window keeps SDPA's
        is_causal fast path with no mask."""
        causal, window = kind
        name = info.name
        args = [f"T, {sp}, {tok}.device", f"causal={causal}"]
        if window:
            args.append(f"window={window}")
        if info.padding:
            args.append("padding=attention_mask")
        self.helper("make_mask")
        make = f"make_mask({', '.join(args)})"
        if info.alibi:
            emb = next(p for p, c in self.comps.items() if c["scope"] == name and c["kind"] == "embedding")
            dtype = f"self.{emb.rsplit('.', 1)[1]}.weight.dtype"
            return [f"        {var} = self.{self.position_attr}({make}, {sp}, {dtype})  # (B or 1, nh, T, S) bias"]
        conds = (["start_pos > 0"] if info.cache else []) + \
                ([f"T > {window}"] if window else []) + \
                (["attention_mask is not None"] if info.padding else [])
        why = "within the window, " if window else ""
        if len(info.masks) > 1:
            what = "causal" if causal else "full"
            note = f"  # {why}{what} attention needs no mask (fast path)"
        else:
            note = f"  # {why}causal or full attention needs no mask (fast path)"
        if not conds:
            return [f"        {var} = None{note}"]
        return [f"        {var} = None{note}",
                f"        if {' or '.join(conds)}:",
                f"            {var} = {make}  # (B or 1, 1, T, S)"]

    def emit(self) -> str:
        stack_classes = {s["name"]: self.stack_class(s) for s in self.g.graph["stacks"]}
        model = self.model_class(stack_classes)
        origin = f" from {self.origin}" if self.origin else ""
        doc = (f'"""{self.g.graph["name"]}, generated by strata{origin}.\n\n'
               "Runs with PyTorch alone: `model = build()`.  Regenerate rather than edit.\n"
               '"""\n')
        parts = [doc + "\n" + H.HEADER]
        helpers = [h for h in H.ORDER if h in self.helpers]
        parts += [H.HELPERS[h] for h in helpers]
        parts += self.defs
        parts.append(f'def build():\n    """The {self.g.graph["name"]} model with the spec\'s sizes baked in."""\n'
                     f"    return {model}()\n")
        return "\n\n".join(p.rstrip("\n") + "\n" for p in parts)


def generate_source(g: nx.MultiDiGraph, origin: str | None = None) -> str:
    """The PyTorch source of the model in IR `g` (see the module docstring)."""
    return Codegen(g, origin).emit()
