"""Source templates of the component classes of a generated file.

Component classes are specialised by their features (causal, rotary, GQA, ...)
so each emitted class holds only the code its model runs; sizes stay
constructor arguments, like nanoGPT's config.  Every builder returns `Component(base, source, ctor)`:
`source` has `{name}` where the class name goes; identical sources share one
class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACT = {
    "relu": "F.relu({})",
    "gelu": "F.gelu({})",
    "gelu_tanh": 'F.gelu({}, approximate="tanh")',
    "silu": "F.silu({})",
    "tanh": "torch.tanh({})",
}


def act(fn: str, expr: str) -> str:
    return ACT[fn].format(expr)


@dataclass
class Component:
    base: str                 # preferred class name
    source: str               # class source with {name} for its name
    ctor: str                 # constructor arguments
    helpers: tuple = ()       # helper names this class uses
    deps: list = field(default_factory=list)  # other Components it instantiates


def _args(**kw) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kw.items())


# ----------------------------------------------------------------- attention

def attention(a: dict, d: int, bias: bool, out_bias: bool, qk_norm: bool, *, mask: bool,
              cache: bool, fused: bool = False) -> Component:
    """Self- or cross-attention around F.scaled_dot_product_attention."""
    cross, causal, rope = a["cross"], a["causal"], a["rope"]
    gqa = a["kv_heads"] < a["heads"]
    base = "CrossAttention" if cross else "CausalSelfAttention" if causal else "SelfAttention"
    helpers = []
    init = [
        "    def __init__(self, d, heads, kv_heads, head_dim, bias=True, out_bias=True, dropout=0.0"
        + (", scale=None" if a["scale"] else "") + (", softcap=None" if a["softcap"] else "") + "):",
        "        super().__init__()",
        "        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim",
        "        self.dropout = dropout",
    ]
    if a["scale"]:
        init.append("        self.scale = scale")
    if a["softcap"]:
        init.append("        self.softcap = softcap")
    if fused:  # the fuse_qkv pass: one matmul for q, k and v
        init.append("        self.qkv = nn.Linear(d, (heads + 2 * kv_heads) * head_dim, bias=bias)")
    else:
        init += [
            "        self.q = nn.Linear(d, heads * head_dim, bias=bias)",
            "        self.k = nn.Linear(d, kv_heads * head_dim, bias=bias)",
            "        self.v = nn.Linear(d, kv_heads * head_dim, bias=bias)",
        ]
    if qk_norm:
        helpers.append("RMSNorm")
        init += ["        self.q_norm = RMSNorm(head_dim, eps=1e-6)",
                 "        self.k_norm = RMSNorm(head_dim, eps=1e-6)"]
    init.append("        self.o = nn.Linear(heads * head_dim, d, bias=out_bias)")

    params = ["self", "x"] + (["memory"] if cross else [])
    params += (["rope=None"] if rope and not cross else []) + (["mask=None"] if mask else [])
    params += ["cache=None"] if cache and not cross else []
    src = "memory" if cross else "x"
    S = "S" if cross else "T"
    fwd = [f"    def forward({', '.join(params)}):",
           "        B, T, _ = x.shape"]
    if cross:
        fwd.append("        S = memory.shape[1]")
    if fused:
        fwd += [
            "        q, k, v = self.qkv(x).split(",
            ("            [self.heads * self.head_dim, self.kv_heads * self.head_dim, "
             "self.kv_heads * self.head_dim], dim=-1)"),
            "        q = q.view(B, T, self.heads, self.head_dim)  # (B, T, nh, hs)",
            "        k = k.view(B, T, self.kv_heads, self.head_dim)  # (B, T, n_kv, hs)",
            "        v = v.view(B, T, self.kv_heads, self.head_dim)",
        ]
    else:
        fwd += [
            "        q = self.q(x).view(B, T, self.heads, self.head_dim)  # (B, T, nh, hs)",
            f"        k = self.k({src}).view(B, {S}, self.kv_heads, self.head_dim)  # (B, {S}, n_kv, hs)",
            f"        v = self.v({src}).view(B, {S}, self.kv_heads, self.head_dim)",
        ]
    if qk_norm:
        fwd.append("        q, k = self.q_norm(q), self.k_norm(k)")
    fwd.append("        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T, hs)")
    if rope and not cross:
        helpers.append("apply_rotary")
        fwd.append("        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)")
    if cache and not cross:
        fwd += ["        if cache is not None:",
                "            k, v = cache.update(k, v)  # (B, n_kv, S, hs): past and new positions"]
    drop = "self.dropout if self.training else 0.0"
    scale = "self.scale" if a["scale"] else "1.0 / math.sqrt(self.head_dim)"
    if a["softcap"]:
        helpers.append("softcapped_attention")
        m = "mask" if mask else "None"
        fwd.append(f"        y = softcapped_attention(q, k, v, {m}, {causal}, {scale}, self.softcap, {drop})")
    else:
        kw = []
        if mask:
            kw.append("attn_mask=mask")
            if causal:
                kw.append("is_causal=mask is None")
        elif causal:
            kw.append("is_causal=True")
        kw.append(f"dropout_p={drop}")
        if a["scale"]:
            kw.append("scale=self.scale")
        if gqa:
            kw.append("enable_gqa=True")
        fwd.append("        y = F.scaled_dot_product_attention(  # (B, nh, T, hs)")
        fwd.append("            q, k, v, " + ",\n            ".join(kw) + ")")
    fwd += ["        y = y.transpose(1, 2).reshape(B, T, self.heads * self.head_dim)  # (B, T, nh * hs)",
            "        return self.o(y)"]
    doc = ("    \"\"\"Queries from the stream, keys and values from the encoder's output.\"\"\""
           if cross else
           f"    \"\"\"{'Causal m' if causal else 'M'}ulti-head self-attention"
           + (" with grouped key/value heads" if gqa else "")
           + (", rotary positions" if rope else "")
           + (", per-head RMSNorm on q and k" if qk_norm else "")
           + (", tanh-capped logits" if a["softcap"] else "") + ".\"\"\"")
    source = "\n".join(["class {name}(nn.Module):", doc, ""] + init + [""] + fwd) + "\n"
    kw = {"d": d, "heads": a["heads"], "kv_heads": a["kv_heads"], "head_dim": a["head_dim"],
          "bias": bias, "out_bias": out_bias, "dropout": a["dropout"]}
    if a["scale"]:
        kw["scale"] = a["scale"]
    if a["softcap"]:
        kw["softcap"] = a["softcap"]
    return Component(base, source, _args(**kw), tuple(helpers))


# ----------------------------------------------------------------- MLPs

def mlp(d: int, hidden: int, fn: str, gated: bool, bias: bool, dropout: float | None,
        fused: bool = False) -> Component:
    """down(act(up(x))), or down(act(gate(x)) * up(x)) when gated."""
    if gated:
        base = {"silu": "SwiGLU", "gelu": "GeGLU"}.get(fn, "GatedMLP")
        doc = f'    """Gated feed-forward: down({fn}(gate(x)) * up(x))."""'
    else:
        base = "MLP"
        doc = f'    """Feed-forward: down({fn}(up(x)))."""'
    init = ["    def __init__(self, d, hidden, bias=True" + (", dropout=0.0" if dropout else "") + "):",
            "        super().__init__()"]
    if fused:  # the fuse_mlp pass: one matmul for gate and up
        init.append("        self.gate_up = nn.Linear(d, 2 * hidden, bias=bias)")
    elif gated:
        init.append("        self.gate = nn.Linear(d, hidden, bias=bias)")
    if not fused:
        init.append("        self.up = nn.Linear(d, hidden, bias=bias)")
    init.append("        self.down = nn.Linear(hidden, d, bias=bias)")
    if dropout:
        init.append("        self.drop = nn.Dropout(dropout)")
    h = f"{act(fn, 'self.gate(x)')} * self.up(x)" if gated else act(fn, "self.up(x)")
    out = "self.down(h)"
    if dropout:
        out = f"self.drop({out})"
    fwd = ["    def forward(self, x):"]
    if fused:
        fwd.append("        gate, up = self.gate_up(x).chunk(2, dim=-1)  # (B, T, hidden) each")
        h = f"{act(fn, 'gate')} * up"
    fwd += [f"        h = {h}  # (B, T, hidden)",
            f"        return {out}"]
    source = "\n".join(["class {name}(nn.Module):", doc, ""] + init + [""] + fwd) + "\n"
    kw = {"d": d, "hidden": hidden, "bias": bias}
    if dropout:
        kw["dropout"] = dropout
    return Component(base, source, _args(**kw))


def moe(d: int, a: dict, expert: Component) -> Component:
    """Top-k routing over expert MLPs, plus shared experts every token uses."""
    source = '''\
class {name}(nn.Module):
    """Mixture of experts: a softmax router sends each token to its top_k experts
    (weights renormalised to sum to 1 when normalize); shared experts see every token."""

    def __init__(self, d, hidden, experts, top_k, shared=0, bias=False, normalize=True):
        super().__init__()
        self.top_k, self.normalize = top_k, normalize
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList([%(expert)s(d, hidden, bias=bias) for _ in range(experts)])
        self.shared = nn.ModuleList([%(expert)s(d, hidden, bias=bias) for _ in range(shared)])

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
    kw = {"d": d, "hidden": a["hidden"], "experts": a["experts"], "top_k": a["top_k"],
          "shared": a["shared"], "bias": a["bias"], "normalize": a["normalize"]}
    return Component("MoE", source.replace("%(expert)s", "{expert}"), _args(**kw), deps=[expert])


# ----------------------------------------------------------------- heads

def pooler(d: int, fn: str) -> Component:
    h = "self.dense(x[:, 0])"
    out = act(fn, h) if fn != "none" else h
    source = f'''\
class {{name}}(nn.Module):
    """The first token's state through a dense layer and {fn} (BERT's pooler)."""

    def __init__(self, d):
        super().__init__()
        self.dense = nn.Linear(d, d)

    def forward(self, x):
        return {out}  # (B, d)
'''
    return Component("Pooler", source, _args(d=d))


def mlm_head(d: int, vocab: int, fn: str, eps: float) -> Component:
    source = f'''\
class {{name}}(nn.Module):
    """BERT's masked-LM head: dense, {fn}, LayerNorm, then the (tied) decoder to the vocabulary."""

    def __init__(self, d, vocab, eps=1e-12):
        super().__init__()
        self.dense = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, eps=eps)
        self.decoder = nn.Linear(d, vocab)

    def forward(self, x):
        h = self.norm({act(fn, "self.dense(x)")})  # (B, T, d)
        return self.decoder(h)  # (B, T, vocab)
'''
    return Component("MLMHead", source, _args(d=d, vocab=vocab, eps=eps))


def low_rank(d_in: int, rank: int, d_out: int, bias: bool) -> Component:
    source = '''\
class {name}(nn.Module):
    """A linear layer factored to rank r by the low_rank pass: b(a(x)), W = B A."""

    def __init__(self, d_in, rank, d_out, bias=False):
        super().__init__()
        self.a = nn.Linear(d_in, rank, bias=False)
        self.b = nn.Linear(rank, d_out, bias=bias)

    def forward(self, x):
        return self.b(self.a(x))
'''
    return Component("LowRankLinear", source, _args(d_in=d_in, rank=rank, d_out=d_out, bias=bias))
