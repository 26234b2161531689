"""Graphviz backend: golden .gv files, every dot source rendered by `dot -Tsvg`
with empty stderr, HTML-escaped hostile names, the missing-dot message."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from strata.backends.diagram import graphviz as gv
from strata.backends.diagram.graphviz import DotMissing, render_bytes, to_dot
from strata.passes import apply_passes
from tests.render.golden import check_golden
from tests.render.specs import LEVELS, SPECS, graph, hostile_graph, variants_graph

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="the Graphviz `dot` binary is not installed "
                                      "(apt-get install graphviz)")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("spec", SPECS)
def test_golden(spec, level):
    check_golden(f"diagrams/{spec}.{level}.gv", to_dot(graph(spec), level))


@pytest.mark.parametrize("level", ["model", "block"])
def test_golden_after_passes(level):
    g = apply_passes(graph("transformer_seed"))
    check_golden(f"diagrams/transformer_seed.after_passes.{level}.gv", to_dot(g, level))


def _sources():
    out = {f"{s}.{lv}": to_dot(graph(s), lv) for s in SPECS for lv in LEVELS}
    for lv in LEVELS:
        out[f"hostile.{lv}"] = to_dot(hostile_graph(), lv, direction="LR")
        out[f"hostile.{lv}.unfold"] = to_dot(hostile_graph(), lv, unfold=True)
    for lv in LEVELS:
        out[f"variants.{lv}"] = to_dot(variants_graph(), lv)
        out[f"variants.{lv}.unfold"] = to_dot(variants_graph(), lv, unfold=True)
    seed = apply_passes(graph("transformer_seed"))
    out.update({f"seed.{lv}": to_dot(seed, lv) for lv in LEVELS})
    for spec in ("mistral_7b", "tiny_shakespeare", "llama2_70b"):
        out[f"{spec}.block"] = to_dot(graph(spec), "block")
    out["gpt2.op.unfold"] = to_dot(graph("gpt2"), "op", unfold=True)
    return out


@needs_dot
def test_dot_renders_every_diagram_without_warnings():
    # One dot process for all graphs: concatenated digraphs render as one multi-graph input.
    sources = _sources()
    r = subprocess.run(["dot", "-Tsvg"], input="\n".join(sources.values()).encode(),
                       capture_output=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()
    assert r.stdout.count(b"<svg") == len(sources)


def test_hostile_names_are_html_escaped():
    src = to_dot(hostile_graph(), "op")
    assert "&quot;q&quot;" in src and "&lt;b&gt;" in src and "&amp;amp;" in src
    assert "<br/>" not in src.replace("<BR/>", "")  # the teacher's <br/> is text, not markup
    assert "名前" in src


def test_clusters_per_scope():
    src = to_dot(graph("transformer_base"), "op")
    assert "subgraph cluster_c0" in src and "layers: encoder_layer × 6" in src
    assert "Encoder-Decoder Attention · cross_attn" in src


def test_missing_dot_gives_install_hint(monkeypatch):
    monkeypatch.setattr(gv.shutil, "which", lambda name: None)
    with pytest.raises(DotMissing, match="apt-get install graphviz.*brew install graphviz"):
        render_bytes("digraph { a }", "svg")


@needs_dot
def test_render_png():
    assert render_bytes(to_dot(graph("gpt2"), "model"), "png").startswith(b"\x89PNG")


def test_dot_that_fails_or_runs_too_long_is_one_line(monkeypatch, tmp_path, capsys):
    """dot out of memory on a huge unfolded model (or past its timeout) once ended
    in RuntimeError / TimeoutExpired: an internal error of the command line."""
    from strata.backends.diagram.graphviz import DotFailed
    from strata.cli import main

    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\ncat > /dev/null\necho 'dot: out of memory' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(gv.shutil, "which", lambda name: str(fake))
    with pytest.raises(DotFailed, match=r"could not draw the diagram \(dot: out of memory\); a smaller"):
        render_bytes("digraph { a }", "svg")
    assert main(["diagram", "specs/gpt2.arch", "--unfold", "-o", str(tmp_path / "g.svg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strata: error: dot (Graphviz) could not draw") and len(err.splitlines()) == 1
    assert not (tmp_path / "g.svg").exists()
    fake.write_text("#!/bin/sh\nsleep 5\n")
    with pytest.raises(DotFailed, match="did not finish drawing in 0.5 s"):
        render_bytes("digraph { a }", "svg", timeout=0.5)
