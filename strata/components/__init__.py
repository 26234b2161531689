"""Every component a spec can use, one module per family; each registers its
options, elaboration, PyTorch lowering and diagram title in one `Component`
(see `component_base.py`).  Adding a component = writing it in its family's module (or a
new module listed here) plus its tests; `register(component)` adds one defined
elsewhere (tests/recipes/test_component_recipe.py).

    >>> spec = COMPONENTS["attention"]
    >>> spec.positional, spec.default_name
    (('heads',), 'attn')
    >>> spec.options(heads=12, kv_heads=4).causal
    False
"""

from __future__ import annotations

import strata.components.attention as attention
import strata.components.embeddings as embeddings
import strata.components.feedforward as feedforward
import strata.components.heads as heads
import strata.components.layers as layers
import strata.components.norms as norms
from strata.components.component_base import Component, Lowered, Options, Use
from strata.components.feedforward import GATED

__all__ = ["COMPONENTS", "GATED", "Component", "Lowered", "Options", "Use", "register"]

# In the order the language reference lists them.
COMPONENTS: dict[str, Component] = {c.name: c for family in (
    embeddings, attention, feedforward, norms, layers, heads) for c in family.COMPONENTS}


def register(component: Component) -> Component:
    """Add a component to the vocabulary (parsing, checking, every stage's hooks
    and the schema read COMPONENTS); returns it."""
    COMPONENTS[component.name] = component
    return component
