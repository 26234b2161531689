"""Executing generated source as a module (strata/backends/torch/loader.py):
registered, inspectable, in tracebacks, one fresh module per call."""

from __future__ import annotations

import inspect
import sys
import traceback

from strata.backends.torch.loader import load_source
from tests.optional import require

SOURCE = '''"""A generated module."""

SIZE = 4


def double(x):
    return 2 * x


def broken():
    return 1 / 0
'''


def test_module_is_registered_and_runs():
    m = load_source(SOURCE, "tiny")
    assert m.double(21) == 42 and m.SIZE == 4
    assert sys.modules[m.__name__] is m and m.__doc__ == "A generated module."


def test_each_call_makes_a_fresh_module():
    a, b = load_source(SOURCE, "tiny"), load_source(SOURCE, "tiny")
    assert a is not b and a.__name__ != b.__name__
    a.SIZE = 5
    assert b.SIZE == 4


def test_source_is_inspectable_and_in_tracebacks():
    m = load_source(SOURCE, "tiny")
    assert inspect.getsource(m.double) == "def double(x):\n    return 2 * x\n"
    try:
        m.broken()
    except ZeroDivisionError:
        text = traceback.format_exc()
    assert "return 1 / 0" in text and m.__file__ in text


def test_any_name_gives_a_valid_module_name():
    for name in ("", "a b/c", "model.v2", "名前", "x; import os"):
        m = load_source("VALUE = 1\n", name)
        assert m.__name__.isidentifier() and m.VALUE == 1


def test_a_compiled_spec_is_built_from_a_loaded_module():
    require("torch")
    from strata.api import compile

    net = compile("model m { stack s(t) { embedding(10, 4) as e; lm_head(tie=e) } }")
    module = sys.modules[type(net).__module__]
    assert module.__file__.startswith("<strata-generated strata_generated_m_")
    assert inspect.getsource(type(net)).startswith("class ")
    assert net.strata_source == "".join(inspect.getsourcelines(module)[0])
