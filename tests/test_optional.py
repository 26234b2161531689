"""tests/optional.py: only a package that is not installed skips a test."""

from __future__ import annotations

import sys

import pytest

from tests.optional import require


def test_present_package_is_returned():
    assert require("json.decoder").JSONDecoder


def test_absent_package_skips():
    with pytest.raises(pytest.skip.Exception, match="no_such_package_xyz is not installed"):
        require("no_such_package_xyz.sub")


def test_import_error_inside_an_installed_package_fails(tmp_path, monkeypatch):
    pkg = tmp_path / "brokenpkg_for_optional"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="missing_dependency_xyz"):
        require("brokenpkg_for_optional")
    sys.modules.pop("brokenpkg_for_optional", None)


def test_strata_is_never_optional():
    with pytest.raises(ValueError, match="part of strata"):
        require("strata.api")


def test_no_test_uses_importorskip():
    """pytest.importorskip would turn a broken import into a skip: use tests.optional.require."""
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    users = [str(p.relative_to(tests)) for p in tests.rglob("*.py")
             if p.name != "optional.py" and p != Path(__file__).resolve()
             and "pytest.importorskip(" in p.read_text(encoding="utf-8")]
    assert not users, f"use tests.optional.require instead of pytest.importorskip in {users}"
