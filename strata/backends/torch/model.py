"""Plans to source: the stack classes, the model class, `Config`, `build()`,
and the whole file.

    >>> from strata.compiler import build_text
    >>> src = generate_source(build_text('''model m {
    ...   d = 4
    ...   stack decoder(tokens) { embedding(10, d) as wte; layernorm; lm_head(tie=wte) } }'''))
    >>> "self.decoder.lm_head.weight = self.decoder.wte.weight" in src
    True
"""

from __future__ import annotations

import textwrap

import networkx as nx

import strata.backends.torch.pysafe as pysafe
from strata.backends.torch.emit import Emitter, HookContext
from strata.backends.torch.lower_passes import lower_passes, pass_lines
from strata.backends.torch.plan import IRIndex, index_ir, plan_scope, stack_inputs
from strata.backends.torch.runtime_source import HEADER, ORDER, source
from strata.backends.torch.source import SourceFile, Values, config_fields
from strata.compiler import symbolic as S
from strata.compiler.positions import position_limits
from strata.passes.low_rank import LowRank

__all__ = ["generate_source"]


def attr_path(path: str) -> str:
    """`decoder.h.0.attn` -> `decoder.h[0].attn` (Python attribute access)."""
    return "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path.split("."))[1:]


def stack_class(em: Emitter, st: dict, class_names: set[str]) -> str:
    ix, name = em.ix, st["name"]
    info = ix.info[name]
    required, optional = stack_inputs(ix, st)
    memory = list(st["memory"])
    params = ["self"] + required + memory + [f"{i}=None" for i in optional]
    params += ["attention_mask=None"] * info.padding + ["memory_mask=None"] * info.memory_mask
    params += ["cache=None", "start_pos=0"] * info.cache
    keep = keeps_logits(ix, name)
    params += ["logits_to_keep=0"] * keep
    plan = plan_scope(ix, name, ["x"] + required + optional + memory)
    plan.keep_logits = st["output"] if keep else None
    init, body, uses_config = em.scope_lines(plan)
    if info.positions and info.positions not in ix.g:  # rotary / alibi live at the stack
        attr = info.positions.rsplit(".", 1)[1]
        lowered = em.component(info.positions, f"self.{attr}", [], {}, _hook(em))
        if lowered.ctor:
            init.insert(0, f"        self.{attr} = {lowered.ctor}")
    tok, start = required[0], ("start_pos" if info.cache else "0")
    pre = []
    if info.uses_pos or info.mask:
        pre.append(f"        T = {tok}.shape[1]")
    if info.uses_pos:
        span = "start_pos, start_pos + T" if info.cache else "T"
        pre.append(f"        positions = torch.arange({span}, device={tok}.device)")
    for o in optional:
        pre += [f"        if {o} is None:", f"            {o} = torch.zeros_like({tok})"]
    if info.rope and info.positions:
        pre.append(f"        rope = self.{info.positions.rsplit('.', 1)[1]}(positions)  # cos, sin: (T, {info.rope['dims']})")
    for kind, var in info.masks.items() if info.mask else ():
        pre += mask_lines(em, info, kind, var, tok, start)
    if info.memory_mask:  # which encoder positions are tokens: the cross-attentions' keys
        pre += ["        if memory_mask is not None:  # (B, S): 1 = token, 0 = padding",
                "            memory_mask = memory_mask[:, None, None, :].bool()  # (B, 1, 1, S)"]
    doc = f'    """The `{pysafe.text(name)}` stack."""'
    lines = ["class {name}(nn.Module):", doc, "", "    def __init__(self, config):",
             "        super().__init__()"] + ["        self.config = config"] * uses_config
    lines += init + ["", f"    def forward({', '.join(params)}):"] + pre + body
    base = pysafe.class_name(name)
    if base in class_names:
        base += "Stack"
    return em.out.define(base, "\n".join(lines) + "\n")


def keeps_logits(ix: IRIndex, stack: str) -> bool:
    """Whether `stack`'s forward (and the model's) takes `logits_to_keep`, as HF's
    models do: it is the last stack, it caches keys and values, and it ends in the
    LM head, so a generating model reads the prompt for its last position's
    logits only (the head of a 50 k vocabulary is nearly a third of GPT-2 small's work
    per position)."""
    g = ix.g
    st = g.graph.stacks[-1]
    return (st["name"] == stack and ix.info[stack].cache
            and g.nodes[st["output"]].attrs.get("role") == "lm_head")


def _hook(em: Emitter):
    return HookContext(em.out, em.values)


def mask_lines(em: Emitter, info, kind: tuple, var: str, tok: str, start: str) -> list[str]:
    """The stack's mask `var` for self-attentions of `kind` = (causal, window), built once
    per forward and only when needed: causal attention within its window keeps SDPA's
    is_causal fast path with no mask."""
    causal, window = kind
    make = em.out.runtime("make_mask")
    args = [f"T, {start}, {tok}.device"] + ([] if causal else ["causal=False"])
    if window:
        args.append(f"window={window}")
    if info.padding:
        args.append("padding=attention_mask")
    call = f"{make}({', '.join(args)})"
    if info.bias:  # the position's module turns the mask into a bias: its torch hook says how
        module = f"self.{info.positions.rsplit('.', 1)[1]}"
        lowered = em.component(info.positions, module, [], {"mask": call, "start": start}, _hook(em))
        line = f"        {var} = {lowered.call}  # (B or 1, heads, T, S) bias"
        if len(line) <= 110:
            return [line]
        lowered = em.component(info.positions, module, [], {"mask": var, "start": start}, _hook(em))
        return [f"        {var} = {call}", f"        {var} = {lowered.call}  # (B or 1, heads, T, S) bias"]
    # a one-token decoding step needs none either (all its keys are visible)
    conds = ([f"start_pos > 0{'' if window else ' and T > 1'}"] if info.cache else []) + ([f"T > {window}"] if window else []) + \
        (["attention_mask is not None"] if info.padding else [])
    if not conds:
        return [f"        {var} = None  # full attention needs no mask"]
    why = (f"        # None when {'causal ' if causal else ''}attention"
           f"{' within the window' if window else ''} needs no mask: SDPA's fast path")
    one_line = f"        {var} = {call} if {' or '.join(conds)} else None"
    if len(one_line) <= 110:
        return [why, one_line]
    return [f"        {var} = None", f"        if {' or '.join(conds)}:  {why.strip()}",
            f"            {var} = {call}"]


def residual_suffixes(ix: IRIndex) -> list[str]:
    """Names of the projections that write into the residual stream (init scales them)."""
    out = set()
    for n, d in ix.g.nodes(data=True):
        if d.op == "linear" and d.attrs.get("role") in ("o", "down") and d.component:
            comp = d.component.rsplit(".", 1)[-1]
            if LowRank.factor(d.attrs):  # initialised whole, factored by build() after
                n = n.rpartition(".")[0]
            out.add(f".{comp}{n[len(d.component):]}.weight")
    return sorted(out)


def zero_suffixes(ix: IRIndex) -> list[str]:
    """Names of the weights that start at 0 (components record `zero_init` facts: a
    norm whose scale is 1 + weight): `.name.weight` where no other weight ends so."""
    zero = {f"{path}.{k}" for path, c in ix.comps.items() for k in c.get("facts", {}).get("zero_init", ())}
    others = [f"{n}.{k}" for n in ix.order for k in ix.g.nodes[n].params if f"{n}.{k}" not in zero]
    out = set()
    for key in zero:
        short = "." + ".".join(key.split(".")[-2:])
        out.add(short if not any(o.endswith(short) for o in others) else key)
    return sorted(out)


def model_class(em: Emitter, stack_classes: dict[str, str]) -> tuple[str, bool]:
    """The model class; returns (its name, whether it generates with a KV cache).
    Its parts, in the file's order: __init__, forward, then new_cache / generate."""
    g = em.ix.g
    io = _ModelInputs(em.ix)
    init = _model_init(em, stack_classes)
    fwd = _model_forward(em, io)
    gen, generates = _model_generate(em, io)
    doc = f'    """{pysafe.text(g.graph.name)}: {g.graph.get("parameters", 0):,} parameters."""'
    body = ["class {name}(nn.Module):", doc, "", *init, "", *fwd, *gen]
    base = pysafe.class_name(g.graph.name)
    if base in em.out.taken:
        base += "Model"
    return em.out.define(base, "\n".join(body) + "\n"), generates


class _ModelInputs:
    """The model's inputs: each stack's (required, optional) inputs, named by
    stack where two stacks share one (`encoder_ids`, `decoder_ids`)."""

    def __init__(self, ix: IRIndex):
        self.stacks = ix.g.graph.stacks
        self.single, self.last = len(self.stacks) == 1, self.stacks[-1]
        self.ins = {s["name"]: stack_inputs(ix, s) for s in self.stacks}
        self.counts: dict[str, int] = {}
        for req, opt in self.ins.values():
            for i in req + opt:
                self.counts[i] = self.counts.get(i, 0) + 1
        self.info = ix.info[self.last["name"]]
        # attention_mask: the padding of an encoder's (or encoder-decoder's source) tokens
        self.padded = (self.single and self.info.padding) or self.info.memory_mask

    def top(self, stack: str, i: str) -> str:  # inputs two stacks share are told apart by stack
        return f"{stack}_{i}" if self.counts[i] > 1 else i


def _model_init(em: Emitter, stack_classes: dict[str, str]) -> list[str]:
    """__init__: the stacks, the tied weights (one Parameter), the initialisation."""
    ix, g = em.ix, em.ix.g
    ties = [(f"{n}.{k}", t) for n in ix.order for k, t in g.nodes[n].tied.items()]
    init = ["    def __init__(self, config):", "        super().__init__()", "        self.config = config"]
    init += [f"        self.{s['name']} = {stack_classes[s['name']]}(config)" for s in g.graph.stacks]
    for dst, src in ties:
        init.append(f"        self.{attr_path(dst)} = self.{attr_path(src)}  # tied: one Parameter")
    depth = max(g.graph.repeats, key=lambda r: r["count"], default=None)
    layers = em.values.expr(depth["count"], depth.get("count_sym")) if depth else "1"
    init_fn = em.out.runtime("init_weights")
    zeros = zero_suffixes(ix)
    init.append(f"        {init_fn}(self, residual={pysafe.literal(tuple(residual_suffixes(ix)))}, layers={layers}"
                + (f", zeros={pysafe.literal(tuple(zeros))})" if zeros else ")"))
    return init


def _model_forward(em: Emitter, io: _ModelInputs) -> list[str]:
    """forward: each stack in order, an encoder's output into its decoder's memory
    (run once while generating), the outputs as a tensor or a dict."""
    ix, g, info, ins, top, last = em.ix, em.ix.g, io.info, io.ins, io.top, io.last
    params = ["self"] + [top(s, i) for s in ins for i in ins[s][0]] + \
        [f"{top(s, i)}=None" for s in ins for i in ins[s][1]]
    params += ["attention_mask=None"] * io.padded
    params += ["cache=None", "start_pos=None"] * info.cache
    keep = keeps_logits(ix, last["name"])
    params += ["logits_to_keep=0"] * keep
    params.append("return_dict=False")
    fwd = [f"    def forward({', '.join(params)}):"]
    if info.cache:
        fwd += ["        past = cache.start() if cache is not None else 0",
                "        start_pos = past if start_pos is None else start_pos"]
    branches = [k for k in ix.outputs if k != "output"]
    # a stack's output variable is named apart from the branch outputs and the parameters
    # (an encoder's branch named like the decoder's memory once replaced that memory)
    taken = set(branches) | {p.split("=")[0] for p in params}
    out_var: dict[str, str] = {}
    for s in io.stacks:
        name = s["name"]
        consumers = [m for t in io.stacks for m, src in t["memory"].items() if src == name]
        if s is last:
            lm = g.nodes[s["output"]].attrs.get("role") == "lm_head" and "logits" not in branches
            var = "logits" if lm else "x"
        else:
            var = consumers[0] if consumers else f"{name}_out"
        while var in taken:
            var += "_out"
        taken.add(var)
        out_var[name] = var
        req, opt = ins[name]
        call = [top(name, i) for i in req] + [out_var[src] for src in s["memory"].values()]
        call += [f"{i}={top(name, i)}" for i in opt]
        call += ["attention_mask=attention_mask"] * (io.padded and ix.info[name].padding)
        call += ["memory_mask=attention_mask"] * ix.info[name].memory_mask
        call += ["cache=cache", "start_pos=start_pos"] * ix.info[name].cache
        call += ["logits_to_keep=logits_to_keep"] * (keep and s is last)
        mine = [b for b in branches if ix.outputs[b].startswith(name + ".")]
        if s is not last and info.cache and not mine:  # an encoder: run once while generating
            fwd += ["        if cache is None or cache.memory is None:",
                    f"            {var} = self.{name}({', '.join(call)})",
                    "        else:",
                    f"            {var} = cache.memory  # encoded at the first step",
                    "        if cache is not None:",
                    f"            cache.memory = {var}"]
            continue
        fwd.append(f"        {', '.join([var] + mine)} = self.{name}({', '.join(call)})")
    main = out_var[last["name"]]
    result = ", ".join([f'"output": {main}'] + [f"{pysafe.literal(b)}: {b}" for b in branches])
    return fwd + [f"        return {{{result}}} if return_dict else {main}"]


def _model_generate(em: Emitter, io: _ModelInputs) -> tuple[list[str], bool]:
    """(new_cache and generate, where the model caches keys and values; whether it generates)."""
    g, info, stacks, last = em.ix.g, io.info, io.stacks, io.last
    generates = info.cache and g.nodes[last["output"]].attrs.get("role") == "lm_head"
    seq2seq = not io.single
    if seq2seq and [len(io.ins[s["name"]][0]) for s in stacks] != [1] * len(stacks):
        generates = False  # generate() passes one source and one target input
    if generates and not seq2seq:
        em.out.runtime("decode_layout")
        cache, generate = em.out.runtime("KVCache"), em.out.runtime("generate")
        return ["", "    def new_cache(self, max_len=None):",
                f'        """An empty {cache} (static with max_len): model(ids, cache=cache), then model(next_ids, '
                'cache=cache)."""',
                f"        return {cache}(max_len)", "",
                "    def generate(self, ids, max_new_tokens, temperature=0.0, top_k=None, static=True, compile=False):",
                '        """Append max_new_tokens tokens to ids (B, T): greedy at temperature 0, else sampled (from the',
                '        top_k most likely); keys and values cached (static: preallocated); compile: a compiled step."""',
                f"        return {generate}(self, ids, max_new_tokens, temperature, top_k, static=static, "
                "compile=compile" + _limits(em, [("positions", last["name"])], 16 + len(generate)) + ")"], generates
    if not (seq2seq and info.cache):
        return [], generates
    em.out.runtime("KVCache")
    cache = em.out.runtime("EncoderDecoderCache")
    src, tgt = (io.top(s["name"], io.ins[s["name"]][0][0]) for s in (stacks[0], last))
    gen = ["", "    def new_cache(self, max_len=None):",
           f'        """An empty {cache} (static with max_len): model({src}, {tgt}, cache=cache), then '
           'with next ids."""',
           f"        return {cache}(max_len)"]
    if generates:
        gen += _seq2seq_generate(em, src, tgt, io.padded, stacks[0]["name"], last["name"])
    return gen, generates


def _limits(em: Emitter, stacks: list[tuple[str, str]], indent: int) -> str:
    """`,\n    positions=self.config.ctx`: generate()'s keyword for each (keyword, stack)
    whose learned positions end (at the least of their ctx), on a line of its own."""
    g, out = em.ix.g, []
    for keyword, stack in stacks:
        ends = [em.values.expr(g.nodes[p.path]["attrs"]["ctx"], em.ix.comps[p.path].get("syms", {}).get("ctx"),
                               prefix="self.config.")
                for p in position_limits(g) if p.kind == "learned" and p.stack == stack]
        if ends:
            out.append(f"{keyword}={ends[0]}" if len(ends) == 1 else f"{keyword}=min({', '.join(ends)})")
    return f",\n{' ' * indent}{', '.join(out)}" if out else ""


def _seq2seq_generate(em: Emitter, src: str, tgt: str, padded: bool, encoder: str, decoder: str) -> list[str]:
    em.out.runtime("decode_layout")
    generate = em.out.runtime("generate")
    mask = ", attention_mask=None" if padded else ""
    doc = (f"Append max_new_tokens tokens to the decoder's {tgt} (B, T: its start token) given the "
           f"source {src}" + (" (attention_mask: 1 for its tokens, 0 for padding)" if padded else "")
           + ": greedy at temperature 0, else sampled (from the top_k most likely); the source is "
           "encoded once, keys and values are cached (static: preallocated), the one-token step compiled "
           "if asked.")
    lines = textwrap.wrap(doc, 84)
    lines[0], lines[-1] = '"""' + lines[0], lines[-1] + '"""'
    return ["", f"    def generate(self, {src}, {tgt}, max_new_tokens, temperature=0.0, top_k=None{mask},",
            "                 static=True, compile=False):",
            *("        " + line for line in lines),
            f"        return {generate}(self, {tgt}, max_new_tokens, temperature, top_k, src={src},",
            " " * (16 + len(generate)) + "static=static, compile=compile"
            + (", attention_mask=attention_mask" if padded else "")
            + _limits(em, [("positions", decoder), ("src_positions", encoder)], 16 + len(generate)) + ")"]


def config_class(fields) -> str:
    lines = ["@dataclass", "class Config:",
             '    """The spec\'s variables; build(**changes) or build(Config(...)) sets others."""', ""]
    plain = [f for f in fields if f.derived is None]
    derived = [f for f in fields if f.derived is not None]
    for f in plain:
        lines.append(f"    {f.name}: {type(f.value).__name__} = {pysafe.literal(f.value)}")
    names = {f.spec_name: f.name for f in fields}
    for f in derived:
        expr = S.python(f.derived, lambda n: "self." + names[n])
        lines += ["", "    @property", f"    def {f.name}(self):  # {pysafe.text(S.text(f.derived))}",
                  f"        return {expr}"]
    if not fields:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def generate_source(g: nx.MultiDiGraph, origin: str | None = None) -> str:
    """The PyTorch source of the model in IR `g`: Config, the classes it needs, build()."""
    ix = index_ir(g)
    fields = config_fields(g.graph.vars, g.graph.get("var_syms", {}))
    out = SourceFile()
    values = Values({f.spec_name: f.name for f in fields}, dict(g.graph.vars))
    em = Emitter(ix, out, values)
    class_names: set[str] = set()
    stack_classes = {}
    for s in g.graph.stacks:
        stack_classes[s["name"]] = stack_class(em, s, class_names)
        class_names.add(stack_classes[s["name"]])
    model, _ = model_class(em, stack_classes)
    name = pysafe.text(g.graph.name)
    where = f" from {pysafe.text(origin)}" if origin else ""
    doc = (f'"""{name}, generated by strata{where}.\n\n'
           "Runs with PyTorch alone: `model = build()` at the spec's sizes, or\n"
           "`build(Config(...))` / `build(name=value, ...)` to change them.  Regenerate rather than edit.\n"
           + ("\nPasses, in order:\n" + "\n".join(pass_lines(g)) + "\n" if g.graph.get("applied") else "")
           + '"""\n')
    low = lower_passes(g, out)  # the passes' tables and steps (strata/backends/torch/lower_passes.py)
    parts = [doc + "\n" + HEADER, config_class(fields)]
    parts += [source(h) for h in ORDER if h in out.runtime_used]
    parts += out.defs + low.tables
    make = f"{model}(replace(config or Config(), **changes))"
    body = [f"    return {make}"] if not low.build_steps else \
        [f"    model = {make}"] + low.build_steps + ["    return model"]
    parts.append(f'def build(config=None, **changes):\n    """The {name} model: Config\'s sizes, '
                 f'with `changes` applied."""\n' + "\n".join(body) + "\n")
    parts += low.after
    return "\n\n".join(p.rstrip("\n") + "\n" for p in parts)
