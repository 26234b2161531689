"""Compile time against depth: build the IR, run fuse_qkv + fuse_mlp + low_rank,
generate the source, and build the module (on the meta device: structure only)
for 20, 200 and 2,000 layers.  Every step is one pass over the graph (the passes
put their replacements in place in one reorder), so the time per layer stays flat.

    python benchmarks/deep.py [--depths 20 200 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from strata.backends.torch import generate_source  # noqa: E402
from strata.compiler import build_text  # noqa: E402

SPEC = """model deep {{
  d = 64
  block layer {{
    residual {{ layernorm; attention(4, causal=true) }}
    residual {{ layernorm; mlp(4 * d, act=swiglu) }}
  }}
  stack decoder(tokens) {{ embedding(100, d) as wte; repeat({n}) layer as h; layernorm; lm_head(tie=wte) }}
}}
passes {{ fuse_qkv; fuse_mlp; low_rank(8, on="mlp") }}"""


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[20, 200, 2000])
    return ap


def main() -> None:
    args = parser().parse_args()
    import strata.api

    strata.api.compile(SPEC.format(n=2), device="meta")  # warm up: import torch, first exec
    from strata.passes import apply_passes

    print(f"{'layers':>7} {'build IR':>9} {'passes':>8} {'codegen':>9} {'compile (meta)':>15} {'per layer':>10}")
    for n in args.depths:
        spec = SPEC.format(n=n)
        t0 = time.perf_counter()
        g = build_text(spec)
        t1 = time.perf_counter()
        g = apply_passes(g)
        t2 = time.perf_counter()
        generate_source(g)
        t3 = time.perf_counter()
        strata.api.compile(spec, device="meta")
        t4 = time.perf_counter()
        print(f"{n:7d} {t1 - t0:8.2f}s {t2 - t1:7.2f}s {t3 - t2:8.2f}s {t4 - t3:14.2f}s "
              f"{1e3 * (t4 - t0) / n:8.2f}ms")


if __name__ == "__main__":
    main()
