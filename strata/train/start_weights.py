"""The weights a `strata train` start begins from (strata.train.start): --init's
(loaded by name, in their own shapes; a compress output's read as the floats they
stand for), or a resumed run's checkpoint (a spec changed since in its shapes is
refused in one line); then the parameters --freeze names frozen, and what the
passes ask of training (LoRA: adapters only; QAT: fake quantization)."""

from __future__ import annotations

import os
from pathlib import Path

from strata.backends.torch.weights_file import WeightsError, WeightsMismatchError
from strata.backends.torch.workflows.training import prepare_for_training
from strata.compiler.select import select
from strata.errors import UsageError
from strata.train.distributed import Dist, say
from strata.train.folder_names import COMPRESSED_SPEC, COMPRESSED_WEIGHTS, SPEC, is_compressed
from strata.train.models import checkpoint_shapes, float_state, load_fitting, load_weights

__all__ = ["frozen_paths", "init_weights", "starting_weights"]


def frozen_paths(net, selectors) -> list[str]:
    """The module paths --freeze selects; a selector that matches nothing is refused
    (checked before the run folder is made)."""
    found = []
    for sel in ([selectors] if isinstance(selectors, str) else list(selectors or [])):
        paths = select(net.strata_graph, sel)
        if not paths:
            raise UsageError(f"--freeze \"{sel}\" matches no module (selectors are module path globs "
                             "like encoder.layer.* or component kinds like attention)")
        found += paths
    return found


def _freeze(net, selectors) -> list[str]:
    paths = frozen_paths(net, selectors)
    frozen = []
    for name, p in net.named_parameters():
        if any(name == q or name.startswith(q + ".") for q in paths):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def init_weights(net, path, d: Dist, progress: bool) -> None:
    """Load pretrained weights by name (in their own shape); report the new ones."""
    path = Path(path)
    names = {k for k, _ in net.named_parameters()}
    compressed = is_compressed(path.parent) and path.name == COMPRESSED_WEIGHTS
    read_as = ""
    try:
        if compressed:
            read_as = _read_as(checkpoint_shapes(path))
            # a compress output holds its model's own tensors (low-rank factors, integers):
            # read them as the float weights they stand for, in the spec's own names, which
            # fit the spec it was compressed from as well as its own model.arch
            new = sorted(load_fitting(net, float_state(path.parent / COMPRESSED_SPEC, path), str(path)))
        else:
            have = set(checkpoint_shapes(path))
            load_weights(net, path, strict=False)
            new = sorted(k for k in names if k not in have)
    except WeightsMismatchError as e:  # a shape differs: starting it anew would lose it unsaid
        # one line, as eval and generate say it; its listing of every name is for the API
        came = (f"{path.parent / COMPRESSED_SPEC} (the compressed model's own sizes)" if compressed
                else "the spec the weights came from")
        raise WeightsError(f"{e.one_line()}; --init takes a weight only in its own shape: train {came}, "
                           "or give a module that should start anew another name in the spec "
                           "(e.g. classifier(3) as head3)") from None
    say(d, progress, f"init: {path}: {len(names) - len(new)} of {len(names)} weights loaded{read_as}"
         + (f"; new: {', '.join(new[:6])}{' ...' if len(new) > 6 else ''}" if new else ""))


def _read_as(shapes: dict) -> str:
    """What --init made of a compress output's tensors, said on its `init:` line
    (training starts from float weights whatever the file stores)."""
    leaves = {k.rsplit(".", 1)[-1] for k in shapes}
    owners = {k.rsplit(".", 1)[0] for k in shapes}  # a factored linear NAME: NAME.a, NAME.b (packed or not)
    done = ["integers dequantized"] * bool(leaves & {"weight_packed", "weight_scale"})
    done += ["low-rank factors multiplied back"] * any(o.endswith(".a") and o[:-1] + "b" in owners for o in owners)
    done += ["sparse-bitmask weights made dense"] * ("bitmask" in leaves)
    return f" (read as float: {', '.join(done)})" if done else ""


def _changed_spec(e: WeightsMismatchError, spec, out: Path, step: int, has_copy: bool) -> str:
    """One line for --resume with a spec that no longer builds the run's model."""
    firsts = [f"{k} is [{', '.join(map(str, m))}] in the spec, [{', '.join(map(str, c))}] in the run"
              for k, (m, c) in e.mismatched.items()]
    firsts += [f"the spec adds {k}" for k in e.missing] + [f"the spec has no {k}" for k in e.unexpected]
    more = f" (and {len(firsts) - 1} more)" if len(firsts) > 1 else ""
    keep = (f"resume with the spec as the run trained it (strata train {out / SPEC} --out {out} --resume), "
            if has_copy else "restore the spec as the run trained it and resume, ")
    return (f"{out}: --resume: {spec} has changed since the run trained it: it no longer fits the "
            f"run's weights (step {step:,}): {firsts[0] if firsts else 'they differ'}{more}; {keep}"
            "or train the changed spec as a new run (--out another folder, or --overwrite)")


def starting_weights(net, init_file, ckpt, freeze, d: Dist, progress: bool, spec=None, out: Path | None = None
             ) -> list[str]:
    """Initial (--init) or resumed weights, the frozen parameters' names; then
    what the passes ask of training (LoRA: adapters only; QAT: fake quantization).
    A spec changed since the run (resumed from `out`) in its shapes is refused."""
    if init_file is not None and ckpt is None:
        init_weights(net, init_file, d, progress)
    if ckpt is not None:
        try:
            load_weights(net, ckpt.weights)
        except WeightsMismatchError as e:
            raise UsageError(_changed_spec(e, spec, out, ckpt.step, os.path.lexists(out / SPEC))) from None
    frozen = _freeze(net, freeze)
    for line in prepare_for_training(net):
        say(d, progress, line)
    return frozen
