"""Paths written in a spec resolve against the file in which they are written.

A spec that extends a model imported from another folder inherits that file's
`train { data = ... }` and `passes { distill("teacher.arch", weights=...) }`;
each path is read from the folder of the file that names it, never from the
folder of the spec given on the command line.  A path from the command line
(`--set data=...`, `--pass 'distill(...)'`) is relative to the current folder.

Checked specs hold every such path relative to the folder of the spec that was
built (`g.graph.file`, "the root"): unchanged where the root itself writes
it, so reports, generated files and diagrams show what the user wrote, and
`located(value, g)` finds it from any current folder.

    >>> resolve_path("teacher.arch", "specs/student.arch", "specs/student.arch")
    'teacher.arch'
    >>> resolve_path("teacher.arch", "lib/base.arch", "work/student.arch")
    '../lib/teacher.arch'
    >>> resolve_path("/data/x.txt", "lib/base.arch", "work/student.arch")
    '/data/x.txt'
"""

from __future__ import annotations

import os
from pathlib import Path

from strata.compiler.evaluate import Env, EvalError, evaluate
from strata.dsl import ast as A
from strata.dsl.formatter import format_expr
from strata.dsl.registry import PASSES

__all__ = ["folder_of", "located", "moved_spec", "path_hint", "resolve_path", "resolve_option_paths"]


def folder_of(file: str | None) -> Path:
    """The folder relative paths written in `file` start from: its own; the
    current folder for spec text ("<string>") and the command line ("--set",
    "<passes[0]>")."""
    if not file or file.startswith("<") or file.startswith("--"):
        return Path(".")
    return Path(file).parent


def resolve_path(value: str, file: str | None, root: str | None) -> str:
    """`value` as written in `file`, relative to the folder of `root` (an
    absolute value, or one written in the root itself, as it is)."""
    if Path(value).is_absolute() or folder_of(file) == folder_of(root):
        return value
    return os.path.relpath((folder_of(file) / value).resolve(), folder_of(root).resolve())


def located(value: str, g) -> Path:
    """The path a checked spec's value names, usable from the current folder."""
    p = Path(value)
    return p if p.is_absolute() else folder_of(g.graph.file) / p


def resolve_option_paths(options, file: str | None, root: str | None):
    """`options` (a pydantic `Options`) with the file-naming options it declares in
    `paths` rebased from `file`'s folder to `root`'s (see `resolve_path`)."""
    changes = {}
    for key, endings in type(options).paths.items():
        v = getattr(options, key, None)
        if isinstance(v, str) and v and (not endings or v.endswith(endings)):
            changes[key] = resolve_path(v, file, root)
    return options.model_copy(update=changes) if changes else options


def _moved(value: str, src_dir: Path, out_dir: Path) -> str:
    if Path(value).is_absolute():
        return value
    return Path(os.path.relpath((src_dir / value).resolve(), out_dir.resolve())).as_posix()


def moved_spec(spec, src: str | Path, out: str | Path):
    """A copy of `spec` (an ast.SpecFile read from file `src`) to be written as file
    `out`: every relative path it writes — imports, `train { data }` (quoted or a
    bare word), a pass's file options (distill's teacher and weights) — made
    relative to `out`'s folder, so the file means the same there (`strata convert
    -o`).  Absolute paths, and a spec written into its own folder, are unchanged."""
    src_dir, out_dir = folder_of(str(src)), folder_of(str(out))
    if src_dir.resolve() == out_dir.resolve():
        return spec
    spec = spec.model_copy(deep=True)
    for i in spec.imports:
        i.path = _moved(i.path, src_dir, out_dir)
    variables = {v.name for m in spec.models for v in m.vars}
    for a in spec.train.items if spec.train else []:
        if a.name != "data" or (isinstance(a.value, A.Name) and a.value.id in variables):
            continue
        try:
            value = evaluate(a.value, Env(values={}), words=True)
        except EvalError:
            continue
        value = value.text if hasattr(value, "text") else value
        if isinstance(value, str):
            a.value = A.Str(value=_moved(value, src_dir, out_dir), span=a.value.span)
    for use in spec.passes.items if spec.passes else []:
        entry = PASSES.get(use.name)
        paths = getattr(entry.options, "paths", {}) if entry is not None else {}
        named = list(zip(entry.positional, use.args)) if entry is not None else []
        for name, holder, value in ([(n, None, v) for n, v in named]
                                    + [(k.name, k, k.value) for k in use.kwargs]):
            if name not in paths or not isinstance(value, A.Str) or \
                    (paths[name] and not value.value.endswith(paths[name])):
                continue  # a model of the same file (teacher=small) is no path
            new = A.Str(value=_moved(value.value, src_dir, out_dir), span=value.span)
            if holder is None:
                use.args[use.args.index(value)] = new
            else:
                holder.value = new
    return spec


def path_hint(e: EvalError, expr) -> EvalError:
    """`e` (a path option's value did not evaluate: `data/x.txt` reads as `data`
    divided by `x.txt`) with the hint to quote the path, in the surface it was
    written in (YAML's quotes hold the text; the spec's make it a string)."""
    if e.hint is not None or not isinstance(expr, A.BinOp):
        return e
    text = format_expr(expr).replace(" ", "")
    file = getattr(getattr(expr, "span", None), "file", None) or ""
    quoted = f"'\"{text}\"'" if file.endswith((".yaml", ".yml")) else f'"{text}"'
    return EvalError(e.message, e.span, f"a path is a string: write {quoted}")
