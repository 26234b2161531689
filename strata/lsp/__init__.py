"""`strata lsp`: a language server for .arch and strata YAML files (optional
extra `strata[lsp]`: pygls and lsprotocol).

    features.py  hover, completion, definitions: plain data over the checker's analysis
    index.py     where each name of a file is defined and used
    yaml_complete.py  completion in YAML files, from the strict JSON Schema
    refused.py   the options completion leaves out: those the checker refuses beside the written ones
    items.py     a completion item
    workspace.py the workspace's spec files, read within bounds (workspace symbols)
    server.py    the LSP wiring (pygls): diagnostics, hover, completion, definition,
                 references, rename, symbols, formatting, inlay hints
"""

from __future__ import annotations

from strata.errors import UsageError


def serve() -> int:
    """Run the server on stdin/stdout (what `strata lsp` does)."""
    try:
        import lsprotocol  # noqa: F401  # lazy: optional
        import pygls  # noqa: F401  # lazy: optional
    except ImportError:
        raise UsageError("the language server needs pygls: pip install 'strata[lsp]'") from None
    from strata.lsp.server import main  # lazy: optional

    return main()
