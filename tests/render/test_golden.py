"""The golden-file helper: a missing file fails, a different one fails, refresh writes."""

from __future__ import annotations

import pytest

from tests.render.golden import check_golden


def test_missing_golden_file_fails_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("STRATA_REFRESH_GOLDEN", raising=False)
    with pytest.raises(AssertionError, match="missing golden file"):
        check_golden("d/new.mmd", "text", root=tmp_path)
    assert not (tmp_path / "d").exists()


def test_different_text_fails(tmp_path, monkeypatch):
    monkeypatch.delenv("STRATA_REFRESH_GOLDEN", raising=False)
    (tmp_path / "a.gv").write_text("old")
    with pytest.raises(AssertionError, match="differs from its golden file"):
        check_golden("a.gv", "new", root=tmp_path)
    check_golden("a.gv", "old", root=tmp_path)


def test_refresh_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_REFRESH_GOLDEN", "1")
    check_golden("d/a.gv", "new", root=tmp_path)
    assert (tmp_path / "d" / "a.gv").read_text() == "new"
