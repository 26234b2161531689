"""Backends: lower the graph IR to something that runs or that a person reads.

`strata.backends.torch` writes readable PyTorch source (one class per distinct
block) and executes it (docs/backends.md); the diagram renderers live beside
it.  Importing this package imports nothing heavy.
"""
