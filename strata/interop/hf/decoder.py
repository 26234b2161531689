"""What the decoder families share: attention sizes, which layers slide a window,
an LM head, checkpoint prefixes.  Each reads checked values through `Config`.

    >>> cfg = Config({"model_type": "qwen2", "num_hidden_layers": 4, "sliding_window": 8,
    ...               "layer_types": ["full_attention", "full_attention",
    ...                               "sliding_attention", "sliding_attention"]})
    >>> from strata.dsl.formatter import format_expr
    >>> format_expr(window_option(cfg, "layer_types", 4))
    'window if i >= 2 else none'
"""

from __future__ import annotations

from strata.interop.hf.config import Config, HFImportError, show
from strata.interop.hf.spec_ast import binop, cond, ref, use
from strata.interop.hf.checkpoint_reader import Mapping

MAX_PERIOD = 8  # layer patterns repeating with a longer period are refused


def heads(cfg: Config, d: int, *, heads_key: str = "num_attention_heads",
          kv_key: str | None = "num_key_value_heads", head_dim_key: str | None = "head_dim"
          ) -> tuple[int, int, int]:
    """(heads, kv_heads, head_dim), checked: kv_heads divides heads; without an
    explicit head_dim, heads divides d."""
    n = cfg.int(heads_key)
    kv = cfg.int(kv_key, default=n) if kv_key else n
    if n % kv:
        raise HFImportError(f"config.json: {kv_key} ({kv}) does not divide {heads_key} ({n})")
    if head_dim_key and cfg.has(head_dim_key):
        return n, kv, cfg.int(head_dim_key)
    if d % n:
        raise HFImportError(f"config.json: {heads_key} ({n}) does not divide hidden_size ({d})"
                            + (f" and there is no {head_dim_key}" if head_dim_key else ""))
    return n, kv, d // n


def sliding_layers(cfg: Config, key: str, depth: int) -> list[bool]:
    """Which layers use the sliding window, from `layer_types` (a list of
    "full_attention" / "sliding_attention", one per layer)."""
    types = cfg.raw.get(key)
    if not isinstance(types, list) or len(types) != depth or not all(
            t in ("full_attention", "sliding_attention") for t in types):
        raise HFImportError(f"config.json: '{key}' should list 'full_attention' or "
                            f"'sliding_attention' for each of the {depth} layers, got {show(types)}")
    return [t == "sliding_attention" for t in types]


def window_option(cfg: Config, key: str, depth: int, sliding: list[bool] | None = None):
    """The `window=` option of the layer with index `i`: `window` on every layer, none,
    or an expression of `i` for a pattern a spec can say (from layer k on; every
    p-th layer).  None when no layer slides; a pattern with no short rule is refused."""
    sliding = sliding_layers(cfg, key, depth) if sliding is None else sliding
    if not any(sliding):
        return None
    if all(sliding):
        return ref("window")
    first = sliding.index(True)
    if all(sliding[first:]):
        return cond(binop(">=", ref("i"), first), ref("window"), None)
    for p in range(2, MAX_PERIOD + 1):
        if all(sliding[j] == sliding[j % p] for j in range(depth)):
            hits = [r for r in range(p) if sliding[r]]
            test = binop("==", binop("%", ref("i"), p), hits[0])
            for r in hits[1:]:
                test = binop("or", test, binop("==", binop("%", ref("i"), p), r))
            return cond(test, ref("window"), None)
    raise HFImportError(f"unsupported option {key} in config.json: strata's spec gives the sliding "
                        f"layers by a rule of the layer index (all, from layer k on, or every p-th "
                        f"layer, p <= {MAX_PERIOD})")


def layer_patterns(variables: dict, facts: dict) -> list:
    """Export's candidates for `layer_types`: none, and each pattern `window_option`
    can say (all, from layer k on, every other layer), for `depth` layers."""
    depth = variables.get("depth")
    if not isinstance(depth, int) or depth > MAX_PATTERN_DEPTH:
        return [None]
    rules = [lambda i: True, lambda i: False, lambda i: i % 2 == 0, lambda i: i % 2 == 1]
    rules += [lambda i, k=k: i >= k for k in range(1, depth)]
    return [None] + [["sliding_attention" if r(i) else "full_attention" for i in range(depth)] for r in rules]


MAX_PATTERN_DEPTH = 256  # export tries layer patterns only for stacks up to this deep


def lm_head(lay: dict, embed: str, **options):
    """The LM head statement: tied to `embed`, or its own weight."""
    if lay["tied"]:
        return use("lm_head", tie=ref(embed), **options)
    return use("lm_head", ref("vocab"), **options)


def prefix(keys: set[str] | None, *candidates: str) -> str:
    """The first of `candidates` some tensor name starts with ("" when none does, or
    when the names are not known)."""
    if keys is None:
        return candidates[0] if candidates else ""
    return next((p for p in candidates if any(k.startswith(p) for k in keys)), "")


def attention_sizes(o: dict, variables: list) -> dict:
    """The attention options kv_heads / head_dim where they differ from what
    `attention(heads)` assumes (kv_heads = heads, head_dim = d // heads), each
    declared as a model variable in `variables`."""
    attn = {}
    if o["kv_heads"] != o["heads"]:
        variables.append(("kv_heads", o["kv_heads"]))
        attn["kv_heads"] = ref("kv_heads")
    if o["head_dim"] * o["heads"] != o["d"]:
        variables.append(("head_dim", o["head_dim"]))
        attn["head_dim"] = ref("head_dim")
    return attn


def llama_mapping(lay: dict) -> Mapping:
    """The start of a mapping for Llama's checkpoint layout (Llama, Mistral, Qwen2,
    Mixtral, Gemma 2): rotary caches and a tied head's copy of the embedding
    ignored, the embedding mapped."""
    extra = {"lm_head.weight"} if lay["tied"] else set()
    m = Mapping(ignore=lambda k: k.endswith(".rotary_emb.inv_freq") or k in extra)
    m.add("decoder.embed.weight", f"{lay['prefix']}embed_tokens.weight")
    return m


def map_self_attention(m: Mapping, src: str, dst: str, biased: str = "") -> None:
    """self_attn.{q,k,v,o}_proj -> attn.{q,k,v,o}; biases for the projections in `biased`."""
    for name in "qkvo":
        m.add(f"{dst}.attn.{name}.weight", f"{src}.self_attn.{name}_proj.weight")
        if name in biased:
            m.add(f"{dst}.attn.{name}.bias", f"{src}.self_attn.{name}_proj.bias")


def map_llama_attention(m: Mapping, src: str, dst: str, biased: str = "") -> None:
    """A Llama layer's two norms (input_layernorm, post_attention_layernorm) and its
    self-attention (`map_self_attention`); its MLP is the family's own."""
    m.add(f"{dst}.input_norm.weight", f"{src}.input_layernorm.weight")
    m.add(f"{dst}.post_attention_norm.weight", f"{src}.post_attention_layernorm.weight")
    map_self_attention(m, src, dst, biased)


def map_gated_mlp(m: Mapping, src: str, dst: str, bias: bool = False) -> None:
    """mlp.{gate,up,down}_proj -> mlp.{gate,up,down}."""
    for name in ("gate", "up", "down"):
        m.add(f"{dst}.mlp.{name}.weight", f"{src}.mlp.{name}_proj.weight")
        if bias:
            m.add(f"{dst}.mlp.{name}.bias", f"{src}.mlp.{name}_proj.bias")


def map_norm_and_head(m: Mapping, lay: dict) -> Mapping:
    """The final `norm` and, when the checkpoint has its own, the LM head."""
    m.add("decoder.norm.weight", f"{lay['prefix']}norm.weight")
    if lay["head"] and not lay["tied"]:
        m.add("decoder.lm_head.weight", "lm_head.weight")
    return m
