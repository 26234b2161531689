"""strata.serve.compare: two specs' numbers and structure, row by row."""

from __future__ import annotations

from pathlib import Path

from strata.serve.compare import diff
from strata.serve.render import Checked

SPECS = Path(__file__).resolve().parents[2] / "specs"


def view(name: str) -> dict:
    p = SPECS / name
    return Checked.of(p.read_text(), str(p), SPECS).view(set(), after=False)


def test_llama_7b_against_70b():
    d = diff(view("llama2_7b.arch"), view("llama2_70b.arch"))
    params = d["totals"][0]
    assert (params["a"], params["b"]) == (6_738_415_616, 68_976_648_192)
    by_module = {(r["a"] or r["b"])[0].strip(): r for r in d["rows"]}
    assert by_module["decoder.pos"]["status"] == "same"
    layers = by_module["decoder.layers × 32"]
    assert layers["status"] == "changed" and layers["b"][0] == "decoder.layers × 80"
    assert [r["status"] for r in d["rows"]].count("added") == 0


def test_a_module_only_one_side_has():
    a = view("gpt2.arch")
    b = {**a, "rows": [r for r in a["rows"] if r[0] != "decoder.wpe"]}
    statuses = {r["a"][0]: r["status"] for r in diff(a, b)["rows"] if r["a"]}
    assert statuses["decoder.wpe"] == "removed" and statuses["decoder.wte"] == "same"
    assert [r["status"] for r in diff(b, a)["rows"]].count("added") == 1
