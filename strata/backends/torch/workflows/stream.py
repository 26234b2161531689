"""Calibration streamed block by block, so memory holds one block's statistics
and its input activations, never the whole model's, and each block runs a
bounded number of times (cost linear in depth).

For each transformer block holding selected linears, in model order: the
calibration ids run through the model as it stands, stopped as soon as that
block has run; hooks on its linears accumulate, per distinct input (q, k and v
share one), the Hessian H = 2 X^T X / n [in, in] and per-channel mean |x| and
max |x| [in] (and, when asked, up to `rows` input rows for AWQ's search).  Then
`handle(block, stats)` rewrites the block's weights in the state, the model
takes them, and the block runs once more, compressed, on the same inputs: its
outputs [rows, T, d] are kept (GPTQ's sequential mode: each block is measured
on what the compressed blocks before it produce).  With `sequential=True`
the block's linears are measured and handled per distinct input in model
order (q, k, v; o; gate, up; down: AutoGPTQ's true_sequential), each group
after the groups before it are rewritten: one block forward per group.

Replay: in the next passes through a repeat (`decoder.layers`), the block that
produced the kept outputs returns them instead of computing, and the blocks
before it return their input untouched (the generated loop `x = layer(x, ...)`
hands each block's output to the next one only; the first pass checks that the
replayed tensor is the one the next block reads, and a repeat that is not such
a chain is run in full).  So block i costs two block forwards (measure,
then compress and propagate) plus the embedding, where running the model from
the start for every block cost i + 1.  A repeat's kept outputs are dropped
when `handle` rewrites a block already replayed (nothing in strata's methods
does: their folds stay inside a block).  `replay=False` runs the model from
the start for every block (the former, quadratic cost; the same results).

In code::

    cost = stream(g, state, ids, nodes, handle, hessian=True, sequential=False)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from strata.backends.torch.workflows.calibration import BATCH, model_inputs, plain_model
from strata.passes.methods.blocks import PROBE, block_of, blocks, input_of

if TYPE_CHECKING:
    import networkx as nx
    import torch

__all__ = ["stream"]


class _Stop(Exception):
    """Raised by the hook on a block once it has run: the rest of the model is not needed."""


def _chains(g) -> dict[str, tuple[str, int]]:
    """{repeat instance path: (repeat path, index)} for the top-level repeats
    (the blocks `block_of` names)."""
    out = {}
    for r in g.graph.repeats:
        if not any(p.isdigit() for p in r["path"].split(".")):
            out.update({inst: (r["path"], i) for i, inst in enumerate(r["instances"])})
    return out


class _Replay:
    """Per repeat path: the index of the last block whose outputs are kept, and
    those outputs per batch; installs the skipping forwards for one pass."""

    def __init__(self, net, g):
        self.net, self.chains, self.kept, self.broken = net, _chains(g), {}, set()
        self.members: dict[str, list[str]] = {}
        for inst, (path, _) in self.chains.items():
            self.members.setdefault(path, []).append(inst)

    def install(self, current: str, batch: list[int]) -> list:
        """Skip what the kept outputs stand for, for a pass stopping at `current`;
        `batch[0]` is the batch index the pass is at.  Returns undo handles."""
        undo = []
        here = self.chains.get(current)
        for path, (last, outs) in list(self.kept.items()):
            if here is not None and here[0] == path and here[1] <= last:
                del self.kept[path]  # an earlier block again: run it in full
                continue
            for inst in self.members[path][:last + 1]:
                mod = self.net.get_submodule(inst)
                if self.chains[inst][1] == last:
                    mod.forward = lambda *a, outs=outs, **k: outs[batch[0]]
                else:
                    mod.forward = lambda x, *a, **k: x
                undo.append(mod)
            if last + 1 < len(self.members[path]):  # the next block must read exactly the replayed tensor
                def check(mod, args, outs=outs, path=path):
                    if not args or args[0] is not outs[batch[0]]:
                        self.broken.add(path)
                undo.append(self.net.get_submodule(self.members[path][last + 1]).register_forward_pre_hook(check))
        return undo

    def drop_stale(self, changed: set[str]) -> None:
        """Forget kept outputs that a rewrite of a block at or before them made stale."""
        for path, (last, _) in list(self.kept.items()):
            if any(k.startswith(inst + ".") for inst in self.members[path][:last + 1] for k in changed):
                del self.kept[path]


def _run(net, g, batches, stop_at: str, replay: _Replay | None, capture: bool = False):
    """One pass of the batches through `net`, each stopped once `stop_at` has
    run; with `capture`, that module's output per batch.  None when a replayed
    repeat turned out not to be a chain (the caller runs the pass again)."""
    import torch  # lazy: torch

    batch, outs, undo = [0], [], []
    try:
        stop = net.get_submodule(stop_at)
    except AttributeError:
        stop = None
    if stop is not None:
        def halt(mod, args, out):
            if capture:
                outs.append(out)
            raise _Stop
        undo.append(stop.register_forward_hook(halt))
    if replay is not None:
        undo += replay.install(stop_at, batch)
    try:
        with torch.no_grad():
            for i, inputs in enumerate(batches):
                batch[0] = i
                try:
                    net(*inputs)
                except _Stop:
                    pass
    finally:
        for u in undo:
            if isinstance(u, torch.nn.Module):
                del u.forward  # back to the class's forward
            else:
                u.remove()
    if replay is not None and replay.broken & set(replay.kept):
        for path in replay.broken:
            replay.kept.pop(path, None)
        return None
    return outs


def _stages(g, block: list[str], sequential: bool) -> list[list[str]]:
    """The block's linears in the groups measured together: all at once, or
    (sequential) one group per distinct input in model order (q, k, v; o; gate,
    up; down), so that each is measured after those before it are rewritten."""
    if not sequential:
        return [block]
    out: dict[str, list[str]] = {}
    for n in block:
        out.setdefault(input_of(g, n), []).append(n)
    return list(out.values())


class _Probe:
    """The outputs of chosen modules on the inputs they were called with while
    measured (up to `rows` tokens each), rerun with some linears' weights
    replaced: stats[PROBE](module, {linear: W}) -> [tokens, d] float32."""

    def __init__(self, net, modules: list[str], rows: int):
        self.net, self.rows, self.calls = net, rows, {}
        self.hooks = []
        for m in modules:
            try:
                mod = net.get_submodule(m)
            except AttributeError:  # not a module of the generated code: the caller falls back
                continue
            self.calls[m] = []
            self.hooks.append(mod.register_forward_hook(self._capture(m), with_kwargs=True))

    def _capture(self, m):
        def hook(mod, args, kwargs, out):
            have = sum(int(a[0].shape[:-1].numel()) for a, _ in self.calls[m])
            if args and have < self.rows:
                self.calls[m].append((args, kwargs))
        return hook

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()

    def __contains__(self, module: str) -> bool:
        return bool(self.calls.get(module))

    def __call__(self, module: str, replace: dict) -> "torch.Tensor":
        import torch  # lazy: torch
        from torch.func import functional_call  # lazy: torch

        mod = self.net.get_submodule(module)
        own = dict(mod.named_parameters())
        params = {}
        for linear, w in replace.items():
            key = linear[len(module) + 1:] + ".weight"
            params[key] = w.to(own[key].dtype)
        outs = []
        with torch.no_grad():
            for args, kwargs in self.calls[module]:
                y = functional_call(mod, params, args, kwargs)
                y = y[0] if isinstance(y, tuple) else y
                outs.append(y.reshape(-1, y.shape[-1]).float())
        return torch.cat(outs)


def _measure(net, g, batches, name: str, nodes: list[str], kept, hessian: bool, rows: int,
             modules=None) -> dict:
    """stats[input node] for the linears `nodes`, from one pass of the batches
    stopped once block `name` has run (see stream); with `modules` (nodes ->
    module paths), stats[PROBE] reruns those modules on what they read."""
    import torch  # lazy: torch

    stats: dict = {}
    hooks = []
    probe = _Probe(net, sorted(modules(nodes)), rows) if modules is not None else None
    for n in nodes:
        key = input_of(g, n)
        if key in stats:
            continue
        stats[key] = {"n": 0, "x": []}

        def hook(mod, args, out, key=key):
            x = args[0].detach().double().reshape(-1, args[0].shape[-1])
            s = stats[key]
            if s["n"] == 0:
                s["H"] = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64) if hessian else None
                s["sum"] = torch.zeros(x.shape[1], dtype=torch.float64)
                s["absmax"] = torch.zeros(x.shape[1], dtype=torch.float64)
            if hessian:
                s["H"] += x.T @ x
            s["sum"] += x.abs().sum(0)
            s["absmax"] = torch.maximum(s["absmax"], x.abs().amax(0))
            s["n"] += x.shape[0]
            have = sum(r.shape[0] for r in s["x"])
            if have < rows:
                s["x"].append(x[: rows - have].float())
        hooks.append(net.get_submodule(n).register_forward_hook(hook))
    try:
        while _run(net, g, batches, name, kept) is None:  # a repeat that is no chain: again, in full
            for s in stats.values():
                s.clear()
                s.update({"n": 0, "x": []})
            if probe is not None:
                probe.calls = {m: [] for m in probe.calls}
    finally:
        for h in hooks:
            h.remove()
        if probe is not None:
            probe.remove()
    for s in stats.values():
        if s["n"] == 0:  # never reached (the caller skips these linears)
            continue
        n = s["n"]
        if s.get("H") is not None:
            s["H"] *= 2 / n
        s["mean"] = s.pop("sum") / n
        s["x"] = torch.cat(s["x"]) if s["x"] else None
    if probe is not None:
        stats[PROBE] = probe
    return stats


def stream(g: "nx.MultiDiGraph", state: dict, ids, nodes: list[str], handle, *, hessian: bool = True,
           rows: int = 0, replay: bool = True, sequential: bool = False, modules=None) -> dict:
    """Run `handle(nodes, stats)` block by block (see the module docstring);
    stats[input node] = {"H", "mean", "absmax", "n", "x"} ("n" 0: the input never ran).
    sequential: within a block, one call per distinct input (_stages), each
    measured with the linears before it already rewritten.  modules: nodes ->
    the module paths whose calls (up to `rows` tokens) stats[PROBE] reruns.  Returns {"blocks",
    "seconds_per_block", "rows", "replay", "sequential"}."""
    from strata.backends.torch.weights_file import load_state  # lazy: torch

    net = plain_model(g, state)
    started = time.perf_counter()
    groups = blocks(g, nodes)
    batches = [model_inputs(g, ids[i:i + BATCH]) for i in range(0, ids.shape[0], BATCH)]
    kept = _Replay(net, g) if replay else None
    for b, block in enumerate(groups):
        name = block_of(block[0])
        changed: set[str] = set()
        for stage in _stages(g, block, sequential):
            stats = _measure(net, g, batches, name, stage, kept, hessian, rows, modules)
            before = dict(state)
            handle(stage, stats)
            now = {k for k, v in state.items() if before.get(k) is not v}
            load_state(net, {k: state[k] for k in now}, strict=False, own_names=True)
            changed |= now
        if kept is None:
            continue
        kept.drop_stale(changed)
        if name in kept.chains and kept.chains[name][0] not in kept.broken and b + 1 < len(groups):  # propagate: the compressed block's outputs
            outs = _run(net, g, batches, name, kept, capture=True)
            while outs is None:
                outs = _run(net, g, batches, name, kept, capture=True)
            if len(outs) == len(batches):
                kept.kept[kept.chains[name][0]] = (kept.chains[name][1], outs)
    seconds = time.perf_counter() - started
    return {"blocks": len(groups), "seconds_per_block": round(seconds / max(len(groups), 1), 4),
            "rows": int(ids.shape[0]), "replay": bool(replay), "sequential": bool(sequential)}
