"""Optional test dependencies (torch, transformers, safetensors, jsonschema):
skip when one is not installed, fail on anything else.

`pytest.importorskip` also skips when an *installed* module fails to import
(pytest < 9.1: any ImportError; later: a ModuleNotFoundError from anywhere
inside it), which would hide a broken import as a skip.  `require` skips only
when the named package itself, or a parent package of it, is absent.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """Import `module`, or skip the calling test (or test module) when it is not
    installed.  strata's own modules are never optional."""
    if module.split(".")[0] == "strata":
        raise ValueError(f"{module} is part of strata: import it, do not skip without it")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise  # a module missing *inside* an installed package: a real error
        pytest.skip(f"{e.name} is not installed", allow_module_level=True)
