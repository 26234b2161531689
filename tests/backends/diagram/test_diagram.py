"""The entry point (strata/backends/diagram/__init__.py): `diagram()`, the `Diagram`
it returns, and the `strata diagram` command."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from strata.backends.diagram import diagram
from strata.cli import main
from tests.render.specs import ROOT

GPT2 = str(ROOT / "specs" / "gpt2.arch")
SEED = str(ROOT / "specs" / "transformer_seed.arch")


def test_api_object():
    d = diagram(GPT2, level="model")
    assert d.source.startswith("---\ntitle:")
    assert d._repr_markdown_().startswith("```mermaid\n") and d._repr_svg_() is None
    dot = diagram(GPT2, format="dot", level="model")
    assert dot.source.startswith("digraph strata {")
    if shutil.which("dot"):
        assert dot._repr_svg_().lstrip().startswith(("<?xml", "<svg"))


def test_api_save(tmp_path):
    p = diagram(GPT2, format="mermaid").save(tmp_path / "g.mmd")
    assert p.read_text().startswith("---")
    if shutil.which("dot"):
        svg = diagram(GPT2, format="svg").save(tmp_path / "g.svg")
        assert b"<svg" in svg.read_bytes()
    assert [x.name for x in tmp_path.iterdir()] != []
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".")]  # no temp files left


def test_cli_stdout(capsys):
    assert main(["diagram", GPT2, "--format", "markdown", "--level", "model"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("```mermaid\n") and out.rstrip().endswith("```")


def test_cli_formats_and_files(tmp_path, capsys):
    assert main(["diagram", GPT2, "--format", "dot", "--direction", "LR", "-o",
                 str(tmp_path / "g.gv")]) == 0
    assert "rankdir=LR" in (tmp_path / "g.gv").read_text()
    assert main(["diagram", SEED, "--level", "op", "--after-passes", "--unfold", "-o",
                 str(tmp_path / "s.mmd")]) == 0
    assert "Teacher: transformer_base" in (tmp_path / "s.mmd").read_text()
    if shutil.which("dot"):
        assert main(["diagram", GPT2, "-o", str(tmp_path / "g.png")]) == 0  # format from suffix
        assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")


def test_cli_svg_to_stdout_bytes():
    if not shutil.which("dot"):
        pytest.skip("the Graphviz `dot` binary is not installed")
    r = subprocess.run([sys.executable, "-m", "strata.cli", "diagram", GPT2, "--format", "svg",
                        "--level", "model"], capture_output=True, cwd=ROOT, check=False)
    assert r.returncode == 0 and b"<svg" in r.stdout


def test_cli_missing_dot(tmp_path):
    # PATH without dot: a clear message with the install hint, exit code 2, no traceback.
    r = subprocess.run([sys.executable, "-m", "strata.cli", "diagram", GPT2, "--format", "svg",
                        "-o", str(tmp_path / "g.svg")], capture_output=True, text=True, cwd=ROOT,
                       env={"PATH": str(tmp_path)}, check=False)
    assert r.returncode == 2, r.stderr
    assert "apt-get install graphviz" in r.stderr and "brew install graphviz" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "g.svg").exists()


def test_cli_spec_error(tmp_path, capsys):
    bad = tmp_path / "bad.arch"
    bad.write_text("model m { stack s(ids) { embedding(10, 4); atention(2) } }")
    assert main(["diagram", str(bad)]) == 1
    assert "did you mean 'attention'" in capsys.readouterr().err


def test_cli_missing_output_folder(tmp_path, capsys):
    assert main(["diagram", GPT2, "-o", str(tmp_path / "nope" / "g.mmd")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_never_imports_torch():
    code = ("import sys; from strata.backends.diagram import diagram; "
            f"diagram({GPT2!r}, level='op', after_passes=True); "
            f"diagram({GPT2!r}, format='dot'); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_docs_show_the_current_seed_picture():
    from strata.backends.diagram.mermaid import to_mermaid
    from strata.passes import apply_passes
    from tests.render.specs import graph

    text = (ROOT / "docs" / "diagrams.md").read_text()
    assert to_mermaid(apply_passes(graph("transformer_seed")), "model") in text, \
        "docs/diagrams.md is stale: rerun the seed diagram (see docs/diagrams.md)"
    for name in ("gpt2", "llama2_7b", "transformer_base"):
        for level in ("model", "block", "op"):
            assert f"img/{name}.{level}.svg" in text
            assert (ROOT / "docs" / "img" / f"{name}.{level}.svg").exists()
    for png in ("gpt2.block.mermaid", "gpt2.block.graphviz", "llama2_7b.op.mermaid",
                "transformer_seed.model.passes.graphviz", "t5_small.model.LR.mermaid"):
        assert f"img/{png}.png" in text and (ROOT / "docs" / "img" / f"{png}.png").exists()


def test_readme_shows_the_current_gpt2_picture():
    readme = (ROOT / "README.md").read_text()
    assert diagram(GPT2, level="model", format="markdown").markdown() in readme, \
        "README.md is stale: paste `strata diagram specs/gpt2.arch --level model --format markdown`"


def test_cli_missing_graphviz_package(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz -> ImportError
    assert main(["diagram", GPT2, "--format", "dot"]) == 2
    assert "pip install" in capsys.readouterr().err
