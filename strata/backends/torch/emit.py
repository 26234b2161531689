"""Plans to source: the classes of blocks and stacks.

A scope's units become `__init__` members and `forward` lines; a value read
once, by the very next line, is written inline, so a pre-norm residual reads
`x = x + self.attn(self.ln_1(x))` as in nanoGPT.  Components are written by
their own `torch` hook (strata/components/); blocks get one class per distinct
source; a shape comment marks a line whose output shape differs from its input.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import strata.backends.torch.pysafe as pysafe
from strata.backends.torch.plan import (
    CodegenError,
    IRIndex,
    ScopePlan,
    StackInfo,
    Unit,
    extras,
    plan_scope,
    stack_inputs,
)
from strata.backends.torch.source import SourceFile, Values, shape_text
from strata.compiler import ir
from strata.components import COMPONENTS
from strata.passes.low_rank import LowRank

MAX_INLINE = 96  # characters of code on one line before a value gets its own line


def _operand(expr: str) -> str:
    """`expr` as the operand of a subscript: a name, call, attribute or subscript as
    it is, anything else (a sum, a product) in parentheses."""
    node = ast.parse(expr, mode="eval").body
    return expr if isinstance(node, (ast.Name, ast.Call, ast.Attribute, ast.Subscript)) else f"({expr})"


@dataclass
class ComponentView:
    """What a component's torch hook sees of one use of it."""

    ix: IRIndex
    path: str
    module: str                      # `self.attn`
    ins: list[str]                   # expressions of its inputs
    extras: dict[str, str]           # pos / rope / mask / cache -> variable
    stack: StackInfo

    @property
    def comp(self) -> dict:
        return self.ix.comps[self.path]

    kind = property(lambda self: self.comp["kind"])
    options = property(lambda self: self.comp["options"])
    syms = property(lambda self: self.comp.get("syms", {}))
    facts = property(lambda self: self.comp.get("facts", {}))
    out_sym = property(lambda self: self.comp.get("out_sym"))

    def node(self, rel: str | None = None) -> dict | None:
        """The IR node of the component itself, or `<path>.<rel>`; a linear the
        low_rank pass split into `.a` and `.b` is seen whole (build() factors it)."""
        n = self.path if rel is None else f"{self.path}.{rel}"
        g = self.ix.g
        if n in g:
            return g.nodes[n]
        a, b = g.nodes.get(f"{n}.a"), g.nodes.get(f"{n}.b")
        if a is None or b is None or LowRank.factor(b["attrs"]) != "b":
            return None
        attrs = LowRank.whole(a["attrs"], b["attrs"])
        return {**b, "attrs": attrs, "params": {**b["params"], "weight": (attrs["out"], attrs["in"])}}

    @property
    def d(self) -> int:
        """The width of the stream flowing in."""
        first = self.path if self.path in self.ix.g else self.ix.members[self.path][0]
        return ir.operands(self.ix.g, first)[0][1]["shape"][-1]

    @property
    def d_sym(self):
        s = self.comp.get("in_sym")
        return s[-1] if s else None


@dataclass
class HookContext:
    """What a component's torch hook may do: write values, define classes, use helpers."""

    out: SourceFile
    values: Values
    reads_config: bool = False   # a forward line reads self.config: __init__ must keep it

    def arg(self, value, sym=None) -> str:
        return self.values.expr(value, sym)

    def forward_arg(self, value, sym=None) -> str:
        text = self.values.expr(value, sym, prefix="self.config.")
        self.reads_config = self.reads_config or "self.config." in text
        return text

    def call_args(self, positional, keywords) -> str:
        return self.values.call_args(positional, keywords)

    def define(self, base: str, source: str) -> str:
        return self.out.define(base, source)

    def runtime(self, name: str) -> str:
        return self.out.runtime(name)


@dataclass
class Emitter:
    """Writes the block and stack classes of one model into `out`."""

    ix: IRIndex
    out: SourceFile
    values: Values
    block_classes: dict = field(default_factory=dict)   # (signature, extras) -> class name

    def component(self, path: str, module: str, ins: list[str], extra: dict, hx: HookContext):
        c = self.ix.comps[path]
        spec = COMPONENTS.get(c["kind"])
        if spec is None:
            raise CodegenError(f"'{path}': no torch lowering for component kind '{c['kind']}'")
        view = ComponentView(self.ix, path, module, ins, extra, self.ix.info[path.split(".")[0]])
        return spec.torch(hx, view)

    # ------------------------------------------------------------ blocks
    def block_class(self, path: str, ex: list[str]) -> str:
        key = (ir.scope_signature(self.ix.g, path, self.ix.members.get(path, [])), tuple(ex))
        if key in self.block_classes:
            return self.block_classes[key]
        block = self.ix.scopes[path].get("block") or path.rsplit(".", 2)[-2]
        plan = plan_scope(self.ix, path, ["x"] + ex)
        init, fwd, uses_config = self.scope_lines(plan)
        memory = self.ix.stacks[plan.stack]["memory"]
        params = ["self", "x"] + [e if e in memory else f"{e}=None" for e in ex]
        body = ["class {name}(nn.Module):", f'    """One `{pysafe.text(block)}` block."""', "",
                "    def __init__(self, config):", "        super().__init__()"]
        body += ["        self.config = config"] * uses_config
        body += init + ["", f"    def forward({', '.join(params)}):"] + fwd
        name = self.out.define(block, "\n".join(body) + "\n")
        self.block_classes[key] = name
        return name

    def instance_ctor(self, path: str, ex: list[str], hx: HookContext) -> str:
        if path in self.ix.scopes:
            return f"{self.block_class(path, ex)}(config)"
        lowered = self.component(path, "self", ["x"], {}, hx)
        if lowered.ctor is None:
            raise CodegenError(f"'{path}': a repeated {self.ix.comps[path]['kind']} has no module")
        return lowered.ctor

    # ------------------------------------------------------------ scopes
    def scope_lines(self, plan: ScopePlan) -> tuple[list[str], list[str], bool]:
        """(__init__ lines, forward lines, whether forward reads self.config)."""
        hx = HookContext(self.out, self.values)
        init: list[str] = []
        lines: list[tuple[str, str, str | None]] = []   # (target, expression, comment)
        pending: dict[str, tuple[str, tuple | None]] = {}  # variable -> (expression, input shape)
        units = plan.units
        for i, u in enumerate(units):
            args, in_shape = [], None
            for k, a in enumerate(u.args):
                if a in pending:
                    expr, shape = pending.pop(a)
                    args.append(expr)
                    in_shape = shape if k == 0 else in_shape
                else:
                    args.append(a)
            if in_shape is None and u.ins:
                in_shape = self.sym_of(u.ins[0])
            if u.kind == "repeat":
                init.append(self.repeat_member(u, hx))
                lines += self.flush(pending)
                if args[0] != u.target:
                    lines.append((u.target, args[0], None))
                lines.append(("for", self.repeat_loop(u), None))
                continue
            if u.out is not None and u.out == plan.keep_logits:  # generating: the last positions' logits only
                lines += self.flush(pending)
                lines.append((u.target, f"{_operand(args[0])}[:, -logits_to_keep:]",
                              "the last logits_to_keep positions (0: all)"))
                args[0] = u.target
            expr = self.unit_expr(u, args, init, hx)
            if expr is None:
                continue
            comment = self.comment(in_shape, self.sym_of(u.out), u.out)
            nxt = units[i + 1] if i + 1 < len(units) else None
            inline = (u.uses == 1 and nxt is not None and nxt.kind != "repeat"
                      and nxt.args.count(u.target) == 1 and len(expr) <= MAX_INLINE
                      and comment is None)
            if inline:
                pending[u.target] = (expr, in_shape)
            elif not (expr == u.target and comment is None):
                lines += self.flush(pending)
                lines.append((u.target, expr, comment))
        lines += self.flush(pending)
        fwd = [self.line(t, e, c) for t, e, c in lines]
        fwd.append(f"        return {', '.join(plan.returns)}")
        return init, fwd, hx.reads_config

    @staticmethod
    def flush(pending: dict) -> list:
        out = [(var, expr, None) for var, (expr, _) in pending.items()]
        pending.clear()
        return out

    @staticmethod
    def line(target: str, expr: str, comment: str | None) -> str:
        if target == "for":
            return expr
        return f"        {target} = {expr}" + (f"  # {comment}" if comment else "")

    def sym_of(self, node: str) -> tuple | None:
        d = self.ix.g.nodes[node]
        shape = ir.output_shape(self.ix.g, node)
        if shape is None:
            ins = ir.operands(self.ix.g, node)
            shape = ins[0][1]["shape"] if ins and d.op in ("activation", "dropout", "norm") else None
        sym = d.get("sym")
        if shape is None or sym is None or len(sym) != len(shape):
            return None
        return shape_text(sym, shape)

    @staticmethod
    def comment(before: str | None, after: str | None, node: str) -> str | None:
        return after if after is not None and after != before else None

    def unit_expr(self, u: Unit, args: list[str], init: list[str], hx: HookContext) -> str | None:
        if u.kind == "add":
            return f"{args[0]} + {args[1]}"
        call_extras = ", ".join(f"{k}={v}" for k, v in u.extras)
        if u.kind == "block":
            init.append(f"        self.{u.attr} = {self.block_class(u.path, [k for k, _ in u.extras])}(config)")
            return f"self.{u.attr}({', '.join([args[0]] + ([call_extras] if call_extras else []))})"
        lowered = self.component(u.path, f"self.{u.attr}", args, dict(u.extras), hx)
        if lowered.ctor is not None:
            tied = self.ix.g.nodes[u.path].tied if u.path in self.ix.g else {}
            note = lowered.note or (f"weight tied to {pysafe.text(tied['weight'])}" if "weight" in tied else None)
            init.append(f"        self.{u.attr} = {lowered.ctor}" + (f"  # {note}" if note else ""))
        return lowered.call

    def repeat_member(self, u: Unit, hx: HookContext) -> str:
        rep = self.ix.repeats[u.path]
        ex = [k for k, _ in u.extras]
        first = rep["instances"][0]
        ex_inst = ex if first in self.ix.scopes else extras(self.ix, first)
        ctors = [self.instance_ctor(p, ex_inst if p in self.ix.scopes else [], hx) for p in rep["instances"]]
        if len(set(ctors)) == 1:
            count = self.values.expr(rep["count"], rep.get("count_sym"))
            return f"        self.{u.attr} = nn.ModuleList([{ctors[0]} for _ in range({count})])"
        return f"        self.{u.attr} = nn.ModuleList({repeat_list(ctors)})"

    def repeat_loop(self, u: Unit) -> str:
        kw = [f"{k}=layer_mask" if k == "mask" and u.layer_masks else f"{k}={v}" for k, v in u.extras]
        call = ", ".join([u.target] + kw)
        if u.layer_masks:
            head = f"        for layer, layer_mask in zip(self.{u.attr}, {repeat_list(u.layer_masks)}):"
        else:
            head = f"        for layer in self.{u.attr}:"
        return f"{head}\n            {u.target} = layer({call})"


def repeat_list(vals: list[str]) -> str:
    """`[a, b] * 2` for a list that repeats a period, else the list itself."""
    for p in range(1, len(vals)):
        if len(vals) % p == 0 and vals == vals[:p] * (len(vals) // p):
            return f"[{', '.join(vals[:p])}] * {len(vals) // p}"
    return f"[{', '.join(vals)}]"


__all__ = ["ComponentView", "Emitter", "HookContext", "repeat_list", "stack_inputs"]
