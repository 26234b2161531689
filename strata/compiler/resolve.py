"""Resolve a spec file's imports and `extends` into one self-contained model.

    >>> from strata.dsl import load_text
    >>> spec = load_text("model a { d = 1 }\\nmodel b extends a { e = 2 }", "x.arch")
    >>> m = resolve_model(spec, {"x.arch": ""})
    >>> [v.name for v in m.vars]
    ['d', 'e']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from strata.dsl import ast as A
from strata.dsl import load_text, read_source
from strata.errors import Collector, Diagnostic, Span, SpecError, UsageError, did_you_mean


@dataclass
class Library:
    """Everything visible from one file: its own and its imports' blocks and models."""

    blocks: dict[str, A.BlockDef] = field(default_factory=dict)
    models: dict[str, A.ModelDef] = field(default_factory=dict)
    # id(model) -> the Library of the file that defines it: an imported model's
    # `extends` and blocks are those of its own file (its base comes along with it)
    homes: dict[int, "Library"] = field(default_factory=dict)
    # the file's own `train { }` and `passes { }`: what a model extending one of
    # its models inherits (see `_inherited_sections`)
    train: A.Train | None = None
    passes: A.Passes | None = None

    def add_own(self, spec: A.SpecFile) -> "Library":
        """The file's own sections, blocks and models, over what it imported."""
        self.train, self.passes = spec.train, spec.passes
        for b in spec.blocks:
            self.blocks[b.name] = b
        for m in spec.models:
            self.models[m.name] = m
            self.homes[id(m)] = self
        return self


@dataclass
class ResolvedModel:
    name: str
    model: A.ModelDef                  # the model as written (for its span)
    vars: list[A.Assign]               # base vars overridden by the derived model's
    blocks: dict[str, A.BlockDef]      # file-level, imported, then model-local
    stacks: list[A.StackDef]
    passes: A.Passes | None
    train: A.Train | None
    sources: dict[str, str]            # file -> text, for rendering errors
    models: tuple[str, ...] = ()       # every model visible from the file (own and imported)


def _relay(e: SpecError, sources: dict[str, str], errors: Collector) -> None:
    """An imported file's errors, reported with the importer's (and its text kept to show them)."""
    sources.update(e.sources)
    for d in e.diagnostics:
        errors.error(d.message, d.span, d.hint)


def _load_imports(spec: A.SpecFile, sources: dict[str, str], errors: Collector,
                  loading: tuple[str, ...], cache: dict[str, Library],
                  open_texts: Mapping[str, str] | None = None, within: Path | None = None) -> Library:
    """`open_texts`: resolved path -> text read instead of the file (the
    unsaved buffers of an editor: the language server's view); `within`: a
    resolved folder no import may leave (strata serve's): one that does is an
    error, and the file is not read."""
    lib = Library()
    here = Path(spec.path or ".").parent
    for imp in spec.imports:
        if "\0" in imp.path:  # no file name holds one; the OS calls would raise ValueError
            errors.error(f"cannot import '{imp.path}': a path cannot hold a NUL character",
                         imp.span, "remove the \\x00 from the path")
            continue
        target = (here / imp.path).resolve()
        key = str(target)
        if within is not None and within not in target.parents:
            errors.error(f"cannot import '{imp.path}': outside the served folder {within}", imp.span,
                         "strata serve reads only files under the folder it serves")
            continue
        if key in loading:
            chain = " -> ".join(Path(p).name for p in loading[loading.index(key):] + (key,))
            errors.error(f"import cycle: {chain}", imp.span, "move the shared blocks into a third file")
            continue
        if key in cache:
            sub = cache[key]
        else:
            try:  # a regular file of bounded size only: never a FIFO or /dev/zero
                text = open_texts[key] if open_texts and key in open_texts else read_source(target)
            except UsageError as e:
                why = str(e).rpartition(": ")[2] if str(e).startswith(str(target)) else str(e)
                errors.error(f"cannot import '{imp.path}': {why}", imp.span,
                             f"the path is relative to {here or '.'}/")
                continue
            except SpecError as e:  # not UTF-8
                _relay(e, sources, errors)
                continue
            shown = str(Path(spec.path).parent / imp.path) if spec.path else imp.path
            try:
                sub_spec = load_text(text, shown)
                sub_spec.path = shown
            except SpecError as e:
                _relay(e, sources, errors)
                continue
            sources[shown] = text
            sub = _load_imports(sub_spec, sources, errors, loading + (key,), cache, open_texts,
                                within).add_own(sub_spec)
            cache[key] = sub
        lib.homes.update(sub.homes)
        if imp.names is None:
            lib.blocks.update(sub.blocks)
            lib.models.update(sub.models)
            continue
        for name in imp.names:
            if name in sub.blocks:
                lib.blocks[name] = sub.blocks[name]
            elif name in sub.models:
                lib.models[name] = sub.models[name]
            else:
                errors.error(f"'{imp.path}' has no block or model '{name}'", imp.span,
                             did_you_mean(name, list(sub.blocks) + list(sub.models)))
    return lib


def _merge_extends(model: A.ModelDef, lib: Library, errors: Collector):
    """Walk the `extends` chain: base first, each derived model overriding by name,
    each base looked up in the file that names it.  Linear in the chain's length
    (models are compared by identity: `==` on AST nodes compares whole dumps).
    Returns (vars, blocks, stacks, blocks of the chain's files, the chain)."""
    chain = [model]
    seen = {id(model)}
    while chain[-1].extends:
        base_name = chain[-1].extends
        models = lib.homes.get(id(chain[-1]), lib).models
        base = models.get(base_name)
        if base is None:
            others = [m for m in models if m != chain[-1].name]
            errors.error(f"model '{chain[-1].name}' extends unknown model '{base_name}'",
                         chain[-1].span, did_you_mean(base_name, others) or
                         "define the base model in this file or import it")
            break
        if id(base) in seen:
            errors.error(f"'extends' cycle: {' -> '.join(m.name for m in chain)} -> {base.name}",
                         chain[-1].span)
            break
        chain.append(base)
        seen.add(id(base))
    vars_: dict[str, A.Assign] = {}
    blocks: dict[str, A.BlockDef] = {}
    stacks: dict[str, A.StackDef] = {}
    home_blocks: dict[str, A.BlockDef] = {}
    for m in reversed(chain):
        home_blocks.update(lib.homes.get(id(m), lib).blocks)
        for v in m.vars:
            vars_[v.name] = v
        for b in m.blocks:
            blocks[b.name] = b
        for s in m.stacks:
            stacks[s.name] = s
    return list(vars_.values()), blocks, list(stacks.values()), home_blocks, chain


def _inherited_sections(chain: list[A.ModelDef], lib: Library) -> tuple[A.Train | None, A.Passes | None]:
    """The `train { }` and `passes { }` a model runs with.  The files of its
    `extends` chain are read base first, each once, the file that was given last:
    train settings merge key by key (a derived file's `steps = 5` keeps its base
    file's optimizer); a `passes { }` section replaces its base file's whole (an
    empty one removes them), since passes run in order and one cannot be
    overridden alone."""
    files: list[Library] = []
    for m in reversed(chain):
        home = lib.homes.get(id(m), lib)
        if not any(f is home for f in files):
            files.append(home)
    if not any(f is lib for f in files):
        files.append(lib)
    items: dict[str, A.Assign] = {}
    span = None
    for f in files:
        if f.train is not None:
            items.update({a.name: a for a in f.train.items})
            span = f.train.span
    train = A.Train(items=list(items.values()), span=span) if span is not None else None
    passes = next((f.passes for f in reversed(files)
                   if f.passes is not None and not _students_passes(f, chain[0])), None)
    return train, passes


def distill_teachers(passes: A.Passes | None) -> list[str]:
    """The models a `passes { }` section's `distill(...)` passes name as teachers
    (a word or a string that is no spec file's path)."""
    names = []
    for use in passes.items if passes is not None else ():
        if use.name != "distill":
            continue
        arg = next((k.value for k in use.kwargs if k.name == "teacher"), use.args[0] if use.args else None)
        name = arg.id if isinstance(arg, A.Name) else arg.value if isinstance(arg, A.Str) else None
        if name is not None and not name.endswith((".arch", ".yaml", ".yml")):
            names.append(name)
    return names


def _students_passes(f: Library, model: A.ModelDef) -> bool:
    """Whether file f's `passes { }` are its students' and not `model`'s: they distill
    from `model`, and f defines another model (the student) for them to apply to.  The
    teacher is built without them — with its base file's passes, if any — as a
    recipe's teacher is never quantized, pruned or distilled with its student.  A
    file whose only model distills from itself keeps them: that mistake is reported."""
    return (model.name in distill_teachers(f.passes)
            and any(f.homes.get(id(m)) is f and m is not model for m in f.models.values()))


def _check_duplicates(model: A.ModelDef, spec: A.SpecFile, errors: Collector) -> None:
    groups = [("variable", model.vars), ("block", model.blocks), ("stack", model.stacks),
              ("model", spec.models), ("block", spec.blocks),
              ("train setting", spec.train.items if spec.train else [])]
    groups += [(f"parameter of block '{b.name}'", b.params) for b in model.blocks + spec.blocks]
    groups += [(f"input of stack '{s.name}'", s.inputs) for s in model.stacks]
    for what, items in groups:
        seen: dict[str, A.Node] = {}
        for it in items:
            if it.name in seen:
                first = seen[it.name].span
                errors.error(f"{what} '{it.name}' is defined twice", it.span,
                             f"first defined at line {first.line}" if first else None)
            seen[it.name] = it


def resolve_model(spec: A.SpecFile, sources: dict[str, str], model: str | None = None,
                  errors: Collector | None = None, open_texts: Mapping[str, str] | None = None,
                  within: Path | None = None) -> ResolvedModel:
    """Pick the model (by name, else the file's last), with imports and bases
    merged; an imported file whose resolved path is in `open_texts` is read from there;
    with `within` (a resolved folder), an import outside it is an error and not read."""
    own = errors is None
    errors = errors if errors is not None else Collector()
    lib = _load_imports(spec, sources, errors, (str(Path(spec.path or "").resolve()),), {}, open_texts,
                        within).add_own(spec)
    file = spec.path or "<string>"
    if model is not None:
        chosen = next((m for m in spec.models if m.name == model), None) or lib.models.get(model)
        if chosen is None:
            raise UsageError(f"{file}: no model '{model}'"
                             + (f" ({did_you_mean(model, lib.models)})" if did_you_mean(model, lib.models) else "")
                             + (f"; models: {', '.join(lib.models)}" if lib.models else ""))
    elif spec.models:
        chosen = spec.models[-1]
    else:
        errors.raise_if_any(sources)
        raise SpecError([Diagnostic("the file defines no model", Span(file, 1, 1),
                                    "add `model NAME { ... }` (blocks alone cannot be built)")],
                        sources)
    _check_duplicates(chosen, spec, errors)
    vars_, local_blocks, stacks, home_blocks, chain = _merge_extends(chosen, lib, errors)
    blocks = {**home_blocks, **lib.blocks, **local_blocks}
    train, passes = _inherited_sections(chain, lib)
    if own:
        errors.raise_if_any(sources)
    return ResolvedModel(chosen.name, chosen, vars_, blocks, stacks, passes, train, sources,
                         tuple(lib.models))
