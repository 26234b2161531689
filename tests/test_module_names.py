"""One name, one module: no two modules of the package share a file name, so a
name in a traceback, a docs page or a review says which file it is."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "strata"


def test_no_two_modules_share_a_name():
    where = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        # __init__ / __main__ name their package; remote_code is copied into
        # Hugging Face folders, where it is the only strata code.
        if path.name not in {"__init__.py", "__main__.py"} and "remote_code" not in path.parts:
            where[path.stem].append(path.relative_to(PACKAGE).as_posix())
    shared = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not shared, f"modules sharing a name: {shared}"
