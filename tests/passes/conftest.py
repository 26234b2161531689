"""The models most pass tests start from, made once per test module: a spec
file (tests/passes/helpers.py's LLAMA or GPT) and random weights for it."""

from __future__ import annotations

import pytest


def _spec_and_weights(tmp_path_factory, name: str):
    from tests.passes import helpers  # here, not above: it needs torch, and some pass tests do not

    folder = tmp_path_factory.mktemp(name.lower())
    spec = helpers.spec_file(folder, getattr(helpers, name))
    return spec, helpers.weights(folder, spec)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """(spec path, weights path) of helpers.LLAMA: GQA, rotary, SwiGLU, untied head."""
    return _spec_and_weights(tmp_path_factory, "LLAMA")


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    """(spec path, weights path) of helpers.GPT: learned positions, biases, GELU, tied head."""
    return _spec_and_weights(tmp_path_factory, "GPT")
