"""The source of the definitions in `runtime.py` and `runtime_passes.py`, for
copying into generated files.

Read with `ast` from the file itself (no import, so `strata compile` never
imports torch): what a generated file carries is exactly the tested code.

    >>> source("make_mask").splitlines()[0]
    'def make_mask(T, start_pos, device, causal=True, window=None, padding=None):'
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

__all__ = ["HEADER", "ORDER", "source"]

# The imports every generated file starts with (runtime.py has the same).
HEADER = """\
import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
"""

# runtime.py, then runtime_passes.py (what the passes lower to), then the
# quantization arithmetic the quantize step runs (strata/passes/qparams.py)
FILES = ("runtime.py", "runtime_passes.py", "../../passes/qparams.py")


@functools.lru_cache(maxsize=1)
def _definitions() -> dict[str, str]:
    out = {}
    for name in FILES:
        path = Path(__file__).parent / name
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, str(path))
        lines = text.splitlines(keepends=True)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
                out[node.name] = "".join(lines[start:node.end_lineno])
    return out


# The order definitions appear in a generated file: the files' own (a helper is
# added by writing it there).
ORDER = tuple(_definitions())


def source(name: str) -> str:
    """The source text of runtime definition `name` (decorators included)."""
    return _definitions()[name]
