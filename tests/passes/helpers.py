"""Tiny specs, weights and measures shared by the pass tests."""

from __future__ import annotations


from tests.optional import require

torch = require("torch")

from strata.api import compile, save_weights  # noqa: E402

# Llama-like: GQA, rotary, SwiGLU, untied head; every width a multiple of 32 (int4 groups).
LLAMA = """
model tiny_llama {
  vocab = 96
  d     = 64
  heads = 4
  depth = 2
  block layer {
    residual { rmsnorm as attn_norm; attention(heads, kv_heads=2, causal=true, bias=false) }
    residual { rmsnorm as mlp_norm; mlp(128, act=swiglu, bias=false) }
  }
  stack decoder(tokens) {
    embedding(vocab, d) as embed
    position(rotary)
    repeat(depth) layer as layers
    rmsnorm as norm
    lm_head(vocab)
  }
}
"""

# GPT-2-like: learned positions, biases, GELU MLP, tied head.
GPT = """
model tiny_gpt {
  vocab = 80
  ctx   = 32
  d     = 64
  heads = 4
  depth = 2
  block layer {
    residual { layernorm; attention(heads, causal=true) }
    residual { layernorm; mlp(4 * d, act=gelu_tanh) }
  }
  stack decoder(tokens) {
    embedding(vocab, d) as wte
    position(learned, ctx) as wpe
    repeat(depth) layer as h
    layernorm as ln_f
    lm_head(tie=wte)
  }
}
"""


def spec_file(tmp_path, text: str, name: str = "m.arch"):
    path = tmp_path / name
    path.write_text(text)
    return path


def weights(tmp_path, spec, seed: int = 0, name: str = "w.safetensors"):
    """Random weights of `spec` in its own names (as save_weights writes them), with
    heavier tails than the initialiser so magnitudes differ (a trained model's do)."""
    torch.manual_seed(seed)
    net = compile(spec, passes=[])
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 2:
                p.mul_(1 + 3 * torch.rand(p.shape[0], 1) * torch.rand(1, p.shape[1]))
    path = tmp_path / name
    save_weights(net, path)
    return path


def ids(vocab: int, rows: int = 2, length: int = 16, seed: int = 1):
    return torch.randint(0, vocab, (rows, length), generator=torch.Generator().manual_seed(seed))


def sqnr(ref, got) -> float:
    """Signal-to-quantization-noise ratio in dB."""
    ref, got = ref.detach().float(), got.detach().float()
    return float(20 * torch.log10(ref.norm() / (ref - got).norm()))


def logits(spec, w, x, passes=None, **kw):
    net = compile(spec, passes=passes, weights=w, **kw).eval()
    with torch.no_grad():
        return net(x), net
