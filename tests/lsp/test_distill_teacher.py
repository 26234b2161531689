"""A student that distills from a teacher spec, as the editor checks it on each
keystroke: the check does not build the teacher (the selector test runs the
passes before a selector as a check), and what it does read of the teacher
file — that it is there — is read afresh each time, as is what a build
records of it (its name and parameter count)."""

from __future__ import annotations

from pathlib import Path

import pytest

import strata.passes.distill as distill
from strata.compiler import build_file
from strata.lsp.features import Document
from strata.passes import apply_passes

ROOT = Path(__file__).resolve().parents[2]
TEACHER = (ROOT / "specs" / "tiny_shakespeare.arch").read_text()
# quantize names what fuse_qkv makes: the check runs distill and fuse_qkv to find it
STUDENT = TEACHER.replace("model tiny_shakespeare", "model student").replace("d     = 128", "d     = 64") \
    .replace("passes {\n  fuse_qkv\n}\n", 'passes {\n  distill("teacher.arch")\n  fuse_qkv\n'
             '  quantize(int8_dynamic, on="decoder.h.*.attn.qkv")\n}\n')


@pytest.fixture
def student(tmp_path) -> Path:
    (tmp_path / "teacher.arch").write_text(TEACHER)
    path = tmp_path / "student.arch"
    path.write_text(STUDENT)
    assert "distill(" in STUDENT
    return path


def test_the_editors_check_does_not_build_the_teacher(student, monkeypatch):
    built = []
    monkeypatch.setattr(distill, "build_file", lambda *a, **k: built.append(a) or pytest.fail("built"))
    doc = Document.of(STUDENT, str(student))
    assert not doc.analysis.diagnostics and built == []


def test_an_edit_to_the_teacher_is_seen(student):
    teacher = student.parent / "teacher.arch"
    assert not Document.of(STUDENT, str(student)).analysis.diagnostics
    first = apply_passes(build_file(student)).graph.distill
    assert (first["teacher_name"], first["teacher_parameters"]) == ("tiny_shakespeare", 809_856)
    teacher.write_text(TEACHER.replace("depth = 4", "depth = 2").replace("tiny_shakespeare", "smaller"))
    again = apply_passes(build_file(student)).graph.distill
    assert again["teacher_name"] == "smaller" and again["teacher_parameters"] < 809_856
    teacher.unlink()
    gone = Document.of(STUDENT, str(student)).analysis.diagnostics
    assert [d.message for d in gone] == [f"distill: teacher spec 'teacher.arch' not found at {teacher}"]
