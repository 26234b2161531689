"""Round trips across both surfaces: text -> AST -> YAML -> AST -> text loses nothing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from strata.dsl.formatter import format_expr, format_spec
from strata.dsl.parser import parse
from strata.dsl.yaml_loader import parse_yaml
from strata.dsl.yaml_nodes import parse_expression
from strata.dsl.yaml_writer import to_yaml
from tests.dsl import strategies as S

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(S.exprs)
def test_expression_text_round_trip(e):
    text = format_expr(e)
    assert parse_expression(text) == e
    assert format_expr(parse_expression(text)) == text


@pytest.mark.slow  # 100 random specs through both surfaces: about 6 s
@FAST
@given(S.specs)
def test_text_yaml_text_round_trip(spec):
    text = format_spec(spec)
    from_text = parse(text, "gen.arch")
    assert from_text == spec
    assert format_spec(from_text) == text  # idempotent
    yml = to_yaml(from_text)
    from_yaml = parse_yaml(yml, "gen.yaml")
    assert from_yaml == from_text
    assert format_spec(from_yaml) == text
    assert to_yaml(from_yaml) == yml


# ------------------------------------------------------------- strata convert

def test_convert_both_directions(tmp_path, capsys):
    from strata.cli import main
    from tests.dsl.test_formatter import MESSY

    arch = tmp_path / "m.arch"
    arch.write_text(MESSY)
    yml = tmp_path / "m.yaml"
    assert main(["convert", str(arch), "-o", str(yml)]) == 0
    assert parse_yaml(yml.read_text(), str(yml)) == parse(MESSY)
    back = tmp_path / "back.arch"
    assert main(["convert", str(yml), "-o", str(back)]) == 0
    assert back.read_text() == format_spec(parse(MESSY))
    capsys.readouterr()
    assert main(["convert", str(arch), "--to", "yaml"]) == 0
    assert capsys.readouterr().out == yml.read_text()
    assert main(["convert", str(yml)]) == 0  # default: the other surface
    assert capsys.readouterr().out == back.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.arch", "m.arch", "m.yaml"]


def test_convert_into_another_folder_moves_the_relative_paths(tmp_path, capsys):
    """`convert work/x.arch -o elsewhere/deeper/x.yaml` copied `import "../lib/base.arch"`,
    train data and distill's files as written, so the written file imported a file
    that is not there; they now mean, from the new folder, what they meant."""
    from strata.cli import main

    (tmp_path / "lib").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "lib" / "base.arch").write_text(
        "model base {\n  d = 16\n  stack decoder(tokens) { embedding(40, d) as wte; lm_head(tie=wte) }\n}\n")
    spec = tmp_path / "work" / "x.arch"
    spec.write_text('import "../lib/base.arch"\nmodel x extends base { d = 8 }\n'
                    'passes { distill("../lib/base.arch", weights="runs/t", alpha=0.2) }\n'
                    'train { data = corpus.txt }\n')
    out = tmp_path / "elsewhere" / "deeper" / "x.yaml"
    out.parent.mkdir(parents=True)
    assert main(["convert", str(spec), "-o", str(out)]) == 0
    moved = parse_yaml(out.read_text(), str(out))
    assert moved.imports[0].path == "../../lib/base.arch"
    assert moved.train.items[0].value.value == "../../work/corpus.txt"
    use = moved.passes.items[0]
    assert use.args[0].value == "../../lib/base.arch" and use.kwargs[0].value.value == "../../work/runs/t"
    assert main(["check", str(out)]) == 0
    back = tmp_path / "work" / "y.arch"  # the same folder: as written
    assert main(["convert", str(out), "-o", str(back)]) == 0
    assert 'import "../lib/base.arch"' in back.read_text()
    assert main(["convert", str(spec)]) == 0  # to stdout: as written
    assert "../lib/base.arch" in capsys.readouterr().out


def test_convert_reports_spec_errors(tmp_path, capsys):
    from strata.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  m: {vars: {d: 1, d: 2}}\n")
    out = tmp_path / "out.arch"
    assert main(["convert", str(bad), "-o", str(out)]) == 1
    assert capsys.readouterr().err.startswith(f"{bad}:2:20: error: key 'd' is given twice")
    assert not out.exists()


def test_convert_refuses_to_drop_yaml_comments(tmp_path, capsys):
    from strata.cli import main

    f = tmp_path / "c.yaml"
    f.write_text("# a spec\nmodels: {m: {}}\n")
    assert main(["convert", str(f), "-o", str(tmp_path / "c.arch")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and not (tmp_path / "c.arch").exists()
    assert captured.err.startswith(f"{f}:1:1: error: convert would drop this comment")
    f.write_text("models: {m: {}}\n")
    assert main(["convert", str(f)]) == 0
    assert capsys.readouterr().out == "model m {}\n"


def test_duplicate_names_cannot_be_written_as_yaml():
    import pytest

    from strata.errors import SpecError

    with pytest.raises(SpecError, match="variable 'd' is defined twice"):
        to_yaml(parse("model m { d = 1; d = 2 }"))


def test_a_use_named_comment():
    spec = parse("model m { stack s(t) { comment(1) as c } }")
    assert parse_yaml(to_yaml(spec)) == spec


@pytest.mark.parametrize("value", ['"0o17"', '"2d"', '"0x10"', "on", "yes", "off", "true", "1e3", "0777"])
def test_values_yaml_reads_otherwise_survive_the_yaml_surface(value):
    """A string `0o17` must be written quoted (plain, the loader refuses it); a name
    `on` reads back as the name (YAML 1.1 would read true)."""
    spec = parse(f"model m {{ d = {value} }}")
    assert parse_yaml(to_yaml(spec)) == spec
