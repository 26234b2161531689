"""Session fixtures: tiny Hugging Face checkpoints saved with save_pretrained,
and their strata imports."""

from __future__ import annotations

import pytest

from tests.interop.models import make_model


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory):
    """hf_folder(name) -> (folder written by save_pretrained, the HF model)."""
    cache = {}

    def get(name: str, **save_kw):
        key = (name, tuple(sorted(save_kw.items())))
        if key not in cache:
            model = make_model(name)
            folder = tmp_path_factory.mktemp(name)
            model.save_pretrained(folder, **save_kw)
            cache[key] = (folder, model)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def imported(hf_folder, tmp_path_factory):
    """imported(name) -> (arch path, weights path, HF model)."""
    from strata.interop import import_hf

    cache = {}

    def get(name: str):
        if name not in cache:
            folder, model = hf_folder(name)
            arch, weights = import_hf(folder, tmp_path_factory.mktemp(f"{name}_out"))
            cache[name] = (arch, weights, model)
        return cache[name]

    return get
