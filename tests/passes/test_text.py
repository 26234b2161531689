"""Passes as text outside a spec (--pass, compile(passes=[...])), the registry
built from the pass modules, and `strata passes`."""

from __future__ import annotations

import pytest

from tests.passes.helpers import GPT, spec_file

from strata.cli import main
from strata.compiler import build_file
from strata.errors import SpecError
from strata.passes import REGISTRY, make_pass
from strata.passes.text import parse_pass_texts, pass_text


@pytest.fixture()
def gpt(tmp_path):
    return spec_file(tmp_path, GPT)


def test_registry_is_the_pass_modules():
    from strata.dsl.registry import PASSES

    assert list(PASSES) == list(REGISTRY)
    for name, cls in REGISTRY.items():
        assert PASSES[name].options is cls.options and PASSES[name].positional == cls.positional
        assert cls.__module__ == f"strata.passes.{name}"  # one file per pass


@pytest.mark.parametrize("text", ["fuse_qkv", 'quantize(int8_dynamic, on="mlp")', "quantize(int4_weight, group_size=64)",
                                  'prune(0.5, method="2:4")', "prune(0.3, method=structured, scope=layer)",
                                  'low_rank(energy=0.9, on="decoder.h.*.mlp.up", activation_aware=true)',
                                  "lora(8, alpha=16, dropout=0.1)", 'distill("t.arch", temperature=3.0)'])
def test_pass_text_round_trips(gpt, tmp_path, monkeypatch, text):
    (tmp_path / "t.arch").write_text(GPT)
    monkeypatch.chdir(tmp_path)  # a file a flag names is relative to the current folder
    entry, = parse_pass_texts([text], build_file(gpt))
    again, = parse_pass_texts([pass_text(entry["name"], entry["options"])], build_file(gpt))
    assert again["options"] == entry["options"]
    assert make_pass(entry["name"], entry["options"]).label() == pass_text(entry["name"], entry["options"])


@pytest.mark.parametrize("text, where, message", [
    ("quantize(int9)", 10, "'int9' is not a valid scheme"),
    ('quantize(int8_dynamic, on="mlpp")', 27, 'selector "mlpp" matches no module'),
    ('quantize(int8_dynamic', 9, "this '(' is not closed"),
    ("prunee(0.5)", 1, "unknown pass 'prunee'"),
    ("prune(1.5)", 7, "amount"),
])
def test_mistakes_are_located_in_the_text(gpt, text, where, message):
    with pytest.raises(SpecError) as e:
        parse_pass_texts([text], build_file(gpt))
    d = e.value.diagnostics[0]
    assert (d.span.file, d.span.line, d.span.col) == ("--pass", 1, where) and message in d.message
    assert text in str(e.value)  # the line is shown with its caret


def test_one_pass_per_flag(gpt):
    with pytest.raises(SpecError, match="a pass is one line"):
        parse_pass_texts(["fuse_qkv }\nmodel x {"], build_file(gpt))


def test_cli_pass_on_summary_compile_diagram(gpt, capsys, tmp_path):
    assert main(["summary", str(gpt), "--pass", "prune(0.5, method=structured)"]) == 0
    out = capsys.readouterr().out
    assert "prune (structured): 256 of 512 MLP neurons removed" in out
    assert main(["compile", str(gpt), "--pass", 'quantize(int8_dynamic, on="mlp")']) == 0
    src = capsys.readouterr().out
    assert "def quantize(model, torch_compile=False, packed=None):" in src and f"from {gpt}" in src
    assert main(["diagram", str(gpt), "--pass", 'quantize(int8_dynamic, on="mlp")', "--level", "block"]) == 0
    assert "int8" in capsys.readouterr().out
    assert main(["summary", str(gpt), "--pass", "quantize(int9)"]) == 1
    err = capsys.readouterr().err
    assert "--pass:1:10: error: 'int9' is not a valid scheme" in err and "1 | quantize(int9)" in err


def test_summary_prints_the_compiled_weight_bytes(gpt, capsys):
    assert main(["summary", str(gpt)]) == 0
    plain = capsys.readouterr().out
    assert main(["summary", str(gpt), "--pass", "quantize(int8_weight)"]) == 0
    out = capsys.readouterr().out
    assert "as compiled (quantized linears)" in out and "as compiled" not in plain
    import json

    assert main(["summary", str(gpt), "--json", "--pass", "quantize(int8_weight)"]) == 0
    s = json.loads(capsys.readouterr().out)
    n_lin = 2 * (4 * 64 * 64 + 2 * 64 * 256)
    rows = 2 * (4 * 64 + 256 + 64)
    biases = 2 * (4 * 64 + 256 + 64)
    # int8 weights (4 to an int32), an fp32 scale a row, an int64 [2] shape a linear (compressed-tensors'
    # pack-quantized), fp32 biases
    assert s["memory"]["weights_bytes"] == (s["parameters"] - n_lin - biases) * 4 + n_lin + rows * 4 + biases * 4 \
        + 12 * 16
    assert s["applied"][0]["report"].startswith("quantize (int8_weight): 12 linears")


def test_strata_passes_lists_every_pass_and_option(capsys):
    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    for name, cls in REGISTRY.items():
        assert f"{name}(" in out
        for option in cls.options.model_fields:
            assert option in out


def test_front_end_with_passes_stays_torch_free(gpt):
    """summary and diagram run the passes on the graph alone; the registry is read
    without importing the passes until a pass is looked up."""
    import subprocess
    import sys

    code = ("import sys; import strata.dsl.schema, strata.dsl.docgen; assert 'strata.passes' not in sys.modules; "
            "from strata.cli import main; "
            f"main(['summary', {str(gpt)!r}, '--pass', 'prune(0.5, method=structured)', '--pass', "
            "'quantize(int4_weight, group_size=64)', '--pass', 'low_rank(8, on=\"mlp\")', '--pass', 'lora(4)']); "
            f"main(['diagram', {str(gpt)!r}, '--pass', 'fuse_qkv']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
