"""strata.serve.files: the page reads and writes only regular files under the
served folder, whatever name it sends."""

from __future__ import annotations

import os

import pytest

from strata.serve.files import Refused, Root


@pytest.fixture
def root(tmp_path):
    (tmp_path / "m.arch").write_text("model m {}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "n.yaml").write_text("models: {}\n")
    (tmp_path / "out.arch").symlink_to("/etc/passwd")
    (tmp_path / "sub" / "up").symlink_to(tmp_path.parent)
    return Root(tmp_path)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/../../x.arch", "out.arch",
                                  "sub/up/x.arch", "a\0b"])
def test_outside_is_refused(root, name):
    with pytest.raises(Refused, match="outside the served folder"):
        root.read_text(name)


def test_inside_is_read_and_written_atomically(root):
    assert root.read_text("sub/n.yaml") == "models: {}\n"
    root.write_text("m.arch", "model x {}\n")
    assert (root.path / "m.arch").read_text() == "model x {}\n"
    assert not [p for p in os.listdir(root.path) if p.startswith(".")]  # no temporary left


def test_only_specs_are_written(root):
    (root.path / "notes.txt").write_text("x")
    with pytest.raises(Refused, match="only spec files"):
        root.write_text("notes.txt", "y")


def test_a_folder_is_not_a_file(root):
    with pytest.raises(Refused, match="not a regular file"):
        root.read_text("sub")


def test_listing_skips_links_that_leave(root):
    assert root.specs() == ["m.arch", "sub/n.yaml"]


def test_one_file_served_is_the_only_spec(root):
    one = Root(root.path / "m.arch")
    assert one.path == root.path and one.specs() == ["m.arch"]
