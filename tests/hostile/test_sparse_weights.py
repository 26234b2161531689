"""A compressed checkpoint's sparse-bitmask tensors (strata/backends/torch/sparse_packed.py)
are read from a file someone else may have written: values, bitmask, row offsets
and shape that disagree with each other or with the spec are one WeightsError
naming the tensor, checked before a weight the spec's size is made (a shape of
2**40 rows is refused, not allocated)."""

from __future__ import annotations

import pytest
from tests.optional import require

torch = require("torch")
st = require("safetensors.torch")

from strata.api import compile, save_weights
from strata.backends.torch.workflows.compress import compress
from strata.cli import main
from strata.safetensors_file import WeightsError

SPEC = """model w {
  stack s(tokens) { embedding(16, 16) as wte; mlp(32); layernorm; lm_head(tie=wte) }
}
"""
UP = "s.mlp.up"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A compress output whose mlp linears are stored sparse-bitmask."""
    tmp = tmp_path_factory.mktemp("sparse")
    (tmp / "m.arch").write_text(SPEC)
    torch.manual_seed(0)
    save_weights(compile(tmp / "m.arch"), tmp / "w.safetensors")
    compress(tmp / "m.arch", tmp / "w.safetensors", tmp / "out", passes=["prune(0.5)"])
    return tmp / "out"


def _bits(t: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """`t` (a bitmask) with bit (row, col) flipped."""
    t = t.clone()
    t[row, col // 8] ^= 1 << (col % 8)
    return t


CASES = {
    "values_short": (lambda t: {f"{UP}.compressed": t[f"{UP}.compressed"][:-1]}, f"{UP}.compressed is float32"),
    "values_long": (lambda t: {f"{UP}.compressed": torch.cat([t[f"{UP}.compressed"]] * 2)},
                    f"{UP}.compressed is float32"),
    "values_int": (lambda t: {f"{UP}.compressed": t[f"{UP}.compressed"].to(torch.int32)},
                   "the kept weights are floats"),
    "bit_flipped": (lambda t: {f"{UP}.bitmask": _bits(t[f"{UP}.bitmask"], 0, 0)}, f"{UP}.compressed is float32"),
    "bitmask_shape": (lambda t: {f"{UP}.bitmask": t[f"{UP}.bitmask"][:3]}, f"{UP}.bitmask is uint8 \\[3, 2\\]"),
    "bitmask_dtype": (lambda t: {f"{UP}.bitmask": t[f"{UP}.bitmask"].to(torch.int32)}, f"{UP}.bitmask is int32"),
    "offsets_wrong": (lambda t: {f"{UP}.row_offsets": t[f"{UP}.row_offsets"].flip(0).contiguous()},
                      f"{UP}.row_offsets disagree with its bitmask"),
    "offsets_missing": (lambda t: {f"{UP}.row_offsets": None}, f"{UP}.row_offsets is missing"),
    "shape_huge": (lambda t: {f"{UP}.shape": torch.tensor([2 ** 40, 2 ** 40])}, f"{UP}.shape is \\[1099511627776"),
    "shape_2d": (lambda t: {f"{UP}.shape": torch.tensor([[32, 16]])}, f"{UP}.shape is int64 \\[1, 2\\]"),
    "shape_missing": (lambda t: {f"{UP}.shape": None}, f"{UP}.shape is missing"),
    "not_2_of_4": (lambda t: {f"{UP}.compressed": torch.zeros(32, 8),
                              f"{UP}.shape": torch.tensor([[32], [16]])}, "is not 2 of every 4"),
    "no_such_linear": (lambda t: {"s.nope.bitmask": t[f"{UP}.bitmask"].clone()}, "s.nope holds sparse-bitmask weights"),
    "dense_too": (lambda t: {f"{UP}.weight": torch.zeros(32, 16)}, "holds both a dense weight"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_sparse_tensors_are_one_weights_error(folder, tmp_path, case):
    change, message = CASES[case]
    tensors = st.load_file(str(folder / "weights.safetensors"))
    for k, v in change(tensors).items():
        if v is None:
            del tensors[k]
        else:
            tensors[k] = v.contiguous()
    bad = tmp_path / "bad.safetensors"
    st.save_file(tensors, str(bad), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=message) as e:
        compile(folder / "model.arch", weights=bad)
    assert "\n" not in str(e.value)


def test_a_crafted_bitmask_is_one_line_from_the_command_line(folder, tmp_path, capsys):
    tensors = st.load_file(str(folder / "weights.safetensors"))
    tensors[f"{UP}.bitmask"] = _bits(tensors[f"{UP}.bitmask"], 0, 15)  # one kept weight more
    bad = tmp_path / "bad.safetensors"
    st.save_file(tensors, str(bad), metadata={"format": "pt"})
    assert main(["compress", str(folder / "model.arch"), "--weights", str(bad), "--pass", "quantize(int8_dynamic)",
                 "-o", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("strata: error:") and "Traceback" not in err and f"{UP}.compressed" in err
