"""What `strata compress` writes to disk, scheme by scheme: the file against the
float bytes of the layers it quantized, and against the summary's figure.

    python benchmarks/compress_storage.py [--spec specs/tiny_shakespeare.arch] [--passes P ...]

The spec's own initial weights (seed 0; nothing is downloaded) go through
`strata compress` with each scheme below on every linear; for each: the bytes
the quantized (or sparse-stored pruned) linears take in the file against their float (fp32) bytes, the
whole file, the summary's weight bytes against the file's tensor bytes, and
whether the file loaded back computes exactly what the compressed model
computed in memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from strata.api import compile, save_weights
from strata.compiler import build_file
from strata.compiler.cost import analyze
from strata.passes import apply_passes
from strata.backends.torch.workflows.compress import compress
from strata.safetensors_file import read_header, tensor_bytes

ROOT = Path(__file__).resolve().parents[1]
SCHEMES = ["quantize(int8_dynamic)", "quantize(int8_weight)", "quantize(int4_weight, group_size=128)",
           "quantize(int4_weight, group_size=32)", "low_rank(32)", "prune(0.5)"]


def layer_bytes(out: Path) -> tuple[int, int]:
    """(file bytes, fp32 bytes) of the quantized linears' weights, scales and biases,
    or the sparse-stored ones' kept weights, bitmasks, offsets and biases."""
    g = apply_passes(build_file(out / "model.arch"))
    header, _ = read_header(out / "weights.safetensors")
    names = {n for n, d in g.nodes(data=True) if d["attrs"].get("quant_scheme") or f"{n}.bitmask" in header}
    stored = sum(t.end - t.begin for k, t in header.items() if k.rsplit(".", 1)[0] in names)
    floats = sum(4 * sum(torch.Size(s).numel() for s in g.nodes[n]["params"].values()) for n in names)
    return stored, floats


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "specs" / "tiny_shakespeare.arch"))
    ap.add_argument("--passes", nargs="+", default=SCHEMES, help="the schemes to compress with, one each")
    return ap


def main() -> None:
    args = parser().parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        w = tmp / "w.safetensors"
        save_weights(compile(args.spec, passes=[]), w)
        print(f"{Path(args.spec).name}: float file {w.stat().st_size:,} bytes")
        print(f"  {'passes':40} {'layers file/fp32':>17} {'file':>12} {'vs float':>9} "
              f"{'summary = file':>15} {'loaded = memory':>16}")
        for p in args.passes:
            out = tmp / str(abs(hash(p)))
            r = compress(args.spec, w, out, passes=[p]).report
            stored, floats = layer_bytes(out)
            size = (out / "weights.safetensors").stat().st_size
            summary = analyze(apply_passes(build_file(out / "model.arch")))["memory"]["weights_bytes"]
            ratio = f"{stored / floats:.3f}x" if floats else "-"
            print(f"  {p:40} {ratio:>17} {size:>12,} {size / w.stat().st_size:>8.3f}x "
                  f"{str(summary == tensor_bytes(out / 'weights.safetensors')):>15} "
                  f"{str(r['logits']['loaded_equals_in_memory']):>16}")


if __name__ == "__main__":
    main()
