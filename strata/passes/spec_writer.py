"""The spec of a compressed model: the original one, made self-contained and
rewritten to say what the compressed model is.

    imports and `extends` are resolved into one model (the file stands alone)
    structured pruning's sizes are written where the spec wrote the component:
        mlp(4 * d)            -> mlp(2150)
        attention(heads, ...) -> attention(9, head_dim=64, ...)
    the passes that still run when it compiles (fusions, quantization, low rank
    with its ranks, 2:4) form its `passes { }`; what is already in the weights
    (masks, removed neurons, merged adapters) is said in the model's comment
    paths in `train { data }` and `distill(...)` are made relative to the new file
    a distill teacher that is a model of the file is written too, before the model

A size is written into the use that declared it, which every instance of that
use shares: a structured selection must therefore cover every instance (all
layers of a repeat) with the same result, or it cannot be written as a spec.

The same file, sizes and passes as they are, is what `strata train` keeps in a
run folder (`run_spec`): the spec the weights were trained with, standing alone,
so the run folder loads wherever it is moved or copied.

In code::

    text = compressed_spec("gpt2.arch", None, g_after, ["quantize(int8_dynamic)"], notes, "out/")
    text = run_spec("work/student.arch", None, build_file("work/student.arch"), "runs/student")
"""

from __future__ import annotations

import os
from pathlib import Path

from strata.compiler.evaluate import Env
from strata.compiler.resolve import distill_teachers, resolve_model
from strata.compiler.sections import train_value
from strata.components import COMPONENTS
from strata.dsl import ast as A
from strata.dsl import load_text, read_source
from strata.dsl.formatter import format_spec
from strata.errors import Collector, UsageError
from strata.passes.text import pass_text

__all__ = ["compressed_spec", "run_spec"]


def _statements(body):
    for s in body:
        yield s
        inner = getattr(s, "body", None)
        if isinstance(inner, list):
            yield from _statements(inner)


def _used_blocks(stacks, blocks: dict) -> list[str]:
    """Block names the stacks use, directly or through other blocks (definition order)."""
    seen: set[str] = set()
    todo = [s for st in stacks for s in _statements(st.body)]
    while todo:
        s = todo.pop()
        if isinstance(s, A.Use) and s.name in blocks and s.name not in seen:
            seen.add(s.name)
            todo += list(_statements(blocks[s.name].body))
    return [b for b in blocks if b in seen]


def _set(use: A.Use, positional: tuple[str, ...], name: str, value) -> None:
    """Set option `name` of a use to the number `value` (None: remove it)."""
    expr = A.Num(value=value) if value is not None else None
    if name in positional and positional.index(name) < len(use.args):
        i = positional.index(name)
        if expr is not None:
            use.args[i] = expr
            return
    for k in list(use.kwargs):
        if k.name == name:
            if expr is None:
                use.kwargs.remove(k)
            else:
                k.value = expr
            return
    if expr is not None:
        use.kwargs.append(A.Keyword(name=name, value=expr))


def _sizes(g0, g, record: dict) -> dict:
    """span -> (component kind, {option: new value}) for the structured record,
    checked to be uniform over every component written at that span."""
    by_span: dict = {}
    for path, rec in record["components"].items():
        comp = g.graph.components[path]
        o = comp["options"]
        change = {"hidden": o["hidden"]} if rec["kind"] == "mlp" else \
            {"heads": o["heads"], "head_dim": o["head_dim"], "kv_heads": o.get("kv_heads")}
        span = comp["span"]
        if span in by_span and by_span[span][1] != change:
            raise UsageError(f"compress: '{path}' is pruned to other sizes than the other uses of "
                             f"{span}; a spec writes one size there")
        by_span[span] = (comp["kind"], change)
    for path, comp in g0.graph.components.items():
        if comp["span"] in by_span and path not in record["components"]:
            raise UsageError(f"compress: structured pruning selected some uses of {comp['span']} but not "
                             f"'{path}'; a spec writes one size there: select every layer (e.g. "
                             "on=\"decoder.h.*.mlp\") or none")
    return by_span


def _relative(value: str, src_dir: Path, out_dir: Path) -> str:
    """A path written in `src_dir` (or absolute, as checked specs hold them),
    relative to the new spec's folder, so the compressed spec moves with it."""
    return os.path.relpath((src_dir / value).resolve(), out_dir.resolve())


def _rebase_train(train: A.Train | None, src_dir: Path, out_dir: Path, variables: dict) -> A.Train | None:
    if train is None:
        return None
    train = train.model_copy(deep=True)
    env = Env(values=dict(variables))
    for a in train.items:  # each written in its own file (inherited ones in the base's)
        if a.name != "data":
            continue
        # a path as the checker reads it: "corpus.txt", or the bare word corpus.txt
        # (what YAML's `data: corpus.txt` is)
        ok, value = train_value(a, env, Collector())
        if ok and isinstance(value, str):
            here = Path(a.span.file).parent if a.span and a.span.file else src_dir
            a.value = A.Str(value=_relative(value, here, out_dir))
    return train


def run_spec(spec_path: str | Path, model: str | None, g, out_dir: str | Path) -> str:
    """The .arch text of the model of `spec_path` that `g` (its checked IR, before
    passes) was built from, standing alone, to be written into folder `out_dir`:
    imports and `extends` resolved, its passes (inherited ones too) and train
    section, every path in them relative to `out_dir`."""
    kept = [pass_text(p["name"], p["options"]) for p in g.graph.passes]
    name = Path(spec_path).name
    return compressed_spec(spec_path, model, g, g, [], kept, [], out_dir,
                           comment=f"{g.graph.name}: the spec strata train trained, from {name} "
                                   "(what it imports and extends, in one file)")


def compressed_spec(spec_path: str | Path, model: str | None, g0, g, structured: list[dict],
                    kept: list[str], notes: list[str], out_dir: str | Path, comment: str | None = None) -> str:
    """The .arch text of the compressed model (see the module docstring); `comment`:
    the model's comment instead of the one that says how it was compressed."""
    from strata.dsl.parser import parse  # lazy: startup

    spec_path, out_dir = Path(spec_path), Path(out_dir)
    text = read_source(spec_path)
    spec = load_text(text, str(spec_path))
    r = resolve_model(spec, {str(spec_path): text}, model)
    names = _used_blocks(r.stacks, r.blocks)
    blocks = [r.blocks[b].model_copy(deep=True) for b in names]
    stacks = [s.model_copy(deep=True) for s in r.stacks]
    sizes: dict = {}
    for record in structured:
        sizes.update(_sizes(g0, g, record))
    uses = {s.span: s for body in [b.body for b in blocks] + [s.body for s in stacks]
            for s in _statements(body) if isinstance(s, A.Use) and s.span is not None}
    for span, (kind, change) in sizes.items():
        use = uses.get(span)
        if use is None:
            raise UsageError(f"compress: cannot find where {span} is written to rewrite its size")
        for name, value in change.items():
            _set(use, COMPONENTS[kind].positional, name, value)
    src_dir = spec_path.parent
    kept = [_rebase_distill(p, src_dir, out_dir) for p in kept]
    passes = parse("passes {\n" + "\n".join(kept) + "\n}", "<passes>").passes if kept else None
    comment = comment or "\n".join([f"{r.name}, compressed by strata compress from {spec_path.name}:"]
                                    + [f"  {n}" for n in notes])
    m = A.ModelDef(name=r.name, vars=[v.model_copy(deep=True) for v in r.vars], blocks=blocks,
                   stacks=stacks, comment=comment)
    models = [_teacher_model(spec, text, spec_path, t, r.name) for t in distill_teachers(passes)] + [m]
    out = A.SpecFile(models=models, passes=passes, train=_rebase_train(r.train, src_dir, out_dir, g0.graph.vars))
    return format_spec(out)


def _teacher_model(spec: A.SpecFile, text: str, spec_path: Path, name: str, student: str) -> A.ModelDef:
    """The distill teacher a model of the file names, standing alone, written before
    its student (the file's last model, what loads without --model).  The file's
    `passes { }` are the student's (`strata.compiler.resolve._students_passes`), so
    the teacher builds without them there as here; a teacher that runs passes of
    its own (those of its base's file) cannot be told apart from them in one file."""
    t = resolve_model(spec, {str(spec_path): text}, name)
    if t.passes is not None and t.passes.items:
        raise UsageError(f"the distill teacher '{name}' runs passes of its own file, which one file "
                         f"cannot give it apart from {student}'s")
    blocks = [t.blocks[b].model_copy(deep=True) for b in _used_blocks(t.stacks, t.blocks)]
    return A.ModelDef(name=t.name, vars=[v.model_copy(deep=True) for v in t.vars], blocks=blocks,
                      stacks=[s.model_copy(deep=True) for s in t.stacks],
                      comment=f"{t.name}: the distillation teacher {student} names, from {spec_path.name}")


def _rebase_distill(text: str, src_dir: Path, out_dir: Path) -> str:
    """A distill pass's teacher / weights paths, relative to the new file."""
    if not text.startswith("distill("):
        return text
    from strata.dsl.parser import parse  # lazy: startup

    use = parse("passes {\n" + text + "\n}", "<pass>").passes.items[0]
    for i, a in enumerate(use.args):
        if isinstance(a, A.Str) and a.value.endswith((".arch", ".yaml", ".yml")):
            use.args[i] = A.Str(value=_relative(a.value, src_dir, out_dir))
    for k in use.kwargs:
        if k.name in ("teacher", "weights") and isinstance(k.value, A.Str) and \
                (k.name == "weights" or k.value.value.endswith((".arch", ".yaml", ".yml"))):
            k.value = A.Str(value=_relative(k.value.value, src_dir, out_dir))
    return format_spec(A.SpecFile(passes=A.Passes(items=[use]))).splitlines()[1].strip()
