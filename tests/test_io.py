"""strata/io.py: the one bounded reader and the atomic writers (most of their
promises are held by tests/hostile/; here what is easiest to see alone)."""

from __future__ import annotations

from strata.io import atomic_folder


def test_atomic_folder_into_an_existing_folder_lands_every_file_written(tmp_path):
    """A file written beside the named ones (ONNX's external data, model.onnx.data)
    once stayed in the temporary folder and was deleted with it when OUT existed."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's")
    (out / "stale.bin").write_text("an earlier run's")
    with atomic_folder(out, ("model.onnx", "stale.bin")) as tmp:
        (tmp / "model.onnx").write_text("graph")
        (tmp / "model.onnx.data").write_text("weights")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt", "model.onnx", "model.onnx.data"]
    assert (out / "model.onnx.data").read_text() == "weights"
    assert (out / "mine.txt").read_text() == "the user's"
    assert not list(tmp_path.glob(".out.*"))
