"""The layers import one way (docs/architecture.md, "The pipeline and its layers"):

    base → components → dsl → compiler → passes → backends → interop → train → api → front ends

No import of a strata module — at the top of a file or inside a function —
points to a higher layer, and no import cycle exists at all, not even among
one package's modules (what two modules both need lives in a third below
them, or the caller passes it in).  Every import left inside a function says why
it waits with a one-word comment (`# lazy: torch`): the reasons are LAZY's.
The import graph is read from the source with ast, never by importing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]

# Top-level strata modules and packages, by layer (lowest first).  base: what
# every layer may use (diagnostics, the bounded file reader / writer, the
# tables a higher layer fills: strata/plugins.py).  components: the
# vocabulary the dsl reads.  interop (import-hf, export) builds specs and reads
# weights: above the backends, below train, which exports through it.  The
# language server and the workbench are front ends beside the command line.
LAYERS = [
    ("base", {"errors", "io", "plugins", "resources", "safetensors_file"}),
    ("components", {"components"}),
    ("dsl", {"dsl"}),
    ("compiler", {"compiler"}),
    ("passes", {"passes"}),
    ("backends", {"backends"}),
    ("interop", {"interop"}),
    ("train", {"train"}),
    ("api", {"api", ""}),  # "": the package itself, strata/__init__.py
    ("front ends", {"cli", "cli_train", "cli_parser", "cli_folders", "__main__", "lsp", "serve"}),
]
RANK = {top: i for i, (_, tops) in enumerate(LAYERS) for top in tops}

# Why an import waits inside a function: what importing it at the top would put
# on a path that must not pay for it.
LAZY = {
    "torch": "torch (or what imports it) off the torch-free paths: check, summary, ir, diagrams, the editor",
    "optional": "an optional extra (tokenizers, transformers, onnx, graphviz, the server's packages)",
    "startup": "a slow import (networkx, rich, lark, numpy, the passes) off a path that starts fast",
}
# Copied into every generated model file function by function, comments and all
# (backends/torch/runtime_source.py): a function brings its own imports, and a
# comment added here would change every generated file.
COPIED = {"strata/backends/torch/runtime.py", "strata/backends/torch/runtime_passes.py", "strata/passes/qparams.py"}


def layer_of(module: str) -> int:
    parts = module.split(".")
    return RANK[parts[1] if len(parts) > 1 else ""]


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _runtime_imports(tree: ast.Module):
    """(node, local) of every import Python runs: not those under `if TYPE_CHECKING:`."""
    typing_only = {id(n) for top in tree.body if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test)
                   for n in ast.walk(top)}
    top_level = {id(n) for top in tree.body if isinstance(top, (ast.If, ast.Try)) for n in ast.walk(top)}
    top_level |= {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in typing_only:
            yield node, id(node) not in top_level


def _targets(module: str, is_package: bool, node) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [base]


def import_graph():
    """(graph of strata module -> strata module, [(file, line, source line) of each local import])."""
    g, local = nx.DiGraph(), []
    for path in sorted((ROOT / "strata").rglob("*.py")):
        module, text = _module(path), path.read_text(encoding="utf-8")
        g.add_node(module)
        lines = text.splitlines()
        for node, is_local in _runtime_imports(ast.parse(text)):
            if is_local:
                local.append((path.relative_to(ROOT), node.lineno, lines[node.lineno - 1]))
            for target in _targets(module, path.name == "__init__.py", node):
                if target == "strata" or target.startswith("strata."):
                    g.add_edge(module, target, line=node.lineno, local=is_local)
    return g, local


GRAPH, LOCAL = import_graph()


def test_the_map_names_every_package():
    tops = {m.split(".")[1] if "." in m else "" for m in GRAPH.nodes}
    assert tops <= set(RANK), f"place these in LAYERS: {sorted(tops - set(RANK))}"


def test_no_import_points_up():
    up = [f"{a} -> {b} (line {d['line']}{', in a function' if d['local'] else ''})"
          for a, b, d in GRAPH.edges(data=True) if layer_of(b) > layer_of(a)]
    assert not up, "imports of a higher layer:\n" + "\n".join(up)


def test_no_import_cycle():
    """No module imports itself through others, at the top of a file or inside a
    function (`from strata.P import sub` reads as an import of the package P:
    inside P, write `import strata.P.sub as sub`)."""
    cycles = [sorted(c) for c in nx.strongly_connected_components(GRAPH) if len(c) > 1]
    cycles += [[a] for a, b in nx.selfloop_edges(GRAPH)]
    assert not cycles, f"import cycles: {cycles}"


def test_every_import_inside_a_function_says_why():
    def word(line):
        return line.partition("# lazy:")[2].split()[0] if "# lazy:" in line else None
    silent = [f"{f}:{n}: {line.strip()}" for f, n, line in LOCAL
              if word(line) not in LAZY and f.as_posix() not in COPIED]
    assert not silent, ("an import inside a function either moves to the top of its file or says why "
                        f"it waits (# lazy: {' | '.join(LAZY)}):\n" + "\n".join(silent))


def test_the_checker_sees_an_upward_import():
    """The checks can fail: a made-up dsl module importing the passes is caught."""
    tree = ast.parse("def f():\n    from strata.passes import apply_passes  # lazy: startup\n")
    node, is_local = next(_runtime_imports(tree))
    target, = _targets("strata.dsl.made_up", False, node)
    assert is_local and layer_of(target) > layer_of("strata.dsl.made_up")
    g = nx.DiGraph([("strata.train.a", "strata.train.b"), ("strata.train.b", "strata.train.a")])
    assert any(len(c) > 1 for c in nx.strongly_connected_components(g))
