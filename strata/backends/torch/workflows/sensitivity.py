"""Per-linear sensitivity for quantize(auto): how far the model's next-token
distribution moves when that one linear alone is rounded to a scheme.

    score(linear, scheme) = mean over calibration tokens of KL(p || p_q)

with p the float model's softmax of the logits and p_q the same model with only
that linear's weight replaced by its round-to-nearest value on the scheme's grid
(strata.passes.qparams.rtn: the integers the kernels run).  This is NVIDIA Model
Optimizer's label-free `kl_div` score; it costs one forward of the calibration
rows per (linear, scheme), so at most ROWS rows are read.

The quantize pass reaches it through its PassContext's runner
(`ctx.runner.sensitivity(...)`; workflows/runner.py), as it reaches the
activation statistics: a pass never imports the backend.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from strata.backends.torch.workflows.calibration import model_inputs, plain_model
from strata.passes.qparams import rtn

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["ROWS", "sensitivity"]

ROWS = 8              # calibration rows read per score (a forward each; the scores are relative)
LOGITS = 1 << 23      # logits held per forward, at most (rows x length x vocab doubles)


def _log_probs(net, g, ids):
    """log softmax of the main output's logits, [rows * length, classes] (float64)."""
    out = net(*model_inputs(g, ids))
    if not hasattr(out, "float"):  # several outputs (a dict or a tuple): the main one first
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    out = out.double()  # the differences are small: float32's rounding would show as noise
    return out.reshape(-1, out.shape[-1]).log_softmax(-1)


def sensitivity(g: "nx.MultiDiGraph", state: dict, ids, schemes: dict[str, list[str]], group_size: int
                ) -> tuple[dict[str, dict[str, float]], dict]:
    """({linear: {scheme: mean KL}}, {"rows", "forwards", "seconds"}) for the linears
    and integer schemes in `schemes`, on at most ROWS rows of `ids` (N, T)."""
    started = time.perf_counter()
    net = plain_model(g, state)
    ids = ids[:ROWS]
    with torch.no_grad():
        probe = _log_probs(net, g, ids[:1])
        per = max(1, LOGITS // max(probe.numel(), 1))        # rows per forward within LOGITS
        batches = [ids[i:i + per] for i in range(0, ids.shape[0], per)]
        kl = {n: {s: 0.0 for s in ss} for n, ss in schemes.items()}
        tokens, forwards = 0, 0
        for x in batches:
            ref = _log_probs(net, g, x)
            tokens += ref.shape[0]
            for n, ss in schemes.items():
                mod = net.get_submodule(n)
                w = mod.weight.detach().clone()
                for s in ss:
                    mod.weight.copy_(rtn(w, s, group_size).dequantize(w.dtype))
                    got = _log_probs(net, g, x)
                    kl[n][s] += max(float((ref.exp() * (ref - got)).sum()), 0.0)
                    forwards += 1
                mod.weight.copy_(w)
    scores = {n: {s: v / max(tokens, 1) for s, v in d.items()} for n, d in kl.items()}
    return scores, {"rows": int(ids.shape[0]), "forwards": forwards,
                    "seconds": round(time.perf_counter() - started, 3)}
