"""Golden files: compare text with tests/golden/<path>.

A missing golden file fails like a different one; `STRATA_REFRESH_GOLDEN=1`
(re)writes them, and the diff is then reviewed in git like any other change.
"""

from __future__ import annotations

import os
from pathlib import Path

from strata.io import write_atomic

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def refreshing() -> bool:
    return os.environ.get("STRATA_REFRESH_GOLDEN") == "1"


def check_golden(rel: str, text: str, *, root: Path = GOLDEN) -> None:
    """Assert `text` equals the golden file `root/rel`."""
    path = root / rel
    if refreshing():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
        return
    if not path.is_file():
        raise AssertionError(f"missing golden file {path}: create it with STRATA_REFRESH_GOLDEN=1 "
                             "and review the new file")
    assert text == path.read_text(), (f"{rel} differs from its golden file; if the change is "
                                      "intended, refresh with STRATA_REFRESH_GOLDEN=1")
