"""strata.serve.render and svg: what the page shows for a spec text, folded
and unfolded, before and after passes, with every mistake located."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from strata.compiler import build_file
from strata.serve.render import Checked
from strata.serve.svg import draw

SPECS = Path(__file__).resolve().parents[2] / "specs"
GPT2 = (SPECS / "gpt2.arch").read_text()


def boxes(svg: str) -> list[str]:
    return re.findall(r'<g class="node[^"]*" data-key="([^"]+)"', svg)


def test_repeat_is_folded_then_every_layer_then_one_layer_open():
    g = build_file(SPECS / "gpt2.arch")
    folded = draw(g, set()).text
    assert "h: layer × 12" in folded
    assert [b for b in boxes(folded) if b.startswith("decoder.h.")][0] == "decoder.h.0.ln_1"
    assert not any(b.startswith("decoder.h.1.") for b in boxes(folded))
    layers = boxes(draw(g, {"decoder.h"}).text)
    assert [b for b in layers if b.startswith("decoder.h.")] == [f"decoder.h.{i}" for i in range(12)]
    one = boxes(draw(g, {"decoder.h", "decoder.h.3"}).text)
    assert "decoder.h.3.attn" in one and "decoder.h.4" in one and "decoder.h.4.attn" not in one


def test_a_stack_closes_to_one_box():
    g = build_file(SPECS / "gpt2.arch")
    assert boxes(draw(g, {"decoder"}).text) == ["decoder"]


def test_layers_that_differ_are_drawn_once_per_variant():
    svg = draw(build_file(SPECS / "gemma2_2b.arch"), set()).text
    assert re.search(r"\[0,2,…,24\] × 13", svg) and re.search(r"\[1,3,…,25\] × 13", svg)


def test_every_mistake_is_located():
    text = GPT2.replace("layernorm as ln_f", "layernrm as ln_f").replace("heads = 12", "heads = 12 +")
    v = Checked.of(text, "gpt2.arch").view(set(), after=False)
    assert not v["ok"] and "svg" not in v
    got = [(d["line"], d["col"], d["message"].split(" (hint")[0]) for d in v["diagnostics"]]
    assert got == [(8, 15, "the line ends after '+'; expected a value"),
                   (22, 5, "unknown component 'layernrm'")]


def test_hover_says_what_the_summary_prints():
    v = Checked.of(GPT2, "gpt2.arch").view(set(), after=False)
    attn = v["info"]["decoder.h.0.attn"]
    row = next(r for r in v["rows"] if r[0].strip() == ".attn")
    assert attn["line"] == 13 and f"parameters: {row[3]} each" in attn["text"]
    assert v["totals"]["parameters"] == 124_439_808


def test_passes_before_and_after():
    c = Checked.of((SPECS / "tiny_shakespeare.arch").read_text(), "t.arch")
    before, after = c.view(set(), after=False), c.view(set(), after=True)
    assert before["passes"] == [{"name": "fuse_qkv", "options": {}, "applied": False, "report": None}]
    assert after["passes"][0]["applied"] and "fused 12 q/k/v projections" in after["passes"][0]["report"]
    assert "fused" not in before["svg"] and "fused" in after["svg"]


def test_what_the_passes_refuse_is_shown_before_and_after_them():
    """A pass after a calibrated quantize was shown only in the after-passes view,
    and only once it was asked for; now it is a diagnostic at the pass in both,
    once, and the model before its passes is still drawn."""
    text = GPT2 + "passes {\n  quantize(int8_static)\n  fuse_qkv\n}\n"  # fuse_qkv on line 28
    c = Checked.of(text, "gpt2.arch")
    before, after = c.view(set(), after=False), c.view(set(), after=True)
    for v in (before, after):
        d, = v["diagnostics"]
        assert (d["line"], d["col"], d["end_line"], d["end_col"], d["severity"]) == (28, 3, 28, 11, "error")
        assert d["message"].startswith("fuse_qkv: it rewrites decoder.h.0.attn.q, ")
        assert d["message"].endswith(" (hint: put quantize last: list fuse_qkv before quantize(int8_static))")
    assert before["ok"] and "svg" in before and before["totals"]["parameters"] == 124_439_808
    assert not after["ok"] and "svg" not in after
    fixed = Checked.of(GPT2 + "passes {\n  fuse_qkv\n  quantize(int8_static)\n}\n", "gpt2.arch")
    assert fixed.view(set(), after=True)["diagnostics"] == [] and fixed.view(set(), after=True)["ok"]


def test_an_import_outside_the_served_folder_is_refused(tmp_path):
    spec = SPECS / "llama2_70b.arch"
    c = Checked.of(spec.read_text(), str(spec), tmp_path)
    assert not c.view(set(), after=False)["ok"]
    assert any(d["line"] == 4 and d["message"].startswith("cannot import 'llama2_7b.arch': outside the served "
                                                          "folder") for d in c.diagnostics), c.diagnostics


def test_a_file_outside_the_served_folder_is_not_read_through_an_import(tmp_path):
    """Its mistakes (the words of /etc/passwd, say) were shown on the page before the import was refused."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.arch").write_text("hunter2:x:0:0 topsecret\nmodel leaked_name { d = 3 }\n")
    (tmp_path / "served").mkdir()
    for spec in ('import "../outside/secret.arch"\nmodel m extends leaked_name { }\n',
                 f'from "{tmp_path}/outside/secret.arch" import nosuch\nmodel m {{ d = 3 }}\n'):
        c = Checked.of(spec, str(tmp_path / "served" / "a.arch"), tmp_path / "served")
        shown = " ".join(d["message"] for d in c.diagnostics)
        assert "outside the served folder" in shown
        assert not any(w in shown for w in ("hunter2", "topsecret", "secret.arch:")), shown


def test_a_teacher_spec_outside_the_served_folder_is_neither_read_nor_looked_for(tmp_path):
    """distill("../outside/t.arch") in a served spec: the view after the passes built that
    file (its model's name and size in the pass report), and the check said whether it was
    there; now it is an error at the pass, the same whether the file is there or not."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "served").mkdir()
    spec = GPT2 + 'passes {\n  distill("../outside/t.arch")\n}\n'
    shown = []
    for there in (True, False):
        if there:
            (tmp_path / "outside" / "t.arch").write_text(GPT2.replace("model gpt2", "model leaked_name"))
        else:
            (tmp_path / "outside" / "t.arch").unlink()
        c = Checked.of(spec, str(tmp_path / "served" / "a.arch"), tmp_path / "served")
        v = c.view(set(), after=True)
        shown.append(" ".join(d["message"] for d in c.diagnostics))
        assert "outside the served folder" in shown[-1], shown[-1]
        assert "leaked_name" not in repr(v)
    assert shown[0] == shown[1]  # nothing said of whether the file is there


def test_never_imports_torch():
    code = ("import sys; from pathlib import Path; from strata.serve.render import Checked; "
            "from strata.serve import app; p = Path('specs/llama2_70b.arch').resolve(); "
            "v = Checked.of(p.read_text(), str(p), p.parent).view({'decoder.h'}, after=True); "
            "assert v['ok'] and v['totals']['parameters'] == 68_976_648_192, v['diagnostics']; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=SPECS.parent)


def test_a_hostile_spec_is_bounded_as_by_the_cli():
    """The same limits as `strata check`: refused before the work, located."""
    text = "model m {\n  stack s(ids) {\n    embedding(10, 8)\n    repeat(10 ** 9) { mlp(8) }\n  }\n}\n"
    t = time.monotonic()
    v = Checked.of(text, "m.arch").view(set(), after=False)
    assert time.monotonic() - t < 5 and not v["ok"]
    assert [(d["line"], "10,000" in d["message"]) for d in v["diagnostics"]] == [(4, True)]


def test_hover_on_a_closed_layer_and_an_add():
    c = Checked.of(GPT2, "gpt2.arch")
    layer = c.view({"decoder.h"}, after=False)["info"]["decoder.h.3"]
    assert layer["parameters"] == 7_087_872 and "**block** (layer)" in layer["text"]
    add = c.view(set(), after=False)["info"]["decoder.h.0.add_1"]
    assert add["text"] == "**add (residual)** `decoder.h.0.add_1`\n\n- output: `[B, T, 768]`"
