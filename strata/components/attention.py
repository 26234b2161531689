"""Self-attention and cross-attention: q, k, v, o projections around one
attention core (SDPA in PyTorch)."""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt

from strata.components.component_base import Component, EvalError, Lowered, Options, format_shape, hidden, linear
from strata.components.embeddings import relative_heads


class Attention(Options):
    """Multi-head self-attention; kv_heads < heads gives GQA (1 gives MQA)."""

    heads: PositiveInt
    kv_heads: PositiveInt | None = Field(None, description="key/value heads (GQA); default: heads")
    head_dim: PositiveInt | None = Field(None, description="default: d // heads")
    causal: bool = False
    window: PositiveInt | None = Field(None, description="sliding-window size (tokens)")
    bias: bool = Field(True, description="bias on the q, k, v projections")
    out_bias: bool | None = Field(None, description="bias on the output projection; default: bias")
    dropout: float = Field(0.0, ge=0, lt=1)
    qk_norm: bool = Field(False, description="RMSNorm on queries and keys, per head")
    softcap: PositiveFloat | None = Field(None, description="tanh soft-capping of attention logits")
    scale: PositiveFloat | None = Field(None, description="logit scale; default 1/sqrt(head_dim)")


class CrossAttention(Attention):
    """Attention from the stream to another stack's output (`memory`)."""

    memory: str = Field(description="the stack input bound to the encoder, e.g. memory")


# ----------------------------------------------------------------- elaboration

def elaborate_attention(b, u, memory=None):
    x, o = u.x, u.o
    label = "cross_attention" if memory is not None else "attention"
    d = hidden(x, label, u.span)
    heads, kv = o.heads, o.kv_heads or o.heads
    if kv > heads or heads % kv:
        raise EvalError(f"kv_heads ({kv}) must divide heads ({heads})", u.span,
                        "GQA groups query heads evenly: pick kv_heads among the divisors of heads")
    if o.head_dim is None and d % heads:
        raise EvalError(f"heads ({heads}) does not divide d ({d})", u.span,
                        f"choose heads dividing {d}, or set head_dim explicitly")
    hd = o.head_dim or d // heads
    src = memory if memory is not None else x
    pos = u.sc.stack.positions if memory is None else {"type": "none"}
    rope = None
    if pos["type"] == "rotary":
        rot = int(hd * pos["fraction"])
        if rot % 2 or rot == 0:
            raise EvalError(f"rotary positions rotate {rot} of {hd} head dims; it must be even and "
                            "positive", u.span, "adjust position(rotary, fraction=...)")
        rope = {"base": pos["base"], "dims": rot}
    if pos["type"] == "relative":
        relative_heads(b, u.sc.stack, heads, o.causal, u.span, u.syms.get("heads"))
    out_bias = o.bias if o.out_bias is None else o.out_bias
    kw = dict(u=u, kind="attention")
    q = linear(b, f"{u.path}.q", x, heads * hd, bias=o.bias, attrs={"role": "q"}, **kw)
    k = linear(b, f"{u.path}.k", src, kv * hd, bias=o.bias, attrs={"role": "k"}, **kw)
    v = linear(b, f"{u.path}.v", src, kv * hd, bias=o.bias, attrs={"role": "v"}, **kw)
    if o.qk_norm:
        norm = {"type": "rms", "eps": 1e-6, "per_head": hd}
        q = b.op(f"{u.path}.q_norm", "norm", [q], q.shape, u.sc, comp=u.path, kind="attention",
                 attrs=norm, params={"weight": (hd,)}, span=u.span, sym=q.sym)
        k = b.op(f"{u.path}.k_norm", "norm", [k], k.shape, u.sc, comp=u.path, kind="attention",
                 attrs=norm, params={"weight": (hd,)}, span=u.span, sym=k.sym)
    attrs = {"heads": heads, "kv_heads": kv, "head_dim": hd,
             "causal": o.causal if memory is None else False, "window": o.window,
             "dropout": o.dropout, "softcap": o.softcap, "scale": o.scale, "rope": rope,
             "alibi": pos["type"] == "alibi", "relative": pos["type"] == "relative",
             "cross": memory is not None}
    core = b.op(f"{u.path}.core", "attention", [q, k, v], x.shape[:-1] + (heads * hd,), u.sc,
                comp=u.path, kind="attention", attrs=attrs, span=u.span, sym=x.sym[:-1] + (None,))
    u.facts.update(cross=memory is not None, qk_norm=o.qk_norm, fused=None)
    return linear(b, f"{u.path}.o", core, d, bias=out_bias, attrs={"role": "o"}, out_sym=x.sym[-1], **kw)


def elaborate_cross_attention(b, u):
    memory = b.resolve_memory(u.o.memory, u.sc, u.span)
    d = hidden(u.x, "cross_attention", u.span)
    if memory.shape[-1] != d:
        raise EvalError(f"shape mismatch between stacks: memory '{u.o.memory}' is "
                        f"{format_shape(memory.shape)} but this stream is {format_shape(u.x.shape)}",
                        u.span, "the encoder's width must equal the decoder's d")
    return elaborate_attention(b, u, memory=memory)


# ----------------------------------------------------------------- torch

def attention_class(core: dict, *, qk_norm: bool, fused: str | None, mask: bool, cache: bool,
                    runtime) -> tuple[str, str]:
    """(preferred class name, class source with `{name}`) for one attention variant:
    only the code this variant runs (rotary, GQA, qk-norm, mask, cache, soft-capping)."""
    v = _Variant(core, qk_norm, fused, mask, cache)
    base = "CrossAttention" if v.cross else "CausalSelfAttention" if v.causal else "SelfAttention"
    init = _attention_init(v, runtime)
    project, helper = _attention_projections(v)
    fwd = project + _attention_core(v, runtime)
    if v.cross and cache and fused != "qkv":
        fwd += helper
    doc = ("Queries from the stream, keys and values from the encoder's output" if v.cross else
           f"{'Causal m' if v.causal else 'M'}ulti-head self-attention"
           + (" with grouped key/value heads" if v.gqa else "") + (", rotary positions" if v.rope else "")
           + (", per-head RMSNorm on q and k" if qk_norm else "")
           + (", tanh-capped logits" if v.softcap else ""))
    return base, "\n".join(["class {name}(nn.Module):", f'    """{doc}."""', ""] + init + [""] + fwd) + "\n"


class _Variant:
    """What one attention variant does, read off its IR core and the emitter's facts."""

    def __init__(self, core: dict, qk_norm: bool, fused: str | None, mask: bool, cache: bool):
        self.cross, self.causal, self.rope = core["cross"], core["causal"], core["rope"] and not core["cross"]
        self.gqa = core["kv_heads"] < core["heads"]
        self.scale, self.softcap = core["scale"] is not None, core["softcap"] is not None
        self.src, self.S = ("memory", "S") if self.cross else ("x", "T")
        self.qk_norm, self.fused, self.mask, self.cache = qk_norm, fused, mask, cache


def _attention_init(v: _Variant, runtime) -> list[str]:
    """__init__: the projections (fused by fuse_qkv or not), qk-norm, the output."""
    scale, softcap = v.scale, v.softcap
    init = ["    def __init__(self, d, heads, kv_heads=None, head_dim=None, bias=True, out_bias=None, "
            "dropout=0.0" + (", scale=None" if scale else "") + (", softcap=None" if softcap else "") + "):",
            "        super().__init__()",
            "        self.heads, self.kv_heads = heads, kv_heads or heads",
            "        self.head_dim = head_dim or d // heads",
            "        self.dropout = dropout"]
    init += ["        self.scale = scale"] * scale + ["        self.softcap = softcap"] * softcap
    q_width, kv_width = "heads * self.head_dim", "self.kv_heads * self.head_dim"
    if v.fused == "qkv":  # the fuse_qkv pass: one matmul for q, k and v
        init.append("        self.qkv = nn.Linear(d, (heads + 2 * self.kv_heads) * self.head_dim, bias=bias)")
    else:
        init.append(f"        self.q = nn.Linear(d, {q_width}, bias=bias)")
        if v.fused == "kv":  # the fuse_qkv pass on cross-attention: one matmul for k and v
            init.append(f"        self.kv = nn.Linear(d, 2 * {kv_width}, bias=bias)")
        else:
            init += [f"        self.k = nn.Linear(d, {kv_width}, bias=bias)",
                     f"        self.v = nn.Linear(d, {kv_width}, bias=bias)"]
    if v.qk_norm:
        rms = runtime("RMSNorm")
        init += [f"        self.q_norm = {rms}(self.head_dim, eps=1e-6)",
                 f"        self.k_norm = {rms}(self.head_dim, eps=1e-6)"]
    init.append(f"        self.o = nn.Linear({q_width}, d, bias=bias if out_bias is None else out_bias)")
    return init


def _attention_projections(v: _Variant) -> tuple[list[str], list[str]]:
    """(forward's first lines: q, k, v in heads; keys_values, the helper a cached
    cross-attention computes the encoder's keys and values with once)."""
    cross, cache, fused, src, S = v.cross, v.cache, v.fused, v.src, v.S
    params = ["self", "x"] + ["memory"] * cross + ["rope=None"] * bool(v.rope) + ["mask=None"] * v.mask
    params += ["cache=None"] * cache
    fwd = [f"    def forward({', '.join(params)}):", "        B, T, _ = x.shape"]
    if cross and not cache:
        fwd.append("        S = memory.shape[1]")
    sizes = "[self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim]"
    heads_t = ".view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, T, head_dim)"
    kv_t = f".view(B, {S}, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, kv_heads, {S}, head_dim)"
    helper: list[str] = []
    if fused == "qkv":
        fwd += [f"        q, k, v = self.qkv(x).split({sizes}, dim=-1)",
                f"        q = q{heads_t}", f"        k = k{kv_t}", f"        v = v{kv_t.split('  #')[0]}"]
        return fwd, helper
    fwd.append(f"        q = self.q(x){heads_t}")
    if fused == "kv":
        kv = [f"        k, v = self.kv({src}).chunk(2, dim=-1)",
              f"        k = k{kv_t}", f"        v = v{kv_t.split('  #')[0]}"]
    else:
        kv = [f"        k = self.k({src}){kv_t}", f"        v = self.v({src}){kv_t.split('  #')[0]}"]
    if cross and cache:  # keys and values of the encoder's output: computed once while generating
        fwd += ["        if cache is not None:",
                "            k, v = cache.cross_kv(self.keys_values, memory)",
                "        else:",
                "            k, v = self.keys_values(memory)"]
        helper = ["", "    def keys_values(self, memory):", "        B, S, _ = memory.shape"] + kv + \
            ["        return k, v"]
    else:
        fwd += kv
    return fwd, helper


def _attention_core(v: _Variant, runtime) -> list[str]:
    """forward's rest: qk-norm, rotary, the cache, SDPA (or soft-capped attention), the output."""
    fwd = []
    if v.qk_norm:  # over head_dim, per head
        fwd.append("        q, k = self.q_norm(q), self.k_norm(k)")
    if v.rope:
        rot = runtime("apply_rotary")
        fwd.append(f"        q, k = {rot}(q, *rope), {rot}(k, *rope)")
    if v.cache and not v.cross:
        fwd += ["        if cache is not None:",
                "            k, v = cache.update(k, v)  # (B, kv_heads, S, head_dim): cached and new positions"]
    drop = "self.dropout if self.training else 0.0"
    scale_expr = "self.scale" if v.scale else "1.0 / math.sqrt(self.head_dim)"
    if v.softcap:
        fn = runtime("softcapped_attention")
        fwd.append(f"        y = {fn}(q, k, v, {'mask' if v.mask else 'None'}, {v.causal}, {scale_expr}, "
                   f"self.softcap, {drop})")
    else:
        extra = [f"dropout_p={drop}"] + ["scale=self.scale"] * v.scale + ["enable_gqa=True"] * v.gqa
        if v.mask and v.causal:
            # a Python branch, not is_causal=(mask is None and T > 1): torch.compile and the ONNX
            # exporter see a length guard, not a symbolic bool SDPA cannot take.  One query (a
            # decoding step) sees every cached key: no mask, and not is_causal (SDPA aligns it top-left)
            fwd += ["        if mask is None and T > 1:"] + \
                ["    " + line for line in _sdpa(["is_causal=True"], extra)] + \
                ["        else:"] + ["    " + line for line in _sdpa(["attn_mask=mask"], extra)]
        else:
            fwd += _sdpa(["attn_mask=mask"] if v.mask else ["is_causal=True"] if v.causal else [], extra)
    return fwd + ["        y = y.transpose(1, 2).reshape(B, T, self.heads * self.head_dim)  # (B, T, heads * head_dim)",
                  "        return self.o(y)"]


def _sdpa(kw: list[str], extra: list[str]) -> list[str]:
    """`y = F.scaled_dot_product_attention(q, k, v, ...)` over one or two lines."""
    kw = kw + extra
    lines = ["        y = F.scaled_dot_product_attention(",
             "            " + ", ".join(["q, k, v"] + kw[:2]) + ("," if kw[2:] else ")")]
    return lines + (["            " + ", ".join(kw[2:]) + ")"] if kw[2:] else [])


def torch_attention(ctx, c):
    core = c.node("core")["attrs"]
    q = c.node("qkv" if c.facts.get("fused") == "qkv" else "q")["attrs"]
    o = c.node("o")["attrs"]
    opts = c.options
    base, source = attention_class(core, qk_norm=c.facts.get("qk_norm", False), fused=c.facts.get("fused"),
                                   mask=c.stack.memory_mask if core["cross"] else c.stack.mask,
                                   cache=c.stack.cache,
                                   runtime=ctx.runtime)
    cls = ctx.define(base, source)
    s = c.syms
    args = ctx.call_args(
        [(q["in"], c.d_sym), (core["heads"], s.get("heads"))],
        [("kv_heads", opts.get("kv_heads"), s.get("kv_heads"), None),
         ("head_dim", opts.get("head_dim"), s.get("head_dim"), None),
         ("bias", q["bias"], s.get("bias"), True),
         ("out_bias", o["bias"], s.get("out_bias"), q["bias"]),
         ("dropout", core["dropout"], s.get("dropout"), 0.0),
         ("scale", core["scale"], s.get("scale"), None),
         ("softcap", core["softcap"], s.get("softcap"), None)])
    ins = [c.ins[0]] + c.ins[1:2] * bool(core["cross"])
    extras = [f"{k}={c.extras[k]}" for k in ("rope", "mask", "cache") if k in c.extras]
    return Lowered(f"{cls}({args})", f"{c.module}({', '.join(ins + extras)})")


def _title(o: dict) -> str:
    return "Masked Self-Attention" if o.get("causal") else "Self-Attention"


def _detail(o: dict) -> str:
    kv = o.get("kv_heads") or o["heads"]
    s = f"{o['heads']} heads" + (f", {kv} kv (GQA)" if kv != o["heads"] else "")
    return s + (f", window {o['window']}" if o.get("window") else "")


COMPONENTS = [
    Component("attention", Attention, ("heads",), "attn", "attention", elaborate_attention,
              torch_attention, _title, _detail),
    Component("cross_attention", CrossAttention, ("heads", "memory"), "cross_attn", "attention",
              elaborate_cross_attention, torch_attention, lambda o: "Encoder-Decoder Attention",
              _detail, refs=frozenset({"memory"})),
]
