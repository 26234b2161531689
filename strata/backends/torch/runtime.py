"""What generated models run besides their own classes: KV cache, masks,
positions, RMSNorm, initialisation and generation.

This is real, importable, tested code.  The code generator copies the
definitions a model needs from this file's source into the generated file
(`runtime_source.py`), so a generated file runs with torch alone.  Keep each
definition self-contained: it may use `math`, `torch`, `nn` and `F` only.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class KVCache:
    """Keys and values of the positions seen so far, per self-attention in call order (the
    model calls `start()` at every forward).  Static with max_len: (B, kv_heads, max_len,
    head_dim) per layer, written in place; else grown by torch.cat (no memory unused)."""

    def __init__(self, max_len=None):
        self.max_len, self.layers, self.index, self.length, self.end = max_len, [], 0, 0, 0

    def start(self):
        """Begin a forward pass; returns how many positions are cached."""
        self.index, self.length = 0, self.end
        return self.length

    def update(self, k, v):
        """Add this layer's new keys and values (B, kv_heads, T, head_dim); return all of them."""
        end = self.end = self.length + k.shape[2]
        if self.index == len(self.layers):
            size = (*k.shape[:2], self.max_len or 0, k.shape[3])
            self.layers.append((k.new_zeros(size), v.new_zeros(size)))
        past_k, past_v = self.layers[self.index]
        if self.max_len is None:
            past_k = torch.cat([past_k[:, :, :self.length], k], dim=2)
            past_v = torch.cat([past_v[:, :, :self.length], v], dim=2)
            self.layers[self.index] = (past_k, past_v)
        else:
            past_k[:, :, self.length:end], past_v[:, :, self.length:end] = k, v
        self.index += 1
        return past_k[:, :, :end], past_v[:, :, :end]

    def crop(self, length):
        """Forget the positions from `length` on (the draft tokens a verifier rejected)."""
        self.length = self.end = min(length, self.end)


class EncoderDecoderCache(KVCache):
    """A decoder's KV cache that also keeps what does not change while it generates:
    the encoder's output (`memory`) and each cross-attention's keys and values of it,
    computed at the first step, in call order."""

    def __init__(self, max_len=None):
        super().__init__(max_len)
        self.memory = None
        self.cross = []  # [(k, v)], each (B, kv_heads, S, head_dim)
        self.cross_index = 0

    def start(self):
        self.cross_index = 0
        return super().start()

    def cross_kv(self, compute, memory):
        """This cross-attention's keys and values: `compute(memory)` at the first step, then kept."""
        if self.cross_index == len(self.cross):
            self.cross.append(compute(memory))
        self.cross_index += 1
        return self.cross[self.cross_index - 1]


def make_mask(T, start_pos, device, causal=True, window=None, padding=None):
    """Which keys each query may attend to: (B or 1, 1, T, S) bool, True = attend.
    Queries sit at positions start_pos .. start_pos + T - 1 of S = start_pos + T keys."""
    S = start_pos + T
    q = torch.arange(start_pos, S, device=device)[:, None]
    k = torch.arange(S, device=device)[None, :]
    keep = k <= q if causal else torch.ones(T, S, dtype=torch.bool, device=device)
    if window is not None:  # sliding window: keys less than `window` positions away
        keep = keep & ((q - k).abs() < window)  # (causal: only the last `window`, this one included)
    keep = keep[None, None]
    if padding is not None:  # (B, S): 1 = token, 0 = padding
        keep = keep & padding[:, None, None, :].bool()
    return keep


def apply_rotary(x, cos, sin):
    """Rotate the first cos.shape[-1] dims of every head (rotate-half, as Llama)."""
    d = cos.shape[-1]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x_rot, x_pass = x[..., :d], x[..., d:]
    x1, x2 = x_rot.chunk(2, dim=-1)
    rotated = x_rot * cos + torch.cat((-x2, x1), dim=-1) * sin
    return rotated if x_pass.shape[-1] == 0 else torch.cat((rotated, x_pass), dim=-1)


def softcapped_attention(q, k, v, mask, causal, scale, softcap, dropout):
    """softmax(softcap * tanh(q k^T * scale / softcap)) v: SDPA has no logit
    soft-capping, so this is the explicit path."""
    if k.shape[1] != q.shape[1]:  # GQA: each key/value head serves a group of query heads
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    att = (q @ k.transpose(-2, -1)) * scale  # (B, heads, T, S)
    att = softcap * torch.tanh(att / softcap)
    if mask is None and causal:
        T, S = att.shape[-2:]
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)[None, None]
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else att + mask
    att = F.dropout(att.float().softmax(dim=-1).to(q.dtype), dropout)
    return att @ v  # (B, heads, T, head_dim)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 (as Llama)."""

    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class OffsetRMSNorm(nn.Module):
    """x / rms(x) * (1 + weight), all in float32 (Gemma): the scale is stored as its
    offset from 1, so the weight starts at 0."""

    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * (1.0 + self.weight.float())).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """cos and sin of the rotary angles, (T, dims) each; nothing is stored, so
    casting the model to bf16 cannot degrade the frequencies."""

    def __init__(self, dims, base=10000.0):
        super().__init__()
        self.dims, self.base = dims, base

    def forward(self, pos):
        inv_freq = 1.0 / self.base ** (
            torch.arange(0, self.dims, 2, device=pos.device, dtype=torch.float32) / self.dims)
        freqs = pos.float()[:, None] * inv_freq[None, :]  # (T, dims / 2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (T, dims)
        return emb.cos(), emb.sin()  # float32; apply_rotary casts


class SinusoidalPositions(nn.Module):
    """sin / cos positions of "Attention Is All You Need": even dims sin, odd cos."""

    def __init__(self, d):
        super().__init__()
        self.d = d

    def forward(self, pos, dtype):
        div = torch.exp(torch.arange(0, self.d, 2, device=pos.device, dtype=torch.float32)
                        * (-math.log(10000.0) / self.d))
        angles = pos.float()[:, None] * div[None, :]  # (T, d / 2)
        return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1).to(dtype)  # (T, d)


class ALiBi(nn.Module):
    """Attention with Linear Biases (Press et al., 2022): head h adds
    -slope_h * |i - j| to the logit of query i and key j."""

    def __init__(self, heads):
        super().__init__()
        self.slopes = self.get_slopes(heads)

    @staticmethod
    def get_slopes(n):
        def power_of_2(n):
            start = 2 ** (-(2 ** -(math.log2(n) - 3)))
            return [start * start ** i for i in range(n)]
        if math.log2(n).is_integer():
            return power_of_2(n)
        closest = 2 ** math.floor(math.log2(n))
        return power_of_2(closest) + ALiBi.get_slopes(2 * closest)[0::2][: n - closest]

    def forward(self, keep, start_pos, dtype):
        T, S = keep.shape[-2:]
        q = torch.arange(start_pos, start_pos + T, device=keep.device)[:, None]
        k = torch.arange(S, device=keep.device)[None, :]
        slopes = torch.tensor(self.slopes, device=keep.device)[:, None, None]  # (heads, 1, 1)
        bias = -slopes * (q - k).abs()  # (heads, T, S)
        return bias[None].masked_fill(~keep, float("-inf")).to(dtype)  # (B or 1, heads, T, S)


class RelativePositionBias(nn.Module):
    """T5's relative position bias: the distance from a query to a key falls in one of
    `buckets` (one per distance up to half of them, then logarithmic up to
    max_distance; split by direction when bidirectional), and each bucket has a
    learned bias per head.  One table serves every layer of the stack."""

    def __init__(self, heads, buckets=32, max_distance=128, bidirectional=True):
        super().__init__()
        self.buckets, self.max_distance, self.bidirectional = buckets, max_distance, bidirectional
        self.weight = nn.Parameter(torch.zeros(buckets, heads))

    def bucket(self, rel):
        """rel = key position - query position -> bucket ids (T5's _relative_position_bucket)."""
        n, out = self.buckets, 0
        if self.bidirectional:
            n //= 2
            out = (rel > 0).long() * n  # keys after the query get the upper half
            rel = rel.abs()
        else:
            rel = -rel.clamp(max=0)  # a causal query sees no later keys
        exact = n // 2
        far = exact + (torch.log(rel.float() / exact) / math.log(self.max_distance / exact)
                       * (n - exact)).long()
        return out + torch.where(rel < exact, rel, far.clamp(max=n - 1))

    def forward(self, keep, start_pos):
        T, S = keep.shape[-2:]
        q = torch.arange(start_pos, start_pos + T, device=keep.device)[:, None]
        k = torch.arange(S, device=keep.device)[None, :]
        bias = F.embedding(self.bucket(k - q), self.weight).permute(2, 0, 1)  # (heads, T, S)
        return bias[None].masked_fill(~keep, float("-inf"))  # (B or 1, heads, T, S)


def init_weights(model, residual=(), layers=1, zeros=()):
    """Initialise `model` in place: weights ~ N(0, 0.02), biases 0, norm scales 1;
    weights whose names end with one of `residual` (the projections that write
    into the residual stream) ~ N(0, 0.02 / sqrt(2 * layers)), as GPT-2 does, and
    those ending with one of `zeros` (scales stored as an offset from 1) 0.
    Draws from torch's global generator in parameter order (tied weights once);
    a model on the meta device (structure only) has nothing to initialise."""
    for name, p in model.named_parameters():
        if p.is_meta:
            continue
        if name.endswith("bias") or name.endswith(zeros):
            nn.init.zeros_(p)
        elif p.dim() == 1:
            nn.init.ones_(p)
        elif name.endswith(residual):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * layers))
        else:
            nn.init.normal_(p, mean=0.0, std=0.02)


def decode_layout(model):
    """Store each float32 linear weight of a model on a CPU column-major, in place: the
    same Parameter, values, shape and state dict, strides (1, out).  Decoding multiplies
    one row by every weight, and MKL's one-row product is faster when W.T (in, out) is
    the contiguous one: GPT-2 small's linears 7.5 % and its LM head 15 % (one-row
    products, one thread; a whole 48-token decoding 5 %, benchmarks/decode_layout.py),
    with no second copy.  Training takes either layout
    and strata's savers write contiguous tensors; quantized weights (tensor
    subclasses) keep their own."""
    for m in model.modules():
        w = m.weight if isinstance(m, nn.Linear) else None
        if (w is not None and type(w.data) is torch.Tensor and w.device.type == "cpu"
                and w.dtype == torch.float32 and min(w.shape) > 1 and w.is_contiguous()):
            w.data = w.data.t().contiguous().t()  # tied weights: one Parameter, restrided once


@torch.no_grad()
def generate(model, ids, max_new_tokens, temperature=0.0, top_k=None, src=None, static=True, compile=False,
             positions=None, src_positions=None, **inputs):
    """Append `max_new_tokens` tokens to `ids` (B, T): greedy when temperature is 0,
    else sampled from softmax(logits / temperature), from the top_k most likely
    when top_k is given.  Keys and values are cached: in a static cache of T +
    max_new_tokens positions, or one that grows (static=False); compile=True runs
    the one-token step compiled (torch.compile, fullgraph; once per model).  On a
    CPU the linear weights are stored column-major first (decode_layout).  The
    prompt is read for its last position's logits only (logits_to_keep=1).  The
    steps run in inference mode (less bookkeeping per op than no_grad); what is
    returned is an ordinary tensor, usable as a training input.  positions, src_positions:
    the rows of the learned position tables (of the tokens, of an encoder's source)."""
    if ids.shape[1] < 1 or max_new_tokens < 0 or temperature < 0 or (top_k is not None and top_k < 1):
        raise ValueError(f"generate takes ids (B, T >= 1), max_new_tokens >= 0, temperature >= 0 and top_k >= 1 "
                         f"or None; got {tuple(ids.shape)}, {max_new_tokens}, {temperature}, {top_k}")
    reads = [(ids.shape[1] + max(max_new_tokens - 1, 0), positions, "tokens (all but the last new one)")]
    reads += [(src.shape[1], src_positions, "source tokens")] if src is not None else []
    for n, limit, what in reads:
        if limit is not None and n > limit:
            raise ValueError(f"generate would read {n} {what}; the model's learned positions hold "
                             f"{limit}, so it can read at most {limit}")
    if ids.device.type == "cpu":
        decode_layout(model)  # outside inference mode: the parameters stay ordinary tensors
    cache = model.new_cache(ids.shape[1] + max_new_tokens if static else None)
    if compile and "compiled_step" not in model.__dict__:  # once per model (not a submodule: not in its state)
        model.__dict__["compiled_step"] = torch.compile(model, fullgraph=True, dynamic=True)  # sizes symbolic
    step = model.__dict__["compiled_step"] if compile else model
    first = () if src is None else (src,)  # an encoder-decoder's source, encoded once
    with torch.inference_mode():
        logits = model(*first, ids, cache=cache, logits_to_keep=1, **inputs)[:, -1, :]  # (B, vocab): the prompt's last
        for i in range(max_new_tokens):
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature  # max 0: a tiny temperature gives -inf, not NaN
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            ids = torch.cat((ids, nxt), dim=1)
            if i + 1 < max_new_tokens:
                logits = step(*first, nxt, cache=cache, **inputs)[:, -1, :]
    return ids.clone()  # outside inference mode: an ordinary tensor
