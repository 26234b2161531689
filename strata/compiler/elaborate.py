"""Elaborate a resolved model into the graph IR.

Walks each stack's statements with the tensor flowing through it, evaluating
options, naming modules, expanding blocks and repeats, and inferring shapes.
Mistakes are collected (one per statement) and the walk goes on, so one run
reports every independent error.
"""

from __future__ import annotations

import strata.compiler.ir as ir
from strata.compiler.evaluate import Env, EvalError, evaluate
from strata.compiler.repeat_copy import Folder, FoldCache, reads
from strata.compiler.names import (
    check_input_name,
    check_module_name,
    check_output_name,
    plan_names,
    repeats_block,
    take_name,
)
from strata.compiler.options import bind_options
from strata.compiler.resolve import ResolvedModel
from strata.compiler.scope import Scope, StackState, Tensor
from strata.compiler.symbolic import symbolic
from strata.components import COMPONENTS, Use
from strata.dsl import ast as A
from strata.dsl.registry import PASSES
from strata.errors import Collector, did_you_mean

MAX_REPEAT = 10_000           # layers in one repeat
MAX_NODES = 100_000           # IR nodes in one model: ~5,000 transformer layers
MAX_TENSORS = 1_000_000       # parameter tensors in one model (a MoE layer has 3 per expert)
MAX_PARAMETERS = 10 ** 15     # a quadrillion parameters fits on no machine


class _Fatal(Exception):
    """Stop building: the model is too large to elaborate at all."""


class Elaborator:
    def __init__(self, model: ResolvedModel, errors: Collector, cache: FoldCache | None = None):
        self.m = model
        self.cache = cache
        self.errors = errors
        self.g = ir.new_graph(model.name, staging=True)
        self.g.folded = 0  # repeat instances copied, not elaborated (strata.compiler.repeat_copy)
        self.g.reused = 0  # of those, taken from the cache's last build
        self.components: dict[str, dict] = self.g.graph.components
        self.tensors = 0  # parameter tensors made so far (MAX_TENSORS)

    # ------------------------------------------------------------ graph edits
    def op(self, node_id, op, inputs, out_shape, sc: Scope, *, comp=None, kind=None, attrs=None,
           params=None, tied=None, span=None, sym: tuple = ()) -> Tensor:
        if node_id in self.g:
            raise EvalError(f"the module name '{node_id}' is used twice", span,
                            "give one of them another name with `as NAME`")
        if self.g.number_of_nodes() >= MAX_NODES:
            self.errors.error(f"the model has more than {MAX_NODES:,} operations", span,
                              "no model this large could be built; check repeat counts")
            raise _Fatal
        self.make_room(len(params or ()), span)
        self.tensors += len(params or ())
        sym = tuple(sym) if len(sym) == len(out_shape) else (None,) * len(out_shape)
        ir.add_node(self.g, node_id, op, scope=sc.path, attrs=attrs, component=comp, kind=kind,
                    params=params, tied=tied, span=span)
        self.g.nodes[node_id].sym = sym
        for port, t in enumerate(inputs):
            ir.connect(self.g, t.node, node_id, t.shape, t.dtype, port)
        return Tensor(node_id, tuple(out_shape), "float", sym)

    def make_room(self, tensors: int, span) -> None:
        """Stop before making `tensors` more parameter tensors when the model would
        pass MAX_TENSORS; a component that makes many (a MoE's experts) asks first."""
        if self.tensors + tensors > MAX_TENSORS:
            self.errors.error(f"the model would have more than {MAX_TENSORS:,} parameter tensors "
                              f"({tensors:,} here)", span,
                              "no model this large could be built; check expert and repeat counts")
            raise _Fatal

    def resolve_param(self, ref: str, sc: Scope, span, what: str) -> str:
        """`wte` or `encoder.embed` -> the state_dict key of that module's weight."""
        candidates = []
        path = sc.path
        while path:
            candidates.append(f"{path}.{ref}")
            path = path.rpartition(".")[0]
        candidates.append(ref)
        for c in candidates:
            if c in self.g and "weight" in self.g.nodes[c].params:
                return f"{c}.weight"
            if c in self.g and "weight" in self.g.nodes[c].tied:
                return self.g.nodes[c].tied["weight"]
        known = [n.rpartition(".")[2] for n in self.g if "weight" in self.g.nodes[n].params]
        raise EvalError(f"{what}={ref}: no module '{ref}' with a weight defined before this point",
                        span, did_you_mean(ref.rpartition(".")[2], known)
                        or "name the embedding with `as NAME` and refer to that name")

    def param_shape(self, key: str) -> tuple:
        node, _, name = key.rpartition(".")
        return self.g.nodes[node].params[name]

    def param_syms(self, key: str) -> tuple:
        """The symbolic dims of a weight [rows, cols] (only embeddings record them:
        their output's last dim and their `vocab` option)."""
        node = key.rpartition(".")[0]
        comp = self.components.get(self.g.nodes[node].component or "", {})
        return (comp.get("syms", {}).get("vocab"), self.g.nodes[node].get("sym", (None,))[-1])

    def stack_input(self, st: StackState, name: str, optional: bool = False) -> Tensor:
        if name not in st.inputs:
            nid = f"{st.name}.{name}"
            ir.add_node(self.g, nid, "input", scope=st.name,
                        attrs={"name": name, "dtype": "int64", "optional": optional})
            self.g.nodes[nid].sym = (("axis", "B"), ("axis", st.seq))
            st.inputs[name] = Tensor(nid, ("B", st.seq), "int64", self.g.nodes[nid].sym)
        return st.inputs[name]

    def resolve_memory(self, name: str, sc: Scope, span) -> Tensor:
        if name in sc.stack.memory:
            return sc.stack.memory[name]
        built = {s["name"]: s for s in self.g.graph.stacks}
        if name in built:
            s = built[name]
            return Tensor(s["output"], s["shape"], "float", s["sym"])
        raise EvalError(f"cross_attention: '{name}' is not a memory input of stack "
                        f"'{sc.stack.name}'", span,
                        did_you_mean(name, list(sc.stack.memory) + list(built))
                        or f"declare it: stack {sc.stack.name}(tokens, {name} = encoder)")

    # ------------------------------------------------------------ statements
    def walk(self, body: list, x: Tensor, sc: Scope) -> Tensor:
        for stmt in body:
            try:
                x = self.statement(stmt, x, sc)
            except EvalError as e:
                self.errors.error(e.message, e.span or stmt.span, e.hint)
        return x

    def statement(self, s, x: Tensor, sc: Scope) -> Tensor:
        if isinstance(s, A.Assign):
            sc.env.values[s.name] = evaluate(s.value, sc.env, words=True)
            sc.env.syms[s.name] = symbolic(s.value, sc.env)
            return x
        if isinstance(s, A.Use):
            return self.use(s, x, sc, sc.join(take_name(s, sc, self.m.blocks)))
        if isinstance(s, A.Residual):
            if not s.body:
                raise EvalError("'residual' needs at least one statement", s.span)
            before = len(self.errors.items)
            y = self.walk(s.body, x, sc)
            if y.node == x.node and len(self.errors.items) > before:
                return x  # the body's own error is reported; don't add a second
            return self._add(x, y, sc, s.span, "residual")
        if isinstance(s, A.Parallel):
            if len(s.body) < 2:
                raise EvalError("'parallel' needs at least two branches", s.span,
                                "each statement inside parallel { } is one branch")
            before = len(self.errors.items)
            ys = [self.walk([b], x, sc) for b in s.body]
            if len(self.errors.items) > before:
                return x
            acc = ys[0]
            for y in ys[1:]:
                acc = self._add(acc, y, sc, s.span, "parallel")
            return acc
        if isinstance(s, A.Seq):
            return self.walk(s.body, x, sc)
        if isinstance(s, A.Branch):
            y = self.walk(s.body, x, sc)
            if y.node == x.node:
                raise EvalError("'branch' needs at least one statement", s.span)
            name = s.alias or self.g.nodes[y.node].component.rpartition(".")[2]
            check_output_name(name, s.span)
            self.g.graph.outputs[name] = y.node
            self.g.nodes[y.node]["out_shape"] = y.shape  # no edge leaves a branch's output
            return x
        if isinstance(s, A.Repeat):
            return self.repeat(s, x, sc)
        raise EvalError(f"unexpected statement {type(s).__name__}", s.span)

    def _add(self, x: Tensor, y: Tensor, sc: Scope, span, why: str) -> Tensor:
        if y.node == x.node:
            raise EvalError(f"this {why} branch computes nothing", span)
        if x.shape != y.shape:
            raise EvalError(f"{why} adds {ir.format_shape(y.shape)} to {ir.format_shape(x.shape)}",
                            span, "both sides of a residual must keep the width d")
        sc.counters["add"] += 1
        nid = sc.join(f"add_{sc.counters['add']}")
        while nid in self.g:
            sc.counters["add"] += 1
            nid = sc.join(f"add_{sc.counters['add']}")
        return self.op(nid, "add", [x, y], x.shape, sc, attrs={"why": why}, span=span, sym=x.sym)

    def use(self, s: A.Use, x: Tensor, sc: Scope, path: str) -> Tensor:
        if s.name in self.m.blocks:
            return self.block(s, x, sc, path)
        spec = COMPONENTS.get(s.name)
        if spec is None:
            hint = did_you_mean(s.name, list(COMPONENTS) + list(self.m.blocks))
            if s.name in PASSES:
                hint = f"'{s.name}' is a pass: list it in the passes {{ }} section"
            raise EvalError(f"unknown component '{s.name}'", s.span, hint)
        opts = bind_options(spec, s.args, s.kwargs, sc.env, s.span, s.name)
        written = list(zip(spec.positional, s.args)) + [(k.name, k.value) for k in s.kwargs]
        syms = {k: sym for k, e in written if (sym := symbolic(e, sc.env)) is not None}
        u = Use(path, opts, syms, x, sc, s.span, {})
        y = spec.elaborate(self, u)
        if y.node != x.node or s.name == "position":
            self.components[path] = {"kind": s.name, "category": spec.category, "scope": sc.path,
                                     "options": opts.model_dump(), "span": s.span, "syms": syms,
                                     "facts": u.facts, "in_sym": x.sym, "out_sym": y.sym}
        return y

    def block(self, s: A.Use, x: Tensor, sc: Scope, path: str) -> Tensor:
        bdef = self.m.blocks[s.name]
        if s.name in sc.blocks_active:
            raise EvalError(f"block '{s.name}' uses itself", s.span, "blocks cannot be recursive")
        if len(sc.blocks_active) >= A.MAX_DEPTH:  # every later stage recurses this deep
            raise EvalError(f"blocks are nested more than {A.MAX_DEPTH} deep here", s.span,
                            "flatten the chain of blocks using blocks")
        values, syms = {}, {}
        params = [p.name for p in bdef.params]
        if len(s.args) > len(params):
            raise EvalError(f"block '{s.name}' takes {len(params)} argument"
                            f"{'s' if len(params) != 1 else ''}, got {len(s.args)}", s.args[len(params)].span)
        for p, a in zip(params, s.args):
            values[p] = evaluate(a, sc.env, words=True)
            syms[p] = symbolic(a, sc.env)
        for k in s.kwargs:
            if k.name not in params:
                raise EvalError(f"block '{s.name}' has no parameter '{k.name}'", k.span,
                                did_you_mean(k.name, params) or
                                (f"parameters: {', '.join(params)}" if params else "it takes none"))
            values[k.name] = evaluate(k.value, sc.env, words=True)
            syms[k.name] = symbolic(k.value, sc.env)
        env = sc.env.child(values, syms)
        for p in bdef.params:
            if p.name not in values:
                if p.default is None:
                    raise EvalError(f"block '{s.name}' needs parameter '{p.name}'", s.span,
                                    f"write {s.name}({p.name}=...)")
                env.values[p.name] = evaluate(p.default, env, words=True)
                env.syms[p.name] = symbolic(p.default, env)
        inner = Scope(path, env, sc.stack, plan=plan_names(bdef.body, self.m.blocks),
                      blocks_active=sc.blocks_active + (s.name,))
        self.g.graph.scopes[path] = {"kind": "block", "block": s.name, "parent": sc.path}
        y = self.walk(bdef.body, x, inner)
        return y

    def repeat(self, s: A.Repeat, x: Tensor, sc: Scope) -> Tensor:
        n = evaluate(s.count, sc.env)
        if isinstance(n, bool) or not isinstance(n, int):
            raise EvalError(f"repeat count must be a whole number, got {n!r}", s.count.span)
        if n < 1:
            raise EvalError(f"repeat count must be at least 1, got {n}", s.count.span)
        if n > MAX_REPEAT:
            raise EvalError(f"repeat count {n:,} is too large (at most {MAX_REPEAT:,})", s.count.span,
                            "no model this deep could exist on any machine")
        name = take_name(s, sc, self.m.blocks)
        group = sc.join(name)
        single = repeats_block(s, self.m.blocks)
        block = s.body[0].name if single else None
        index = s.index or "index"
        self.g.graph.scopes[group] = {"kind": "repeat", "block": block, "count": n,
                                         "parent": sc.path}
        # instances 2.. are copies of 0 where 0 and 1 agree (strata.compiler.repeat_copy)
        folder = Folder(self, sc.stack, self.cache) if n > 2 and not reads(s.body, self.m.blocks, index) else None
        seen: list = []  # (mark, piece, input, output) of instances 0 and 1
        instances: list[str] = []
        i = 0
        while i < n:
            path = f"{group}.{i}"
            mark, x_in = (folder.mark(), x) if folder is not None and i < 2 else (None, x)
            env = sc.env.child({index: i})
            inner = Scope(path, env, sc.stack, blocks_active=sc.blocks_active)
            before = self.g.number_of_nodes()
            if single:
                use = s.body[0]
                x = self._walk_one(lambda: self.block(use, x, inner, path), x, use)
            else:
                inner.plan = plan_names(s.body, self.m.blocks)
                self.g.graph.scopes[path] = {"kind": "block", "block": None, "parent": group}
                x = self.walk(s.body, x, inner)
            instances.append(path)
            if self.g.number_of_nodes() == before and i == 0 and self.errors:
                break  # the body failed; do not repeat the same error n times
            i += 1
            if mark is not None:
                seen.append((mark, folder.piece(mark), x_in, x))
            if len(seen) == 2:
                (m0, p0, x0, y0), (m1, p1, _, y1) = seen
                seen = []
                template = folder.agree(m0, p0, x0, y0, m1, p1, y1, f"{group}.0")
                if template is not None:
                    x, i = folder.copies(template, x, group, i, n, instances, MAX_NODES, MAX_TENSORS)
        self.g.graph.repeats.append({"path": group, "block": block or name, "count": n,
                                        "count_sym": symbolic(s.count, sc.env),
                                        "instances": instances, "span": s.span})
        return x

    def _walk_one(self, fn, x: Tensor, stmt) -> Tensor:
        try:
            return fn()
        except EvalError as e:
            self.errors.error(e.message, e.span or stmt.span, e.hint)
            return x

    # ------------------------------------------------------------ stacks
    def stacks(self, env: Env) -> None:
        by_name = {s.name: s for s in self.m.stacks}
        order: list[A.StackDef] = []
        visiting: set[str] = set()

        def visit(sd: A.StackDef):
            if sd in order:
                return
            if sd.name in visiting:
                raise EvalError(f"stacks '{sd.name}' feed each other in a cycle", sd.span)
            visiting.add(sd.name)
            for inp in sd.inputs:
                if inp.source is not None:
                    dep = by_name.get(inp.source)
                    if dep is None:
                        self.errors.error(f"stack '{sd.name}': unknown stack '{inp.source}'",
                                          inp.span or sd.span, did_you_mean(inp.source, by_name))
                    else:
                        visit(dep)
            visiting.discard(sd.name)
            order.append(sd)

        for sd in self.m.stacks:
            try:
                visit(sd)
            except EvalError as e:
                self.errors.error(e.message, e.span, e.hint)
                return
        if not order:
            self.errors.error(f"model '{self.m.name}' has no stack", self.m.model.span,
                              "add `stack decoder(tokens) { ... }`")
            return
        others = [sd for sd in order if sd is not order[-1]]
        seqs = {sd.name: ("S" if i == 0 else f"S{i + 1}") for i, sd in enumerate(others)}
        seqs[order[-1].name] = "T"
        for sd in order:
            self.stack(sd, env, seqs[sd.name])

    def stack(self, sd: A.StackDef, env: Env, seq: str) -> None:
        st = StackState(sd.name, seq)
        try:
            check_module_name(sd.name, sd.span, "a stack")
            for inp in sd.inputs:
                check_input_name(inp.name, inp.span or sd.span)
        except EvalError as e:
            self.errors.error(e.message, e.span, e.hint)
            return
        token_inputs = [i for i in sd.inputs if i.source is None]
        if not token_inputs:
            self.errors.error(f"stack '{sd.name}' has no token input", sd.span,
                              f"write stack {sd.name}(tokens, ...)")
            return
        for inp in sd.inputs:
            if inp.source is not None:
                out = next((s for s in self.g.graph.stacks if s["name"] == inp.source), None)
                if out is not None:
                    st.memory[inp.name] = Tensor(out["output"], out["shape"], "float", out["sym"])
        x = self.stack_input(st, token_inputs[0].name)
        for extra in token_inputs[1:]:
            self.stack_input(st, extra.name)
        sc = Scope(sd.name, env.child({i.name: i.name for i in sd.inputs if i.source}), st,
                   plan=plan_names(sd.body, self.m.blocks))
        sc.used = {i.name: i.span for i in sd.inputs}
        self.g.graph.scopes[sd.name] = {"kind": "stack", "block": None, "parent": ""}
        y = self.walk(sd.body, x, sc)
        self.g.graph.stacks.append({"name": sd.name, "inputs": [i.name for i in token_inputs],
                                       "memory": {i.name: i.source for i in sd.inputs if i.source},
                                       "output": y.node, "shape": y.shape, "sym": y.sym, "seq": seq,
                                       "positions": st.positions, "span": sd.span})


def elaborate(model: ResolvedModel, errors: Collector, cache: FoldCache | None = None) -> ir.Staging:
    """Elaborate `model` into a Staging graph (`ir.to_networkx` makes it the IR);
    mistakes go to `errors` (the caller raises).  `cache`: see strata.compiler.repeat_copy."""
    b = Elaborator(model, errors, cache)
    env = Env.of_assigns(model.vars)
    env.is_model = True
    for v in model.vars:  # report every bad variable, even unused ones
        try:
            b.g.graph.vars[v.name] = env.lookup(v.name, v.span)
        except EvalError as e:
            errors.error(e.message, e.span or v.span, e.hint)
    # each variable in terms of the others (a number for `d = 768`), for generated configs
    b.g.graph.var_syms = {v.name: symbolic(v.value, env) for v in model.vars}
    try:
        b.stacks(env)
    except _Fatal:
        return b.g
    if b.g.graph.stacks:
        last = b.g.graph.stacks[-1]
        b.g.graph.outputs = {"output": last["output"], **b.g.graph.outputs}
        b.g.nodes[last["output"]]["out_shape"] = last["shape"]
    total = ir.param_count(b.g)
    b.g.graph.parameters = total
    if total > MAX_PARAMETERS:
        errors.error(f"the model would have {total:,} parameters, more than any machine can hold",
                     model.model.span, "check the sizes and repeat counts")
    return b.g
