"""What a pass is: one class per pass, in one file per pass, holding everything
every stage needs of it.

    name, positional, options     how a spec calls it and the schema of its options
                                  (the registry, `strata schema`, the reference)
    run(g, ctx) -> g              the graph rewrite; records what it did on the new
                                  graph (`g.graph["applied"][-1]["record"]`)
    convert(record, state, ctx)   the weight transform: a state dict in the names of
                                  the graph before the pass -> the names after it
    revert(record, state)         its inverse, where one exists (checkpoints are
                                  written in the spec's own names)
    report(record) -> str         one line saying what it did

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

from strata.components.base import Options
from strata.passes.text import pass_text

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Pass", "PassContext", "PassError", "Runner"]


class PassError(Exception):
    """A pass cannot apply to this graph (a spec mistake the person can fix)."""


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

    def need_calibration(self, what: str) -> None:
        """Refuse a method that reads activations when the weights flow through
        without calibration data (a graph-only run, summary or diagram, passes)."""
        if self.state is not None and self.calibration is None:
            raise PassError(f"{what} reads activations: give calibration data (strata compress "
                            "--calibration FILE, compile(..., calibration=ids))")

    def need_state(self, what: str):
        if self.state is None:
            raise PassError(f"{what} is chosen from the weights: compile with weights "
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

    def stream(self, state: dict, nodes: list[str], handle, **kw) -> dict:
        """The calibration ids streamed block by block through the model of
        `self.graph` holding `state`, `handle(block, stats)` called after each
        (Runner.stream; kw: hessian, rows)."""
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
               hessian: bool = True, rows: int = 0) -> dict:
        """`handle(block_nodes, stats)` block by block; {"blocks", "seconds_per_block", "rows"}."""


class Pass(ABC):
    """A pass with validated options `o`.  Subclasses set name, options,
    positional and override run (and convert / revert / report)."""

    name: ClassVar[str]
    options: ClassVar[type[Options]]
    positional: ClassVar[tuple[str, ...]] = ()
    # The pass changes weight values (masks), not only names and shapes: a model
    # compiled without weights gets the spec's initial weights sent through it.
    acts_on_values: ClassVar[bool] = False

    def __init__(self, options: Options | None = None, **kw):
        self.o = options if options is not None else self.options(**kw)

    @classmethod
    def doc(cls) -> str:
        return (cls.options.__doc__ or "").strip()

    @abstractmethod
    def run(self, g: "nx.MultiDiGraph", ctx: PassContext | None = None) -> "nx.MultiDiGraph":
        """The rewritten graph (a copy; `g` is never changed)."""

    def convert(self, record: dict, state: dict, ctx: PassContext) -> dict:
        return state

    def revert(self, record: dict, state: dict) -> dict:
        return state

    def report(self, record: dict) -> str:
        return self.name

    # ---------------------------------------------------------------- helpers
    def done(self, g: "nx.MultiDiGraph", record: dict) -> "nx.MultiDiGraph":
        """Record this pass (its options and what it did) on the graph it returns."""
        from strata.passes._rewrite import recount  # lazy: cycle

        g.graph["applied"] = list(g.graph.get("applied", [])) + [
            {"name": self.name, "options": self.o.model_dump(), "record": record}]
        return recount(g)

    def label(self) -> str:
        """The pass as a spec writes it: quantize(int8_dynamic, on="mlp")."""
        return pass_text(self.name, self.o.model_dump())
