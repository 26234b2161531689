"""Runtime helpers copied verbatim into generated files that need them."""

from __future__ import annotations

HEADER = '''\
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
'''

HELPERS: dict[str, str] = {}

HELPERS["KVCache"] = '''\
class KVCache:
    """Keys and values of the positions seen so far, one entry per self-attention
    in call order.  The model calls `start()` at every forward."""

    def __init__(self):
        self.layers = []  # [(k, v)], each (B, n_kv, S, hs)
        self.index = 0

    def start(self):
        self.index = 0
        return self.layers[0][0].shape[2] if self.layers else 0

    def update(self, k, v):
        if self.index < len(self.layers):
            past_k, past_v = self.layers[self.index]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
            self.layers[self.index] = (k, v)
        else:
            self.layers.append((k, v))
        self.index += 1
        return k, v
'''

HELPERS["make_mask"] = '''\
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
'''

HELPERS["apply_rotary"] = '''\
def apply_rotary(x, cos, sin):
    """Rotate the first cos.shape[-1] dims of every head (rotate-half, as Llama)."""
    d = cos.shape[-1]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x_rot, x_pass = x[..., :d], x[..., d:]
    x1, x2 = x_rot.chunk(2, dim=-1)
    rotated = x_rot * cos + torch.cat((-x2, x1), dim=-1) * sin
    return rotated if x_pass.shape[-1] == 0 else torch.cat((rotated, x_pass), dim=-1)
'''

HELPERS["softcapped_attention"] = '''\
def softcapped_attention(q, k, v, mask, causal, scale, softcap, dropout):
    """softmax(softcap * tanh(q k^T * scale / softcap)) v: SDPA has no logit
    soft-capping, so this is the explicit path."""
    if k.shape[1] != q.shape[1]:  # GQA: each key/value head serves a group of query heads
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    att = (q @ k.transpose(-2, -1)) * scale  # (B, nh, T, S)
    att = softcap * torch.tanh(att / softcap)
    if mask is None and causal:
        T, S = att.shape[-2:]
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)[None, None]
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else att + mask
    att = F.dropout(att.float().softmax(dim=-1).to(q.dtype), dropout)
    return att @ v  # (B, nh, T, hs)
'''

HELPERS["RMSNorm"] = '''\
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
'''

HELPERS["RotaryEmbedding"] = '''\
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
'''

HELPERS["SinusoidalPositions"] = '''\
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
'''

HELPERS["ALiBi"] = '''\
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
        slopes = torch.tensor(self.slopes, device=keep.device)[:, None, None]  # (nh, 1, 1)
        bias = -slopes * (q - k).abs()  # (nh, T, S)
        return bias[None].masked_fill(~keep, float("-inf")).to(dtype)  # (B or 1, nh, T, S)
'''

HELPERS["tied_hooks"] = '''\
def drop_tied(module, state_dict, prefix, local_metadata):
    """state_dict hook: a tied weight is saved once, under the name it is tied to."""
    for name in module.tied_weights:
        state_dict.pop(prefix + name, None)


def fill_tied(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
    """load_state_dict hook: a tied name takes the weight it is tied to."""
    for name, source in module.tied_weights.items():
        if prefix + source in state_dict:
            state_dict.setdefault(prefix + name, state_dict[prefix + source])
'''

# The order helpers appear in a generated file.
ORDER = ["KVCache", "make_mask", "apply_rotary", "softcapped_attention", "tied_hooks",
         "RMSNorm", "RotaryEmbedding", "SinusoidalPositions", "ALiBi"]
