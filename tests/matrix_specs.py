"""The specs and passes of the composition matrix (tests/test_matrix.py): specs a
user writes in a folder of their own — none under specs/ — and every pass
family, written in the spec's own `passes { }` section as a user would."""

from __future__ import annotations

from pathlib import Path

# A decoder with no train section at all: every setting is a default.
PLAIN = """\
model plain {
  vocab = 300
  ctx = 32
  d = 32
  block layer {
    residual { layernorm; attention(2, causal=true) }
    residual { layernorm; mlp(4 * d) }
  }
  stack decoder(tokens) {
    embedding(vocab, d) as wte
    position(learned, ctx)
    repeat(2) layer as h
    layernorm
    lm_head(tie=wte)
  }
}
"""

# The base of DERIVED lives in another folder with its own train section and data.
BASE = """\
model base {
  vocab = 300
  ctx = 32
  d = 32
  heads = 2
  block layer {
    residual { layernorm; attention(heads, causal=true) }
    residual { layernorm; mlp(2 * d, act=gelu) }
  }
  stack decoder(tokens) {
    embedding(vocab, d) as wte
    position(learned, ctx)
    repeat(2) layer as h
    layernorm
    lm_head(tie=wte)
  }
}
train {
  data = "corpus.txt"
  tokenizer = byte
  batch = 4
  optimizer = adamw(lr=2e-3, weight_decay=0.1)
  schedule = cosine(warmup=1, min_lr=1e-4)
}
"""
DERIVED = """\
import "../lib/base.arch"
model derived extends base { d = 16 }
"""

LLAMA = """\
model llama {
  vocab = 300
  ctx = 32
  d = 32
  block layer {
    residual { rmsnorm; attention(4, kv_heads=2, causal=true, bias=false) }
    residual { rmsnorm; mlp(64, act=swiglu, bias=false) }
  }
  stack decoder(tokens) {
    embedding(vocab, d) as embed
    position(rotary, base=10000)
    repeat(2) layer as layers
    rmsnorm as norm
    lm_head(vocab, bias=false)
  }
}
train { batch = 4 }
"""

ENCDEC = """\
model encdec {
  vocab = 300
  ctx = 48
  d = 32
  block enc { residual { attention(2) } layernorm as n1  residual { mlp(64) } layernorm as n2 }
  block dec {
    residual { attention(2, causal=true) } layernorm as n1
    residual { cross_attention(2, memory) } layernorm as n2
    residual { mlp(64) } layernorm as n3
  }
  stack encoder(src) {
    embedding(vocab, d) as embed; position(sinusoidal, ctx); repeat(1) enc as layers; layernorm as norm
  }
  stack decoder(tgt, memory = encoder) {
    embedding(vocab, d, tie=encoder.embed) as embed; position(sinusoidal, ctx)
    repeat(1) dec as layers; layernorm as norm; lm_head(tie=encoder.embed)
  }
}
train { batch = 4 }
"""

BERT = """\
model NAME {
  vocab = 300
  d = 32
  block layer {
    residual { attention(2) }
    layernorm as attention_norm
    residual { mlp(64) }
    layernorm as output_norm
  }
  stack encoder(tokens) {
    embedding(vocab, d) as word_embeddings
    position(learned, 32) as position_embeddings
    layernorm as embeddings_norm
    repeat(2) layer as layer
    HEADS
  }
}
train { batch = 4 }
"""
MLM = BERT.replace("NAME", "mlm").replace("HEADS", "mlm_head(tie=word_embeddings)")
CLASSIFY = BERT.replace("NAME", "classify").replace("HEADS", "pooler\n    classifier(3)")

SPECS = {"plain": PLAIN, "derived": DERIVED, "llama": LLAMA, "encdec": ENCDEC, "mlm": MLM,
         "classify": CLASSIFY}

TEACHER = 'distill("../teachers/{name}.arch", weights="../teachers/{name}-run")'
PASSES = {
    "none": "",
    "int8_dynamic": "quantize(int8_dynamic)",
    "int8_weight": "quantize(int8_weight)",
    "int4_weight": "quantize(int4_weight, group_size=32)",
    "int4_channel": "quantize(int4_weight, group_size=channel)",
    "fp8": "quantize(fp8)",
    "magnitude": "prune(0.5)",
    "wanda": "prune(0.5, method=wanda)",
    "structured": 'prune(0.5, method=structured, on="mlp")',
    "2:4": 'prune(0.5, method="2:4")',
    "low_rank": "low_rank(4)",
    "lora": "lora(4)",
    "qat": "quantize(int8_dynamic, qat=true)",
    "distill": TEACHER,
    "distill+int8": TEACHER + "\nquantize(int8_dynamic)",
}


def write_spec(root: Path, name: str, passes: str = "", stem: str | None = None) -> Path:
    """SPECS[name] (+ a passes section) as a user's file root/work/STEM.arch."""
    (root / "lib").mkdir(parents=True, exist_ok=True)
    (root / "work").mkdir(parents=True, exist_ok=True)
    if name == "derived":
        (root / "lib" / "base.arch").write_text(BASE)
        if not (root / "lib" / "corpus.txt").exists():
            from strata.train.data import builtin_text

            (root / "lib" / "corpus.txt").write_text(builtin_text()[:60_000])
    text = SPECS[name]
    if passes:
        text += "passes {\n  " + passes.format(name=name).replace("\n", "\n  ") + "\n}\n"
    path = root / "work" / f"{stem or name}.arch"
    path.write_text(text)
    return path


def write_teacher(root: Path, name: str) -> Path:
    """The same spec as a teacher, in root/teachers/ (a third folder)."""
    folder = root / "teachers"
    folder.mkdir(parents=True, exist_ok=True)
    if name == "derived":
        write_spec(root, "derived")  # its base and data in root/lib/: the same "../lib/" import
    path = folder / f"{name}.arch"
    text = SPECS[name]
    path.write_text(text)
    return path
