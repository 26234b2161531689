"""Feed-forward blocks: the MLP (plain or gated) and the mixture of experts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from strata.components.component_base import Component, EvalError, Lowered, Options, activation, hidden, linear

Activation = Literal["relu", "gelu", "gelu_tanh", "silu", "tanh", "swiglu", "geglu", "geglu_tanh"]
# gated activation -> activation of its gate: geglu_tanh is Gemma's and T5 v1.1's
# GELU gate with the tanh approximation (HF's gelu_pytorch_tanh / gelu_new)
GATED = {"swiglu": "silu", "geglu": "gelu", "geglu_tanh": "gelu_tanh"}

# An activation applied to a Python expression in generated code.
ACT = {
    "relu": "F.relu({})",
    "gelu": "F.gelu({})",
    "gelu_tanh": 'F.gelu({}, approximate="tanh")',
    "silu": "F.silu({})",
    "tanh": "torch.tanh({})",
}


def act(fn: str, expr: str) -> str:
    return ACT[fn].format(expr)


class MLP(Options):
    """Feed-forward: down(act(up(x))); gated activations add a gate projection."""

    hidden: PositiveInt
    act: Activation = "gelu"
    bias: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)


class MoE(Options):
    """Mixture of experts: a router picks top_k of `experts` MLPs per token."""

    hidden: PositiveInt
    experts: PositiveInt
    top_k: PositiveInt = 2
    shared: int = Field(0, ge=0, description="shared experts every token goes through")
    act: Activation = "swiglu"
    bias: bool = False
    normalize: bool = Field(True, description="renormalise the top_k routing weights to sum to 1")


# ----------------------------------------------------------------- elaboration

def elaborate_mlp(b, u):
    x, o = u.x, u.o
    d = hidden(x, "mlp", u.span)
    h_sym = x.sym[:-1] + (u.syms.get("hidden"),)
    kw = dict(u=u, kind="mlp", out_sym=u.syms.get("hidden"))
    if o.act in GATED:
        gate = linear(b, f"{u.path}.gate", x, o.hidden, bias=o.bias, attrs={"role": "gate"}, **kw)
        up = linear(b, f"{u.path}.up", x, o.hidden, bias=o.bias, attrs={"role": "up"}, **kw)
        a = activation(b, f"{u.path}.act", gate, GATED[o.act], u, "mlp")
        h = b.op(f"{u.path}.mul", "mul", [a, up], up.shape, u.sc, comp=u.path, kind="mlp", span=u.span,
                 sym=h_sym)
    else:
        up = linear(b, f"{u.path}.up", x, o.hidden, bias=o.bias, attrs={"role": "up"}, **kw)
        h = activation(b, f"{u.path}.act", up, o.act, u, "mlp")
    y = linear(b, f"{u.path}.down", h, d, bias=o.bias, attrs={"role": "down"}, u=u, kind="mlp",
               out_sym=x.sym[-1])
    if o.dropout:
        y = b.op(f"{u.path}.drop", "dropout", [y], y.shape, u.sc, comp=u.path, kind="mlp",
                 attrs={"p": o.dropout}, span=u.span, sym=y.sym)
    u.facts.update(gated=o.act in GATED, fused=None)
    return y


def elaborate_moe(b, u):
    x, o = u.x, u.o
    d = hidden(x, "moe", u.span)
    if o.top_k > o.experts:
        raise EvalError(f"top_k ({o.top_k}) is larger than the number of experts ({o.experts})", u.span)
    gated = o.act in GATED
    params = {"router.weight": (o.experts, d)}
    names = ("gate", "up", "down") if gated else ("up", "down")
    # a tensor per expert matrix: ask before making 10**8 of them
    b.make_room((o.experts + o.shared) * len(names) * (2 if o.bias else 1), u.span)
    for prefix, count in (("experts", o.experts), ("shared", o.shared)):
        for i in range(count):
            for n in names:
                shape = (d, o.hidden) if n == "down" else (o.hidden, d)
                params[f"{prefix}.{i}.{n}.weight"] = shape
                if o.bias:
                    params[f"{prefix}.{i}.{n}.bias"] = (shape[0],)
    attrs = {"hidden": o.hidden, "experts": o.experts, "top_k": o.top_k, "shared": o.shared,
             "act": o.act, "gated": gated, "bias": o.bias, "normalize": o.normalize}
    u.facts.update(gated=gated)
    return b.op(u.path, "moe", [x], x.shape, u.sc, comp=u.path, kind="mlp", attrs=attrs, params=params,
                span=u.span, sym=x.sym)


# ----------------------------------------------------------------- torch

def mlp_class(fn: str, *, gated: bool, dropout: bool, fused: bool = False) -> tuple[str, str]:
    """(preferred class name, class source): down(act(up(x))), or
    down(act(gate(x)) * up(x)) when gated."""
    if gated:
        base = {"silu": "SwiGLU", "gelu": "GeGLU", "gelu_tanh": "GeGLU"}.get(fn, "GatedMLP")
        doc = f"Gated feed-forward: down({fn}(gate(x)) * up(x))."
    else:
        base, doc = "MLP", f"Feed-forward: down({fn}(up(x)))."
    init = ["    def __init__(self, d, hidden, bias=True" + (", dropout=0.0" if dropout else "") + "):",
            "        super().__init__()"]
    if fused:  # the fuse_mlp pass: one matmul for gate and up
        init.append("        self.gate_up = nn.Linear(d, 2 * hidden, bias=bias)")
    else:
        init += ["        self.gate = nn.Linear(d, hidden, bias=bias)"] * gated
        init.append("        self.up = nn.Linear(d, hidden, bias=bias)")
    init.append("        self.down = nn.Linear(hidden, d, bias=bias)")
    init += ["        self.drop = nn.Dropout(dropout)"] * dropout
    fwd = ["    def forward(self, x):"]
    if fused:
        fwd.append("        gate, up = self.gate_up(x).chunk(2, dim=-1)  # (B, T, hidden) each")
        h = f"{act(fn, 'gate')} * up"
    else:
        h = f"{act(fn, 'self.gate(x)')} * self.up(x)" if gated else act(fn, "self.up(x)")
    out = f"self.down({h})"
    fwd.append(f"        return {f'self.drop({out})' if dropout else out}")
    return base, "\n".join(["class {name}(nn.Module):", f'    """{doc}"""', ""] + init + [""] + fwd) + "\n"


def torch_mlp(ctx, c):
    o, s = c.options, c.syms
    fused = c.facts.get("fused") == "gate_up"
    gated = c.facts.get("gated", False)
    fn = c.node("act")["attrs"]["fn"]
    down = c.node("down")["attrs"]
    base, source = mlp_class(fn, gated=gated, dropout=bool(o.get("dropout")), fused=fused)
    args = ctx.call_args([(down["out"], c.d_sym), (down["in"], s.get("hidden"))],
                         [("bias", down["bias"], s.get("bias"), True),
                          ("dropout", o.get("dropout"), s.get("dropout"), 0.0)])
    return Lowered(f"{ctx.define(base, source)}({args})", f"{c.module}({c.ins[0]})")


MOE_SOURCE = '''\
class {name}(nn.Module):
    """Mixture of experts: a softmax router sends each token to its top_k experts
    (weights renormalised to sum to 1 when normalize); shared experts see every token."""

    def __init__(self, d, hidden, experts, top_k, shared=0, bias=False, normalize=True):
        super().__init__()
        self.top_k, self.normalize = top_k, normalize
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList([{expert}(d, hidden, bias=bias) for _ in range(experts)])
        self.shared = nn.ModuleList([{expert}(d, hidden, bias=bias) for _ in range(shared)])

    def forward(self, x):
        B, T, D = x.shape
        x = x.reshape(B * T, D)  # (N, d): one row per token
        probs = self.router(x).float().softmax(dim=-1)  # (N, experts)
        weights, chosen = probs.topk(self.top_k, dim=-1)  # (N, top_k)
        if self.normalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        weights = weights.to(x.dtype)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == e)  # the tokens routed to expert e
            y.index_add_(0, token, expert(x[token]) * weights[token, slot, None])
        for expert in self.shared:
            y = y + expert(x)
        return y.view(B, T, D)
'''


def torch_moe(ctx, c):
    a, s = c.node()["attrs"], c.syms
    gated = a["act"] in GATED
    expert = ctx.define(*mlp_class(GATED.get(a["act"], a["act"]), gated=gated, dropout=False))
    cls = ctx.define("MoE", MOE_SOURCE.replace("{expert}", expert))
    args = ctx.call_args([(c.d, c.d_sym), (a["hidden"], s.get("hidden")), (a["experts"], s.get("experts")),
                          (a["top_k"], s.get("top_k"))],
                         [("shared", a["shared"], s.get("shared"), 0), ("bias", a["bias"], s.get("bias"), False),
                          ("normalize", a["normalize"], s.get("normalize"), True)])
    return Lowered(f"{cls}({args})", f"{c.module}({c.ins[0]})")


ACT_NAMES = {"relu": "ReLU", "gelu": "GELU", "gelu_tanh": "GELU (tanh)", "silu": "SiLU",
             "tanh": "tanh", "swiglu": "SwiGLU", "geglu": "GeGLU", "geglu_tanh": "GeGLU (tanh)"}

COMPONENTS = [
    Component("mlp", MLP, ("hidden",), "mlp", "mlp", elaborate_mlp, torch_mlp,
              lambda o: "Feed Forward", lambda o: f"{ACT_NAMES.get(o['act'], o['act'])}, hidden {o['hidden']}"),
    Component("moe", MoE, ("hidden", "experts", "top_k"), "moe", "mlp", elaborate_moe, torch_moe,
              lambda o: "Mixture of Experts", lambda o: f"{o['experts']} experts, top-{o['top_k']}"),
]
