"""Passes: one file per pass, each a `Pass` class holding its options schema,
its graph rewrite, its weight transform, its report and the hooks of every
later stage (lowering, diagram badges, cost, training, compressed storage; see
pass_base.py).  The registry below is what specs, `strata passes`, `strata schema`
and those stages read; `register(cls)` adds a pass defined elsewhere.

    >>> from strata.compiler import build_text
    >>> g = build_text('''
    ... model m { stack s(ids) { embedding(10, 8); attention(2); lm_head(10) } }
    ... passes { fuse_qkv }''')
    >>> h = apply_passes(g)
    >>> "s.attn.qkv" in h, h.graph.parameters == g.graph.parameters
    (True, True)
    >>> report(h)
    ['fuse_qkv: fused 3 q/k/v projections into 1 matmul']

The pipeline runs in the order a spec lists its passes; each pass records what
it did in g.graph.applied, which is how a checkpoint is carried across the
passes later (strata/passes/weight_transfer.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.compiler import cost, ir
from strata.compiler.ir_types import PASS_MARKS, IRTypeError
from strata.errors import Diagnostic, SpecError, UsageError
from strata.io import read_regular
from strata.passes.pass_base import NeedsWeights, Pass, PassContext, PassError, Stored, held_by
import strata.plugins as plugins
from strata.compiler.select import select
from strata.passes.distill import Distill
from strata.passes.fuse_mlp import FuseMLP
from strata.passes.fuse_qkv import FuseQKV
from strata.passes.lora import LoRA
from strata.passes.low_rank import LowRank
from strata.passes.prune import Prune
from strata.passes.quantize import Quantize
from strata.plugins import PASSES, PassSpec

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["BUILTIN", "REGISTRY", "Pass", "PassContext", "PassError", "Stored", "apply_passes", "calibrated_passes", "make_pass",
           "refusals", "register", "unregister", "report"]

REGISTRY: dict[str, type[Pass]] = {p.name: p for p in [
    FuseQKV,    # q, k, v projections -> one qkv matmul + split
    FuseMLP,    # gate, up projections -> one gate_up matmul + split
    Quantize,   # int8 dynamic / int8, int4 weight-only / fp8 kernels after loading
    Prune,      # magnitude / Wanda masks, structured heads and neurons, 2:4
    LowRank,    # W [out, in] -> B [out, r] A [r, in] by truncated SVD
    LoRA,       # trainable low-rank adapters; the rest frozen
    Distill,    # record the teacher (graph unchanged; strata train distills)
]}
# The shipped passes: `register` refuses a class that would take one's name
# (a plugin or a typo would shadow quantize everywhere, quietly) unless it is
# told to replace it, and `unregister` brings the built-in back.
BUILTIN: dict[str, type[Pass]] = dict(REGISTRY)
for _p in REGISTRY.values():  # what the dsl and the compiler read of each (strata/plugins.py)
    PASSES.register(_p.name, PassSpec(_p.name, _p.options, _p.positional))
# the compiler's selector check (on every keystroke in the editor) reads only the graph the
# earlier passes make: as a check, distill does not build its teacher (a GPT-2 teacher was about
# 25 ms of CPU per check, docs/benchmarks.md, Language server), and a pass that chooses from
# the weights ends the run quietly, leaving the graph before it to select from
plugins.GRAPH_PASSES[:] = [lambda g: apply_passes(g, lint=False, ctx=PassContext(checking=True))]
plugins.PASS_CHECK[:] = [lambda g: refusals(g)]  # strata check's and the editor's (compiler.analyze_text)
cost.PASSES = REGISTRY  # the cost model asks the passes' hooks (the compiler cannot import them)


def _declare_marks() -> None:
    """PASS_MARKS rebuilt from the passes themselves: every built-in's (always:
    the graphs it made stay valid while a class replaces it) and every registered
    pass's.  Rebuilt, not edited: two passes may declare one key (a plugin that
    reuses prune's kept_weights), and the one leaving must not take the other's."""
    PASS_MARKS.clear()
    for cls in [*BUILTIN.values(), *REGISTRY.values()]:
        for k, v in cls.marks.items():
            PASS_MARKS.setdefault(k, v)  # the first declarer's description: a built-in's


_declare_marks()


def register(cls: type[Pass] | None = None, *, replace: bool = False):
    """Add a pass class to the registry (specs, the CLI, schema and every stage's
    hooks see it); returns it, so it can decorate the class (`@register`, or
    `@register(replace=True)`).  A class taking a built-in pass's name is refused
    (UsageError) unless `replace=True`: then it stands for the built-in until
    it is unregistered."""
    if cls is None:
        return lambda c: register(c, replace=replace)
    shipped = BUILTIN.get(cls.name)
    if shipped is not None and shipped is not cls and not replace:
        raise UsageError(f"pass '{cls.name}' is built in ({shipped.__module__}.{shipped.__qualname__}); "
                         f"registering {cls.__name__} under that name would replace it in every spec. "
                         "Give the pass a name of its own, or register(..., replace=True) to replace it")
    REGISTRY[cls.name] = cls  # a replaced built-in keeps its place: `strata passes` lists in this order
    PASSES.register(cls.name, PassSpec(cls.name, cls.options, cls.positional))
    _declare_marks()
    return cls


def unregister(cls: type[Pass]) -> None:
    """Take a pass added by `register` out again, and its marks, less those a
    registered pass or a built-in also declares; a built-in it replaced comes
    back.  A class that is not the one registered under its name is left alone
    (it never took the name); a built-in cannot be taken out (UsageError)."""
    if BUILTIN.get(cls.name) is cls:
        raise UsageError(f"pass '{cls.name}' is built in and cannot be unregistered")
    if REGISTRY.get(cls.name) is not cls:
        return
    shipped = BUILTIN.get(cls.name)
    if shipped is None:
        REGISTRY.pop(cls.name)
        PASSES.unregister(cls.name)
    else:
        REGISTRY[cls.name] = shipped
        PASSES.register(shipped.name, PassSpec(shipped.name, shipped.options, shipped.positional))
    _declare_marks()


def make_pass(name: str, options: dict) -> Pass:
    """A pass object from its registry name and options (validated here)."""
    cls = REGISTRY[name]
    return cls(cls.options(**options))


def calibrated_passes(g: "nx.MultiDiGraph") -> list[Pass]:
    """The passes pending in g.graph.passes that read activations: compiling g
    with weights needs calibration token ids for them.

        >>> from strata.compiler import build_text
        >>> g = build_text("model m { stack s(ids) { embedding(10, 32); mlp(64); lm_head(10) } }\\n"
        ...                "passes { fuse_qkv; quantize(int4_weight, method=gptq) }")
        >>> [p.label() for p in calibrated_passes(g)]
        ['quantize(int4_weight, method=gptq)']
    """
    return [p for p in (make_pass(e["name"], e["options"]) for e in g.graph.get("passes", []))
            if p.reads_activations]


def _spec_error(e: PassError, entry: dict, read: bool = True):
    """`read`: the spec file is read again to show its line (a check has its text)."""
    sources = {}
    if "source" in entry:
        sources[entry["source"][0]] = entry["source"][1]
    elif read and entry.get("span") is not None and entry["span"].file:
        file = entry["span"].file
        try:  # bounded, a regular file: it may have changed since it was built
            sources[file] = read_regular(file, what="spec").decode("utf-8")
        except (UsageError, UnicodeDecodeError):  # the message, without the line
            pass
    return SpecError([Diagnostic(str(e), entry.get("span"), getattr(e, "hint", None))], sources)


def _where(earlier: dict | None, entry: dict) -> str:
    """Where an earlier pass entry was written, seen from `entry`: ' at line 12',
    ' at other.arch:12', or '' (a pass given as text, or applied before this run)."""
    span, here = (earlier or {}).get("span"), entry.get("span")
    if span is None or "source" in earlier:
        return ""
    return f" at line {span.line}" if here is not None and here.file == span.file else f" at {span.file}:{span.line}"


def _rewritten(g, h, n: str, claimed: set[str]) -> bool:
    """Whether the pass that turned `g` into `h` rewrote linear `n` of `g`: removed it
    (fused, factored), changed its parameters or its marks, or claims it itself."""
    if n not in h:
        return True
    a, b = g.nodes[n], h.nodes[n]
    return n in claimed or a.params != b.params or a.attrs != b.attrs


def _check_claims(held: dict, p: Pass, record: dict, g, h, entry: dict) -> None:
    """Refuse pass `p` (g -> h) if it rewrote linears an earlier pass claimed
    (`held`: linear -> (earlier pass, its record, its entry)) and that pass says it
    may not (Pass.conflict): located at `p`, naming the linears and the earlier pass."""
    mine = set(p.claims(record))  # looked up once per held linear: thousands each
    hit: dict[int, list[str]] = {}
    owner = {}
    for n in [n for n in g if n in held]:  # in graph order
        q, rec, earlier = held[n]
        if _rewritten(g, h, n, mine):
            hit.setdefault(id(q), []).append(n)
            owner[id(q)] = (q, rec, earlier)
    for key, nodes in hit.items():
        q, rec, earlier = owner[key]
        if why := q.conflict(rec, p, nodes, _where(earlier, entry)):
            raise PassError(f"{p.label()}: {why[0]}", why[1])


def _carry_claims(held: dict, p: Pass, record: dict, g, h, entry: dict) -> None:
    """After pass `p` (g -> h): the linears it claims are held by it; a claimed linear
    it replaced (fused, factored) hands its claim to the new linears that carry its
    marks (Pass.carried, held_by)."""
    gone = {n: held.pop(n) for n in [n for n in held if n not in h]}
    if gone:
        for n, d in h.nodes(data=True):
            if n not in g and d.op == "linear" and held_by(d.attrs):
                # its own factor (q -> q.a, q.b), else a part fused beside it (q -> qkv)
                near = [m for m in gone if n.startswith(m + ".")] or \
                    [m for m in gone if m.rsplit(".", 1)[0] == n.rsplit(".", 1)[0]] or list(gone)
                held[n] = gone[near[0]]
    held.update({n: (p, record, entry) for n in p.claims(record)})


def _lint_each(made: list) -> None:
    """Lint each pass's output in turn (`made`: (pass, its entry, the graph it
    made)); the first that breaks an invariant is raised, naming that pass."""
    for p, entry, h in made:
        try:
            ir.lint(h)
        except (ir.IRError, IRTypeError) as e:
            span = entry.get("span")
            at = f" ({span.file or 'the spec'}:{span.line})" if span is not None else ""
            raise type(e)(f"after pass {p.label()}{at}: {e}") from None


def apply_passes(g: "nx.MultiDiGraph", *, lint: bool = True, ctx: PassContext | None = None,
                 on_pass=None) -> "nx.MultiDiGraph":
    """Apply g.graph.passes in order; the result records them in
    g.graph.applied (with what each did) and has an empty `passes` list.
    `ctx` carries weights and calibration data for the passes that use them;
    `on_pass(p, before, after)` is called after each pass (the weight pipeline).
    A pass that rewrites linears an earlier one fixed and may not (a calibrated
    quantize's, a second quantize's: Pass.claims, Pass.conflict) is a SpecError
    located at it.  `lint`: the result is linted once, at the end (a lint
    after each pass was a third of the pipeline's time); where it fails, or a
    pass raises, each pass's output is linted in turn and the first broken
    one is raised, naming its pass (IRError: a bug in a pass, not in the spec).
    ctx.checking (a check, `refusals`): a pass that needs weights
    (NeedsWeights) ends the run there, without an error (at the first pass: `g`
    itself is returned).  `g` is never changed: each pass rewrites a copy."""
    todo = list(g.graph.get("passes", []))
    if not todo:
        return g
    # the shapes a checkpoint in the spec's own names has: recorded on the first pass's
    # output, never on `g` (a pass pipeline leaves its input as it was); where `g` has
    # them (its passes ran in part), each pass's copy carries them
    spec_params = None if "spec_params" in g.graph else ir.state_dict_shapes(g)
    ran = 0
    ctx = ctx or PassContext()
    made: list = []  # (pass, entry, its output) while linting: each linted only where something failed
    held: dict = {}  # linear -> (the pass that claimed it, its record, its entry or None)
    for a in g.graph.get("applied", []):
        q = make_pass(a["name"], a["options"])
        held.update({n: (q, a["record"], None) for n in q.claims(a["record"])})
    for entry in todo:
        p = make_pass(entry["name"], entry["options"])
        ctx.graph = g
        try:
            on = entry["options"].get("on")
            if on is not None and not select(g, on):  # it named what no earlier pass made either
                raise PassError(f"pass '{p.name}': selector \"{on}\" matches no module (selectors are "
                                "module path globs like decoder.h.*.mlp, or component kinds like attention)")
            h = p.run(g, ctx)
            grew = len(h.graph.get("applied", [])) > len(g.graph.get("applied", []))
            record = h.graph.applied[-1]["record"] if grew else {}
            _check_claims(held, p, record, g, h, entry)  # before its weights move (on_pass)
            if on_pass is not None:
                on_pass(p, g, h)
        except PassError as e:
            _lint_each(made)  # an earlier pass's broken graph, not this pass, is the mistake
            if ctx.checking and isinstance(e, NeedsWeights):  # the later passes depend on its choice
                break
            raise _spec_error(e, entry, read=not ctx.checking) from None
        except Exception:
            _lint_each(made)
            raise
        _carry_claims(held, p, record, g, h, entry)
        if not ran and spec_params is not None:
            h.graph.spec_params = spec_params
        ran += 1
        if lint:
            made.append((p, entry, h))
        g = h
    if not ran:  # a check stopped at the first pass: `g` stays the caller's
        return g
    if made:
        try:
            ir.lint(g)
        except (ir.IRError, IRTypeError):
            _lint_each(made)
            raise
    g.graph.passes = []
    return g


def refusals(g) -> list[Diagnostic]:
    """What the spec's passes refuse when they run on its graph `g` (networkx or
    the checker's staging graph; never changed), located at the pass, as
    `strata summary` reports it: a pass that rewrites linears a calibrated or
    an earlier quantize fixed, an option the graph does not fit.  Graph only,
    torch-free; a pass that chooses from the weights (low_rank(energy=),
    quantize(auto)) is no mistake, and the check stops there.

        >>> from strata.compiler import build_text
        >>> g = build_text("model m { stack s(ids) { embedding(10, 32); attention(2); lm_head(10) } }\\n"
        ...                "passes { quantize(int8_static); fuse_qkv }")
        >>> [(d.span.line, d.span.col, d.message[:40]) for d in refusals(g)]
        [(2, 33, 'fuse_qkv: it rewrites s.attn.q, s.attn.k')]
    """
    try:
        apply_passes(ir.to_networkx(g), lint=False, ctx=PassContext(checking=True))
    except SpecError as e:
        return e.diagnostics
    return []


def report(g: "nx.MultiDiGraph") -> list[str]:
    """One line per applied pass: what it did."""
    return [make_pass(a["name"], a["options"]).report(a["record"]) for a in g.graph.get("applied", [])]
