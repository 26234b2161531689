"""Imports and `extends` (strata/compiler/resolve.py): what a model sees from its
file, its imports and its bases, and in which order later definitions win.
(Located errors for imports and extends: tests/compiler/test_errors.py.)"""

from __future__ import annotations

import pytest

from strata.compiler import build_file, resolve
from strata.compiler.resolve import resolve_model
from strata.dsl import load_text, read_source
from strata.errors import SpecError, UsageError


def resolved(path, model=None):
    text = read_source(path)
    spec = load_text(text, str(path))
    spec.path = str(path)
    return resolve_model(spec, {str(path): text}, model)


def write(folder, name, text):
    p = folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_extends_chain_merges_base_first_and_derived_wins(tmp_path):
    p = write(tmp_path, "m.arch", """
model base {
  d = 8
  depth = 2
  block layer { residual { layernorm; mlp(4*d) } }
  stack s(t) { embedding(10, d) as e; repeat(depth) layer as h; lm_head(tie=e) }
}
model mid extends base { d = 16 }
model top extends mid {
  depth = 3
  block layer { residual { rmsnorm; mlp(2*d) } }
}
""")
    r = resolved(p)
    assert r.name == "top" and r.model.name == "top"
    assert [(v.name, v.value.value) for v in r.vars] == [("d", 16), ("depth", 3)]
    assert [s.name for s in r.stacks] == ["s"]  # the base's stack, inherited
    assert r.blocks["layer"].span.line == 11  # the derived block replaces the base's
    g = build_file(p)
    assert "s.h.2.norm" in g and g.nodes["s.h.0.mlp.up"]["params"]["weight"] == (32, 16)


def test_choose_a_model_by_name_else_the_last(tmp_path):
    p = write(tmp_path, "m.arch", "model a { d = 1 }\nmodel b { d = 2 }\n")
    assert resolved(p).name == "b" and resolved(p, "a").name == "a"
    with pytest.raises(UsageError, match="no model 'c'.*models: a, b"):
        resolved(p, "c")


def test_imports_whole_file_named_and_transitive(tmp_path):
    write(tmp_path, "lib/norms.arch", "block pre { layernorm }\n")
    write(tmp_path, "lib/layers.arch", 'import "norms.arch"\nblock layer { pre; mlp(8) }\n'
                                       "block unused { rmsnorm }\n")
    p = write(tmp_path, "m.arch", 'from "lib/layers.arch" import layer\nimport "lib/norms.arch"\n'
                                  "model m { stack s(t) { embedding(10, 4); layer } }\n")
    r = resolved(p)
    assert set(r.blocks) == {"layer", "pre"}  # a named import brings only that name
    assert "s.layer.pre.ln" in build_file(p)


def test_a_file_imported_twice_is_read_once(tmp_path, monkeypatch):
    write(tmp_path, "common.arch", "block norm { layernorm }\n")
    write(tmp_path, "a.arch", 'import "common.arch"\nblock a { norm }\n')
    write(tmp_path, "b.arch", 'import "common.arch"\nblock b { norm }\n')
    p = write(tmp_path, "m.arch", 'import "a.arch"\nimport "b.arch"\n'
                                  "model m { stack s(t) { embedding(10, 4); a; b } }\n")
    reads = []
    monkeypatch.setattr(resolve, "read_source", lambda path: reads.append(path) or read_source(path))
    assert set(resolved(p).blocks) == {"norm", "a", "b"}
    assert sorted(x.name for x in reads) == ["a.arch", "b.arch", "common.arch"]
    g = build_file(p)
    assert "s.a.norm.ln" in g and "s.b.norm.ln" in g


def test_later_definitions_win_file_over_import_model_over_file(tmp_path):
    write(tmp_path, "lib.arch", "block layer { layernorm }\n")
    p = write(tmp_path, "m.arch", 'import "lib.arch"\nblock layer { rmsnorm }\n'
                                  "model m {\n  block layer { dropout(0.1) }\n"
                                  "  stack s(t) { embedding(10, 4); layer }\n}\n")
    assert resolved(p).blocks["layer"].span.line == 4
    assert "s.layer.drop" in build_file(p)


def test_imported_models_are_visible_and_buildable_by_name(tmp_path):
    write(tmp_path, "zoo.arch", "model small { stack s(t) { embedding(10, 4) as e; lm_head(tie=e) } }\n")
    p = write(tmp_path, "m.arch", 'import "zoo.arch"\nmodel mine { stack s(t) { embedding(10, 8) } }\n')
    assert resolved(p).models == ("small", "mine")
    assert build_file(p, model="small").graph["parameters"] == 40


def test_extends_a_model_from_an_imported_file(tmp_path):
    write(tmp_path, "zoo.arch", "model small { d = 4\n stack s(t) { embedding(10, d) as e; lm_head(tie=e) } }\n")
    p = write(tmp_path, "m.arch", 'import "zoo.arch"\nmodel wide extends small { d = 16 }\n')
    assert build_file(p).graph["parameters"] == 160


def test_importing_a_model_that_extends_another(tmp_path):
    write(tmp_path, "zoo.arch", "model base { d = 4\n stack s(t) { embedding(10, d) as e; lm_head(tie=e) } }\n"
                                "model wide extends base { d = 16 }\n")
    p = write(tmp_path, "m.arch", 'from "zoo.arch" import wide\nmodel mine extends wide { d = 32 }\n')
    assert build_file(p).graph["parameters"] == 320


def test_extends_cycle_is_an_error(tmp_path):
    p = write(tmp_path, "m.arch", "model a extends b { d = 1 }\nmodel b extends a { d = 2 }\n")
    with pytest.raises(SpecError, match="'extends' cycle: b -> a -> b"):
        resolved(p)


SMALL = "model teacher { d = 8\n stack s(t) { embedding(10, d) as e; attention(2); lm_head(tie=e) } }\n"


def _passes(p, model=None):
    return [x["name"] for x in build_file(p, model=model).graph["passes"]]


def test_a_teacher_of_the_same_file_builds_without_its_students_passes(tmp_path):
    """The file's passes distill from `teacher`: they are the student's.  Building the
    teacher applied them to it too and stopped at 'a model cannot be its own teacher'."""
    p = write(tmp_path, "m.arch", SMALL + "model student extends teacher { d = 4 }\n"
              "passes {\n  fuse_qkv\n  distill(teacher, weights=\"runs/teacher\")\n}\n")
    assert _passes(p) == _passes(p, "student") == ["fuse_qkv", "distill"]
    assert _passes(p, "teacher") == []
    from strata.passes import apply_passes

    d = apply_passes(build_file(p, model="student")).graph["distill"]  # the teacher it draws
    assert (d["teacher_name"], d["teacher_parameters"]) == ("teacher", build_file(p, model="teacher").graph["parameters"])
    kw = write(tmp_path, "kw.arch", SMALL + "model student { d = 4\n stack s(t) { embedding(10, d) } }\n"
               'passes { distill(teacher="teacher") }\n')  # keyword, string; a separate student
    assert _passes(kw, "teacher") == [] and _passes(kw) == ["distill"]


def test_an_imported_teacher_keeps_its_own_files_passes(tmp_path):
    write(tmp_path, "t.arch", SMALL + "passes { fuse_qkv }\n")
    p = write(tmp_path, "s.arch", 'import "t.arch"\nmodel student extends teacher { d = 4 }\n'
              "passes { distill(teacher) }\n")
    assert _passes(p) == ["distill"] and _passes(p, "teacher") == ["fuse_qkv"]


def test_a_file_whose_one_model_distills_from_itself_is_still_an_error(tmp_path):
    p = write(tmp_path, "m.arch", SMALL + "passes { distill(teacher) }\n")
    with pytest.raises(SpecError, match="a model cannot be its own teacher"):
        build_file(p)
