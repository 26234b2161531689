"""Golden files: compare text with tests/golden/<path>; STRATA_REFRESH_GOLDEN=1 rewrites them."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def check_golden(rel: str, text: str) -> None:
    path = GOLDEN / rel
    if os.environ.get("STRATA_REFRESH_GOLDEN") == "1" or not path.exists():
        if not path.exists() and os.environ.get("STRATA_REFRESH_GOLDEN") != "1":
            raise AssertionError(f"missing golden file {path}: run with STRATA_REFRESH_GOLDEN=1")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    expected = path.read_text()
    assert text == expected, (f"{rel} differs from its golden file; if the change is intended, "
                              "refresh with STRATA_REFRESH_GOLDEN=1")
