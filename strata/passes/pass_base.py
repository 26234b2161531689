"""What a pass is: one class per pass, in one file per pass, holding everything
every stage needs of it.

    name, positional, options     how a spec calls it and the schema of its options
                                  (the registry, `strata schema`, the reference)
    run(g, ctx) -> g              the graph rewrite; records what it did on the new
                                  graph (`g.graph.applied[-1]["record"]`)
    convert(record, state, ctx)   the weight transform: a state dict in the names of
                                  the graph before the pass -> the names after it
    revert(record, state)         its inverse, where one exists (checkpoints are
                                  written in the spec's own names)
    report(record) -> str         one line saying what it did

and a hook for every later stage, so that a pass is one file (each defaults to
"nothing to do"; the stage that calls a hook passes in what it needs, as the
torch emitter does for a component's `torch` hook):

    where() -> str                  its line in the generated file's docstring:
                                    what it became there
    lower(g, low)                   (class) its tables, build() steps and after-load
                                    functions in the generated file (`low`: the
                                    torch emitter's PassLowering)
    device_problem(g, device)       (class) why its kernels cannot run on a device
    badges(attrs) -> [str]          (class) the marks it left on an IR node, for a
                                    diagram's box ("int8", "LoRA r=8")
    claims(record), conflict(record, later)
                                    the linears it fixed, and why a later pass may not
                                    rewrite them (a calibrated quantize's integers and
                                    scales; a second quantize): apply_passes refuses,
                                    located at the later pass
    carried, holds(attrs), misfit(attrs)
                                    (class) its marks a later rewrite keeps on a linear;
                                    why its marks keep a later pass off the weights
                                    ("quantized"); why they cannot stay on a linear
                                    of the rewrite's new shape (an int4 factor 16
                                    wide: the rewrite drops them and reports it);
                                    other stages read its marks only
                                    through its own class methods (Quantize.scheme_of,
                                    LowRank.factor, LoRA.adapter), never by key
    weight_bytes(d, params)         (class) bytes of a node's weights it stores
                                    otherwise than fp32, or None (the cost model)
    trainable(g) -> int | None      (class) the parameters that train, when it
                                    restricts them (summary's "trainable")
    prepare_training(net, kit) -> [str]  (class) what `strata train` does to the compiled
    finish_training(net, kit)       model before the first step / after the last
    stored(entry, g, adapters)      how `strata compress` writes it: kept in the new
                                    spec, a note, sizes, or merged into the weights
    details(record) -> dict         its per-layer figures in compress's report.json

`run` never imports torch (summary, diagrams and `strata compile` stay
torch-free); `convert` / `revert` import it when they are called.  A record is
plain data (lists, numbers, strings) so it travels with the graph.

    >>> from strata.passes import make_pass
    >>> make_pass("quantize", {"scheme": "int8_dynamic"}).o.group_size
    128
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from strata.compiler.ir import param_count
from strata.components.component_base import Options
from strata.passes.text import pass_text

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["NeedsWeights", "Pass", "PassContext", "PassError", "Runner", "Stored", "carried_marks", "drop_misfit_marks",
           "held_by", "listed"]


class PassError(Exception):
    """A pass cannot apply to this graph (a spec mistake the person can fix);
    `hint` says what to write instead."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class NeedsWeights(PassError):
    """A pass that chooses from the weights (low_rank(energy=), quantize(auto))
    run on a graph alone: no mistake in the spec (compile or compress it with
    weights), but nothing after it can be known without them.  summary and
    diagram refuse it; a check (PassContext.checking) stops there quietly."""


@dataclass
class PassContext:
    """What a pass may use beyond the graph: the weights flowing through the
    pipeline (in the names of the graph the pass receives, or None when the
    model is compiled without weights), calibration token ids, and the runner
    that measures activations on them (the backend hands it in: passes never
    import the backend that compiles and runs models)."""

    state: dict | None = None            # name -> tensor
    calibration: Any = None              # LongTensor (N, T) of token ids, or None
    # what runs the model of a graph on the calibration ids (a Runner:
    # strata.backends.torch.workflows.runner.RUNNER); given with `calibration`
    runner: "Runner | None" = None
    graph: Any = None                    # the graph the current pass receives
    cache: dict = field(default_factory=dict)
    # linear name -> strata.passes.methods.grid.QuantizedWeight: the integers,
    # scales and zero points a calibrated method (GPTQ) chose, for a packer
    quantized: dict = field(default_factory=dict)
    # the state is the spec's initialisation (a model compiled without weights, as
    # `strata train` starts): there is nothing trained to measure, so a pass that
    # reads activations takes its choice without them (magnitude masks, plain SVD,
    # round to nearest) and calibrates when trained weights are compiled
    initial: bool = False
    # a check (strata check, the editor, the compiler's selector test): the graph
    # is thrown away, or only searched for a selector's module, and what the
    # passes refuse is kept, so a pass may skip work only its report reads
    # (distill's build of the teacher) and one that needs weights ends the run
    checking: bool = False
    # how the caller merges LoRA adapters before the passes run, in its own words
    # (strata compress's --adapters merge, compress(adapters="merge")), where the
    # adapters are there because the caller kept them; None: the spec's own lora
    # pass, which a later pass that cannot take adapted linears refuses as such
    merge: str | None = None

    @property
    def measures(self) -> bool:
        """Whether a pass that reads activations measures them on these weights:
        trained weights flow through (not a checkpoint being renamed, not an
        initialisation)."""
        return self.graph is not None and not self.initial

    def need_calibration(self, what: str) -> None:
        """Refuse a method that reads activations when the weights flow through
        without calibration data (a graph-only run, summary or diagram, passes)."""
        if self.state is not None and self.calibration is None and not self.initial:
            raise PassError(f"{what} reads activations: give calibration data (strata compress "
                            "--calibration FILE, compile(..., calibration=ids))")

    def need_state(self, what: str):
        if self.state is None:
            raise NeedsWeights(f"{what} is chosen from the weights: compile with weights "
                               "(strata.compile(spec, weights=...), strata compress --weights)")
        return self.state

    def activation_stats(self, nodes: list[str], what: str) -> dict:
        """Per input feature of each linear in `nodes`: {"sq": sum of x^2, "abs":
        sum of |x|, "n": rows seen}, over the calibration batches run through the
        model of `self.graph` with `self.state`."""
        if self.calibration is None:
            raise PassError(f"{what} weighs the weights by activations: give calibration "
                            "data (strata compress --calibration FILE, compile(..., calibration=ids))")
        return self._runner(what).activation_stats(self.graph, self.need_state(what), self.calibration, nodes)

    def sensitivity(self, g, schemes: dict[str, list[str]], group_size: int) -> tuple[dict, dict]:
        """How far the model's next-token distribution moves when each linear alone
        is rounded to each scheme (Runner.sensitivity; quantize(auto))."""
        return self._runner("sensitivity").sensitivity(g, self.state, self.calibration, schemes, group_size)

    def stream(self, state: dict, nodes: list[str], handle, **kw) -> dict:
        """The calibration ids streamed block by block through the model of
        `self.graph` holding `state`, `handle(block, stats)` called after each
        (Runner.stream; kw: hessian, rows, sequential)."""
        return self._runner("streaming calibration").stream(self.graph, state, self.calibration, nodes,
                                                            handle, **kw)

    def _runner(self, what: str) -> "Runner":
        if self.runner is None:  # a caller's mistake, not a spec's: calibration came without its runner
            raise TypeError(f"{what}: PassContext(calibration=...) needs runner= (the backend's, "
                            "strata.backends.torch.workflows.runner.RUNNER)")
        return self.runner


class Runner(Protocol):
    """Runs the model of a graph on calibration ids (the backend implements it)."""

    def activation_stats(self, g: "nx.MultiDiGraph", state: dict, ids: Any, nodes: list[str]) -> dict:
        """{node: {"sq", "abs", "n"}} per input feature of each linear in `nodes`."""

    def stream(self, g: "nx.MultiDiGraph", state: dict, ids: Any, nodes: list[str], handle, *,
               hessian: bool = True, rows: int = 0, sequential: bool = False) -> dict:
        """`handle(nodes, stats)` block by block (sequential: per distinct input inside
        a block); {"blocks", "seconds_per_block", "rows", "replay", "sequential"}."""

    def sensitivity(self, g: "nx.MultiDiGraph", state: dict, ids: Any, schemes: dict[str, list[str]],
                    group_size: int) -> tuple[dict, dict]:
        """({linear: {scheme: mean KL}}, {"rows", "forwards", "seconds"})."""


@dataclass
class Stored:
    """How `strata compress` writes one applied pass (strata/passes/compress.py)."""

    kept: list[str] = field(default_factory=list)   # passes written in the compressed spec
    notes: list[str] = field(default_factory=list)  # comments: what its weights now hold
    structured: dict | None = None   # a record whose sizes the written spec takes
    merge: bool = False              # reverted into the weights before they are written


class Pass(ABC):
    """A pass with validated options `o`.  Subclasses set name, options,
    positional and override run (and convert / revert / report)."""

    name: ClassVar[str]
    options: ClassVar[type[Options]]
    positional: ClassVar[tuple[str, ...]] = ()
    # The pass changes weight values (masks), not only names and shapes: a model
    # compiled without weights gets the spec's initial weights sent through it.
    acts_on_values: ClassVar[bool] = False
    # The pass adds adapters beside the weights (LoRA): weights saved with them merged
    # hold no adapters apart, so a compress that merges them leaves the pass out when
    # other passes run (strata.backends.torch.workflows.compress).
    adds_adapters: ClassVar[bool] = False
    # Keys it adds to nodes' attrs, with their meaning, where the IR's own
    # declarations (strata/compiler/ir_types.py ATTRS) do not hold them yet.
    marks: ClassVar[dict[str, str]] = {}
    # Its marks a linear keeps when a later pass rewrites it (fuses it with
    # others that carry the same values, factors it): see carried_marks().
    carried: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Options | None = None, **kw):
        self.o = options if options is not None else self.options(**kw)

    @classmethod
    def doc(cls) -> str:
        return (cls.options.__doc__ or "").strip()

    @abstractmethod
    def run(self, g: "nx.MultiDiGraph", ctx: PassContext | None = None) -> "nx.MultiDiGraph":
        """The rewritten graph (a copy; `g` is never changed)."""

    @property
    def reads_activations(self) -> bool:
        """Whether the pass, given weights, measures the model on calibration data
        (GPTQ, AWQ, SmoothQuant, int8_static, Wanda, SparseGPT, activation-aware
        low rank and pruning, quantize(auto)): compiling it with weights needs
        calibration token ids (see `calibrated_passes`)."""
        return False

    def convert(self, record: dict, state: dict, ctx: PassContext) -> dict:
        return state

    def revert(self, record: dict, state: dict) -> dict:
        return state

    def report(self, record: dict) -> str:
        return self.name

    # ------------------------------------------------------ the later stages' hooks
    # What the pass became in the generated file (a docstring line after its text).
    lowered: ClassVar[str] = "a graph rewrite: the file is the rewritten model"

    def where(self) -> str:
        return self.lowered

    @classmethod
    def lower(cls, g: "nx.MultiDiGraph", low) -> None:
        """Add to the generated file what the uses of this pass in `g` need there:
        `low.at_build(table, step, helpers)` (a table and a line of build()) or
        `low.after_load(table, function, helpers)` (a function to call once
        weights are loaded); `low.table`, `low.literal`, `low.patterns` help."""

    @classmethod
    def badges(cls, attrs: dict) -> list[str]:
        """Marks this pass left on a node with these attributes (diagram boxes)."""
        return []

    @classmethod
    def holds(cls, attrs: dict) -> str | None:
        """Why this pass's marks on a linear keep a later pass from changing its
        weights ("quantized"), or None (see held_by)."""
        return None

    def claims(self, record: dict) -> list[str]:
        """The linears whose weights this applied pass (its `record`) fixed: a later
        pass that rewrites one of them is asked `conflict` (apply_passes)."""
        return []

    def conflict(self, record: dict, later: "Pass", nodes: list[str], where: str) -> tuple[str, str] | None:
        """Why `later` may not rewrite `nodes`, linears this applied pass claims (it
        was written `where`: " at line 12", or ""), and what to write instead:
        (message, hint); None when it may."""
        return None

    @classmethod
    def misfit(cls, attrs: dict) -> str | None:
        """Why this pass's marks cannot stay on a linear of these attrs (its in / out
        as a later rewrite made them), or None (see drop_misfit_marks)."""
        return None

    @classmethod
    def device_problem(cls, g: "nx.MultiDiGraph", device) -> str | None:
        """Why the kernels it asks for cannot run on `device` (a torch.device or
        name), or None; the model is refused before anything runs."""
        return None

    @classmethod
    def weight_bytes(cls, d: dict, params: dict) -> int | None:
        """Bytes of node `d`'s parameters `params` (name -> shape) as the compiled
        model holds them, when this pass stores them otherwise than fp32; None
        when it does not (strata.compiler.cost)."""
        return None

    @classmethod
    def trainable(cls, g: "nx.MultiDiGraph") -> int | None:
        """Parameters that train, when this pass restricts them (None: all)."""
        return None

    @classmethod
    def prepare_training(cls, net, kit) -> list[str]:
        """Before `strata train`'s first step, on the compiled model (in place);
        one line per thing done, for the log.  kit: the backend's training
        workflows (strata.backends.torch.workflows.training.KIT)."""
        return []

    @classmethod
    def finish_training(cls, net, kit) -> None:
        """After the last step, on the compiled model (in place)."""

    def details(self, record: dict) -> dict:
        """The per-layer figures of its record worth keeping in compress's
        report.json (a record's "error": per-layer errors on calibration data)."""
        return {"relative_error": record["error"]} if record.get("error") else {}

    def stored(self, entry: dict, g: "nx.MultiDiGraph", adapters: str = "merge") -> Stored:
        """How `strata compress` writes this applied pass (`entry`, an item of
        g.graph.applied): by default the pass is written again in the new spec."""
        return Stored(kept=[self.label()])

    # ---------------------------------------------------------------- helpers
    def done(self, g: "nx.MultiDiGraph", record: dict) -> "nx.MultiDiGraph":
        """Record this pass (its options and what it did) on the graph it returns."""
        g.graph.applied = list(g.graph.get("applied", [])) + [
            {"name": self.name, "options": self.o.model_dump(), "record": record}]
        g.graph.parameters = param_count(g)
        return g

    def label(self) -> str:
        """The pass as a spec writes it: quantize(int8_dynamic, on="mlp")."""
        return pass_text(self.name, self.o.model_dump())


def _pass_classes():
    todo = list(Pass.__subclasses__())
    while todo:
        cls = todo.pop()
        yield cls
        todo += cls.__subclasses__()


def carried_marks() -> set[str]:
    """The marks of every pass class defined so far that a rewritten linear keeps
    (each pass says which of its own: Pass.carried)."""
    return {k for cls in _pass_classes() for k in cls.carried}


def drop_misfit_marks(attrs: dict) -> str | None:
    """Remove from a rewritten linear's `attrs` (in place) the marks of each pass
    that cannot hold its new shape (Pass.misfit); the reason, or None."""
    for cls in _pass_classes():
        why = cls.misfit(attrs)
        if why:
            for k in cls.carried:
                attrs.pop(k, None)
            return why
    return None


def listed(nodes: list[str], most: int = 3) -> str:
    """'a, b, c' or 'a, b, c and 5 more (8 linears)', for messages."""
    shown = ", ".join(nodes[:most])
    return shown if len(nodes) <= most else f"{shown} and {len(nodes) - most} more ({len(nodes)} linears)"


def held_by(attrs: dict) -> str | None:
    """Why a linear's weights are no longer float values a later pass may change
    ("quantized"), as the pass whose marks it carries says (Pass.holds); None if free."""
    return next((why for cls in _pass_classes() if (why := cls.holds(attrs))), None)
