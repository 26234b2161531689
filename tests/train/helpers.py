"""Tiny specs, data and runners shared by the training tests."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRATA = [sys.executable, "-m", "strata"]

# A 2-layer char-level GPT (vocab 128 holds every character of the test texts).
GPT = """\
model tiny_gpt {
  d = 32
  block layer {
    residual { layernorm; attention(4, causal=true, dropout=0.0) }
    residual { layernorm; mlp(4 * d) }
  }
  stack decoder(tokens) {
    embedding(128, d) as wte
    position(learned, 32) as wpe
    repeat(2) layer as h
    layernorm as ln_f
    lm_head(tie=wte)
  }
}
passes { fuse_qkv }
train {
  batch = 8
  context = 16
  steps = 30
  optimizer = adamw(lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
  schedule = cosine(warmup=5, min_lr=3e-4)
  grad_clip = 1.0
  eval_every = 10
  eval_steps = 2
}
"""

BERT = """\
model tiny_bert {
  d = 32
  block layer {
    residual { attention(4) }
    layernorm as attention_norm
    residual { mlp(64) }
    layernorm as output_norm
  }
  stack encoder(tokens) {
    embedding(128, d) as word_embeddings
    position(learned, 32) as position_embeddings
    token_types(2) as token_type_embeddings
    layernorm(eps=1e-12) as embeddings_norm
    repeat(2) layer as layer
    HEADS
  }
}
train { batch = 8  context = 24  steps = 30  optimizer = adamw(lr=3e-3)  eval_every = 15  eval_steps = 2 }
"""
BERT_PRETRAIN = BERT.replace("HEADS", "branch { pooler; nsp_head } as nsp\n    mlm_head(tie=word_embeddings)")
BERT_CLASSIFY = BERT.replace("tiny_bert", "tiny_cls").replace("HEADS", "pooler\n    classifier(3)")

SEQ2SEQ = """\
model tiny_s2s {
  vocab = 128
  d = 32
  block enc { residual { attention(4) } layernorm as n1  residual { mlp(64) } layernorm as n2 }
  block dec {
    residual { attention(4, causal=true) } layernorm as n1
    residual { cross_attention(4, memory) } layernorm as n2
    residual { mlp(64) } layernorm as n3
  }
  stack encoder(src) {
    embedding(vocab, d) as embed; position(sinusoidal, 64); repeat(2) enc as layers; layernorm as norm
  }
  stack decoder(tgt, memory = encoder) {
    embedding(vocab, d, tie=encoder.embed) as embed; position(sinusoidal, 64)
    repeat(2) dec as layers; layernorm as norm; lm_head(tie=encoder.embed)
  }
}
train { batch = 8  context = 24  steps = 40  optimizer = adamw(lr=3e-3)  eval_every = 20  eval_steps = 2 }
"""

WORDS = "the cat dog sat on a mat ran far big small red blue and".split()


def text(n_words: int = 3000, seed: int = 0) -> str:
    """Simple repetitive English-like text a tiny model learns in a few steps."""
    r = random.Random(seed)
    lines = []
    while sum(len(x.split()) for x in lines) < n_words:
        lines.append(" ".join(r.choice(WORDS) for _ in range(r.randint(3, 9))) + ".")
    return "\n".join(lines) + "\n"


def write(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


def pairs_jsonl(path: Path, n: int = 300) -> Path:
    r = random.Random(1)
    with open(path, "w") as f:
        for _ in range(n):
            s = " ".join(r.choice(WORDS) for _ in range(r.randint(2, 5)))
            f.write(json.dumps({"source": s, "target": s.upper()}) + "\n")
    return path


def labels_jsonl(path: Path, n: int = 300) -> Path:
    r = random.Random(2)
    with open(path, "w") as f:
        for _ in range(n):
            k = r.randrange(3)
            s = " ".join([("cat", "dog", "mat")[k]] * r.randint(1, 3)
                         + [r.choice(WORDS[3:]) for _ in range(r.randint(1, 4))])
            f.write(json.dumps({"text": s, "label": k}) + "\n")
    return path


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir: Path) -> list[tuple]:
    return [(r["step"], r.get("train_loss"), r.get("val_loss")) for r in metrics(run_dir)]


def cli(*args, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """`strata ARGS` in a real subprocess (1 thread each: the machine is shared)."""
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([*STRATA, *map(str, args)], capture_output=True, text=True, env=e,
                          cwd=cwd or ROOT, timeout=timeout)


@pytest.fixture(autouse=True)
def in_the_pairs_project(request, monkeypatch):
    """For a module with a `pair` fixture ((teacher run, student run): the speculative
    decoding tests), imported there: the pair's folder is the working directory, as a
    user's project is.  The student's model.arch names its teacher's spec beside its
    run folder, which strata reads for a run only there (docs/security.md)."""
    if "pair" in request.fixturenames:
        monkeypatch.chdir(request.getfixturevalue("pair")[0].path.parent)
