"""`strata.train(spec, **overrides) -> Run`: everything between a spec and a
trained model, in order, one function per stage:

    _plan        settings, objective, context (checked before anything is read)
    _read_data   the data (the objective reads it) and the --init weights
    _model       the model (dropout as set), and the distillation teacher
    _fitted      a new run's tokenizer, fitted on the data
    _prepare_folder   the run folder claimed (or resumed): every check above comes first,
                 so a refusal writes nothing; one after it (data too short) removes
                 what this start wrote, and puts back a run --overwrite was replacing
                 (RunLock.abandon; RunLock.commit drops that run at the first step)
    _tokenizer   the run's own / the init's / the teacher's / the fitted one, written
    _dataset     token ids cached, and the objective's sampler
    _weights     initial or resumed weights, frozen parts, the passes' training needs
    _optimize    the loss (wrapped for distillation), DDP / FSDP, torch.compile, the optimizer
    _run_info    run.json (and model.arch, the spec as trained, standing alone)
    _loop        the loop, the final weights, the loss plot
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from dataclasses import dataclass
from typing import Any

import torch

from strata.compiler import as_graph, build_text
from strata.compiler.ir import state_dict_shapes
from strata.compiler.select import select
from strata.errors import SpecError, UsageError
from strata.io import is_spec_path, write_atomic
from strata.passes.spec_writer import run_spec
from strata.backends.torch.weights_file import WeightsError, WeightsMismatchError
from strata.backends.torch.workflows.training import finish_training, prepare_for_training
from strata.train.checkpoint import find_checkpoint
from strata.train.distributed import Dist, wrap
from strata.train.folder import MANIFEST, check_claim, claim
from strata.resources import check_fits
from strata.train.limits import model_limits, step_memory
from strata.train.loop import Loop
from strata.train.metrics import MetricsLog, Progress, plot_losses
from strata.train.models import checkpoint_shapes, compile_model, float_state, load_fitting, load_weights
from strata.train.objectives import Loss, choose_objective
from strata.train.objectives.distillation import DistillLoss
from strata.train.optim import make_optimizer
from strata.train.records import RunInfo, read_run_json
from strata.train.run import CACHE, FINAL, METRICS, PLOT, RUN_JSON, Run
from strata.train.overwritten import kept_run
from strata.train.run_folder import SPEC, is_run, run_data, run_relative
from strata.train.settings import resolve_settings
from strata.train.sources import COMPRESSED_SPEC, COMPRESSED_WEIGHTS, is_compressed, resolve_weights
from strata.train.state import TrainState
from strata.train.start_tokenizer import check_reused, fitted_tokenizer, run_tokenizer, same_tokenizer, unseen
from strata.train.teacher import load_teacher
from strata.train.tokenizer import UnseenCharacters

__all__ = ["AlreadyPast", "train"]


class AlreadyPast(UsageError):
    """--resume with fewer steps than the run has taken: nothing to train, nothing
    written (run.json keeps the run's own steps); the command line exits 0."""


def _say(d: Dist, progress: bool, text: str) -> None:
    if d.main and progress:
        print(text, file=sys.stderr, flush=True)


def _with_dropout(g, p: float | None):
    """A copy of the IR with every dropout probability set to p (None: as the spec says)."""
    if p is None:
        return g
    g = g.copy()
    for _, node in g.nodes(data=True):
        if node.op == "dropout":
            node["attrs"] = {**node.attrs, "p": p}
        elif node.op == "attention" and "dropout" in node.attrs:
            node["attrs"] = {**node.attrs, "dropout": p}
    return g


def _prepare_folder(out: Path, d: Dist, resume: bool, overwrite: bool, progress: bool):
    """(the run's lock or None, the checkpoint to resume from or None): rank 0
    locks and claims the folder (`strata.train.folder`), the others follow."""
    lock, ckpt, refused = None, None, None
    if d.main:
        try:
            lock, ckpt = claim(out, resume, overwrite, say=lambda text: _say(d, progress, text))
        except UsageError as e:
            if not d.on:
                raise
            refused = e
    said = d.share_bytes(b"no:" + str(refused).encode() if refused else b"ok").decode()
    if said.startswith("no:"):  # every rank stops with rank 0's refusal (none waits for it)
        raise refused or UsageError(said[3:])
    if not d.main and resume:
        ckpt = find_checkpoint(out)
    return lock, ckpt


def _dataset(cfg, obj, context, tok, payload, out: Path, d: Dist):
    """Tokenized data and the objective's batches drawn from it (rank 0 fills the cache first)."""
    def build(writer: bool):
        return obj.dataset(payload, tok, out / CACHE, cfg["val_fraction"], context, writer)

    data = build(True) if d.main else None
    d.barrier()
    if not d.main:
        data = build(False)
    return obj.train_sampler(data, tok, cfg, context)


def _frozen_paths(net, selectors) -> list[str]:
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
    paths = _frozen_paths(net, selectors)
    frozen = []
    for name, p in net.named_parameters():
        if any(name == q or name.startswith(q + ".") for q in paths):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def _init_weights(net, path, d: Dist, progress: bool) -> None:
    """Load pretrained weights by name (in their own shape); report the new ones."""
    path = Path(path)
    names = {k for k, _ in net.named_parameters()}
    try:
        if is_compressed(path.parent) and path.name == COMPRESSED_WEIGHTS:
            # a compress output holds its model's own tensors (low-rank factors, integers):
            # read them as the float weights they stand for, in the spec's own names, which
            # fit the spec it was compressed from as well as its own model.arch
            new = sorted(load_fitting(net, float_state(path.parent / COMPRESSED_SPEC, path), str(path)))
        else:
            have = set(checkpoint_shapes(path))
            load_weights(net, path, strict=False)
            new = sorted(k for k in names if k not in have)
    except WeightsMismatchError as e:  # a shape differs: starting it anew would lose it unsaid
        raise WeightsError(f"{e}\n  --init takes a weight only in its own shape: train the spec "
                           "the weights came from, or give a module that should start anew another "
                           "name in the spec (e.g. classifier(3) as head3)") from None
    _say(d, progress, f"init: {path}: {len(names) - len(new)} of {len(names)} weights loaded"
         + (f"; new: {', '.join(new[:6])}{' ...' if len(new) > 6 else ''}" if new else ""))


def _write_info(out: Path, info: dict, spec_copy: str | None, resumed: bool, start: int, d: Dist) -> None:
    """model.arch (the spec as this start trains it, standing alone), then
    run.json, which names it, with the history of the run's starts (a resume adds one)."""
    if not d.main:
        return
    old = read_run_json(out / RUN_JSON) if resumed else None
    history = [h.model_dump() for h in old.history] if isinstance(old, RunInfo) else []
    info["history"] = [*history, {"start_step": start, "world_size": d.world,
                                  "time": time.strftime("%Y-%m-%dT%H:%M:%S")}]
    if spec_copy is not None:
        write_atomic(out / SPEC, spec_copy, follow=False)
    write_atomic(out / RUN_JSON, json.dumps(info, indent=1) + "\n", follow=False)


def _spec_copy(spec, model, g, out: Path, d: Dist, progress: bool) -> str | None:
    """The text of RUN/model.arch: the spec as trained, standing alone, checked to
    build the model `g` is (its weights' names and shapes).  A spec the writer
    cannot make stand alone still trains (the run then needs the spec file, as
    runs did before they kept a copy), saying so."""
    if not is_spec_path(spec) or not d.main:
        return None
    try:
        text = run_spec(spec, model, g, out)
        if state_dict_shapes(build_text(text, str(out / SPEC))) == state_dict_shapes(g):
            return text
        why = "it would build another model"
    except (SpecError, UsageError) as e:
        why = str(e).splitlines()[0]
    _say(d, progress, f"note: {out / SPEC} not written ({why}); the run loads from {spec} while it is there")
    return None


def _resumed_data(out: Path, sets, settings: dict, data: str | None) -> str | None:
    """The data a --resume reads: the run's own, as run.json records it (found
    relative to the run folder first, a run moved with its data; then at its
    absolute path), unless --data / --set data names other; `data` (the spec's)
    when the run's is not found but that is there, or the run recorded none."""
    own = kept_run(out) or out / RUN_JSON  # a run an --overwrite kept aside: the claim puts it back
    if "data" in settings or any(re.match(r"\s*data\s*=", t) for t in sets) or not os.path.isfile(own):
        return data
    old = read_run_json(own)
    if not isinstance(old, RunInfo):
        return data
    try:
        return run_data(old.data.model_dump(), out, f"{out}: the data the run trained on",
                        "give --data with where it is now to resume")
    except UsageError:
        if data is not None and os.path.exists(data):
            return data
        raise


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


@dataclass
class _Plan:
    """What the spec and the overrides decide before anything is read."""

    g: Any                  # the IR, before passes
    cfg: dict               # the settings, context resolved
    obj: Any                # the objective (strata.train.objectives)
    limit: int              # the model's vocabulary
    out: Path               # the run folder


def _check_device(device: str) -> None:
    """A device torch knows and this machine has, before anything is read or written
    (--device quantum, or cuda:9 with no ninth GPU, once failed after the run began)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device {device}: not a device (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: this machine has no CUDA GPU that torch can use")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: this machine has no MPS device")


def _plan(spec, model, sets, settings, objective, out, d: Dist, device: str) -> _Plan:
    g = as_graph(spec, model=model)
    cfg = resolve_settings(g, sets, settings)
    obj = choose_objective(g, objective)
    limit, ctx = model_limits(g)
    context = cfg["context"] or ctx or g.graph.vars.get("ctx")
    if not context:
        raise UsageError("no context length: set train { context = ... } or --set context=N")
    if ctx and context > ctx:
        raise UsageError(f"context = {context} is longer than the model's positions (ctx = {ctx})")
    cfg["context"] = context
    if cfg["batch"] < d.world:
        raise UsageError(f"batch = {cfg['batch']} cannot be split over {d.world} processes")
    if cfg["dtype"] == "float16" and not device.startswith("cuda"):
        raise UsageError("dtype float16 needs a GPU; use bfloat16 or float32 on a CPU")
    if device == "cpu":  # a batch that cannot fit is refused before any of it is allocated
        check_fits(step_memory(g, cfg["batch"], context, d.world),
                   f"a training step of batch {cfg['batch']:,} x context {context:,}",
                   "lower batch (raise accumulate to keep the tokens a step)")
    return _Plan(g, cfg, obj, limit, Path(out or Path("runs") / g.graph.name))


def _model(p: _Plan, device: str, teacher_weights, d: Dist, progress: bool):
    """(the IR as run, the model, (teacher, its Loss, its tokenizer.json) or None)."""
    torch.manual_seed(p.cfg["seed"])
    g_run = _with_dropout(p.g, p.cfg["dropout"])
    net = compile_model(g_run, device=device, quantize=False)  # quantized when the weights are compiled
    if "distill" not in net.strata_graph.graph:
        return g_run, net, None
    teacher = load_teacher(net.strata_graph, p.obj, device, teacher_weights, spec_graph=p.g)
    t = teacher[0]
    _same_width(net.strata_graph, p.obj.output, t.strata_graph, teacher[1].obj.output)
    _say(d, progress, f"distill: teacher {t.strata_graph.graph['name']} "
         f"({t.strata_graph.graph['parameters']:,} parameters), weights {t.strata_weights}"
         + (f"; {t.strata_calibrated}" if t.strata_calibrated else ""))
    return g_run, net, teacher


def _same_width(g, output: str, tg, t_output: str) -> None:
    """A teacher that predicts over another vocabulary (or other classes) than the
    student, refused before the run folder is made (was: at the first step)."""
    def width(graph, name):  # the last axis of the output: (B, T, vocab) or (B, classes)
        shape = graph.nodes[graph.graph.outputs[name]].get("out_shape") or ()
        return shape[-1] if shape and isinstance(shape[-1], int) else None

    s, t = width(g, output), width(tg, t_output)
    if s is not None and t is not None and s != t:
        raise UsageError(f"distill: the teacher predicts {t} classes, the student {s}: they must share "
                         "the vocabulary")


def _weights(net, init_file, ckpt, freeze, d: Dist, progress: bool, spec=None, out: Path | None = None
             ) -> list[str]:
    """Initial (--init) or resumed weights, the frozen parameters' names; then
    what the passes ask of training (LoRA: adapters only; QAT: fake quantization).
    A spec changed since the run (resumed from `out`) in its shapes is refused."""
    if init_file is not None and ckpt is None:
        _init_weights(net, init_file, d, progress)
    if ckpt is not None:
        try:
            load_weights(net, ckpt.weights)
        except WeightsMismatchError as e:
            raise UsageError(_changed_spec(e, spec, out, ckpt.step, os.path.lexists(out / SPEC))) from None
    frozen = _freeze(net, freeze)
    for line in prepare_for_training(net):
        _say(d, progress, line)
    return frozen


def _optimize(p: _Plan, net, teacher, frozen, d: Dist, device: str, fsdp: bool, compile: bool):
    """(what the loop calls, the objective's Loss, the training Loss, optimizer, grad scaler)."""
    task = loss = Loss(p.obj, net)
    if teacher is not None:
        info = net.strata_graph.graph.distill
        loss = DistillLoss(task, teacher[0], teacher[1], info["temperature"], info["alpha"])
    unused = bool(set(net.strata_graph.graph.outputs) - p.obj.uses) or bool(frozen)
    wrapped = wrap(net, d, net.strata_graph, fsdp=fsdp, find_unused=unused)
    runner = torch.compile(wrapped) if compile else wrapped
    opt = make_optimizer(list(net.named_parameters()), p.cfg["optimizer"], device)
    scaler = torch.amp.GradScaler("cuda") if p.cfg["dtype"] == "float16" else None
    return runner, task, loss, opt, scaler


def _run_info(p: _Plan, spec, model, data_info, tok, init_file, frozen, teacher_weights, d: Dist,
              device: str, compile: bool, fsdp: bool, spec_copy: str | None) -> dict:
    """run.json's content (strata.train.records.RunInfo)."""
    g = p.g
    return {"format": "strata-run", "version": 1, "status": "ready", "files": list(MANIFEST),
            "spec": str(Path(spec).resolve()) if is_spec_path(spec) else None,
            "spec_text": spec if isinstance(spec, str) and not is_spec_path(spec) else None,
            "spec_copy": SPEC if spec_copy is not None else None,
            "model": model, "name": g.graph.name, "parameters": g.graph.parameters,
            "objective": p.obj.to_json(), "settings": p.cfg,
            # the data's path relative to the run folder too: a run moved with its data finds it
            "data": {**data_info, "from_run": os.path.relpath(data_info["path"], p.out.resolve())
                     if data_info.get("path") else None},
            "tokenizer": {"type": tok.kind, "vocab_size": tok.vocab_size},
            "init": str(init_file) if init_file else None, "frozen": len(frozen),
            # where the distill teacher's weights came from (generate --speculate loads them),
            # relative to the run folder too: a run moved together with them finds them
            "teacher_weights": str(Path(teacher_weights).resolve()) if teacher_weights else None,
            "teacher_weights_from_run": run_relative(teacher_weights, p.out) if teacher_weights else None,
            "world_size": d.world, "device": device, "compile": compile, "fsdp": fsdp,
            "torch": torch.__version__, "strata": __import__("strata").__version__}


def _loop(p: _Plan, runner, net, task, loss, sampler, opt, scaler, state, tok, metrics: MetricsLog,
          start: int, best, d: Dist, device: str, fsdp: bool, progress: bool) -> None:
    """The loop to the last step; the final weights and the loss plot."""
    cfg, out, obj, name = p.cfg, p.out, p.obj, p.g.graph.name
    bar = Progress(cfg["steps"], start, progress and d.main)

    def save(step: int, best_val, is_best: bool) -> None:
        state.save(step, best_val, is_best, {
            "seed": cfg["seed"], "objective": obj.name,
            "data": {"position": "step", "next_step": step, "sampler": type(sampler).__name__}})

    def plot() -> None:
        if d.main:
            plot_losses(metrics.records, out / PLOT, f"{name} · {obj.name}")

    tokens = cfg["batch"] * cfg["accumulate"] * cfg["context"]
    _say(d, progress, f"train: {name} ({p.g.graph['parameters']:,} parameters), "
         f"{obj.name}, {tok.kind} tokenizer ({tok.vocab_size:,} ids), {cfg['steps']:,} steps of "
         f"{cfg['batch']} x {cfg['accumulate']} x {cfg['context']} tokens (~{tokens:,}), "
         f"{d.world} x {device} -> {out}")
    params = [q for q in net.parameters() if q.requires_grad]
    loop = Loop(model=runner, params=params, loss=loss, eval_loss=task, sampler=sampler, opt=opt,
                cfg=cfg, dist=d, device=device, metrics=metrics, progress=bar, save=save,
                on_eval=plot, start=start, best=best, ddp=d.on and not fsdp, scaler=scaler)
    with state.writes():  # a full disk or `ulimit -f`: one line naming the checkpoint kept
        try:
            loop.run()
        finally:
            bar.close()
        state.save_final(out / FINAL)
        plot()


def train(spec, *, out: str | os.PathLike | None = None, resume: bool = False,
          overwrite: bool = False, init: str | None = None, objective: str | None = None,
          freeze=None, teacher_weights: str | None = None, device: str | None = None,
          compile: bool = False, fsdp: bool = False, sets=(), model: str | None = None,
          progress: bool = True, **settings) -> Run:
    """Train a spec as its `train { }` section says; keyword arguments override any
    setting (`steps=100`, `batch=4`, `optimizer="adamw(lr=1e-3)"`, `data="x.txt"`).

    For example::

        run = strata.train("specs/tiny_shakespeare.arch", steps=50, out="runs/demo")
        run.val_loss, run.generate("O Romeo", tokens=40)

    Under torchrun every process calls this and the loop is distributed (DDP, or
    FSDP2 with fsdp=True); only rank 0 writes.  Returns the `Run`."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    _check_device(device)
    d = Dist.from_env(device)
    lock, looping = None, False
    try:
        device = d.device(device)
        p = _plan(spec, model, sets, settings, objective, out, d, device)
        check_claim(p.out, resume, overwrite)  # a folder it cannot have, said before the data is read
        # data and weights to start from (read and checked before the run folder is touched):
        # a resumed run's own data, unless other is given
        w = resolve_weights(init) if init is not None else None
        if resume:
            p.cfg["data"] = _resumed_data(p.out, sets, settings, p.cfg["data"])
        texts, payload, data_info = p.obj.read_data(p.cfg["data"])
        # the model, the weights it starts from and the tokenizer (the one they came with, or
        # one fitted on the data), checked before the run folder is touched: a refusal (a weight
        # of another shape, a tokenizer that does not fit the model or the data) leaves no
        # folder behind.  A run resumed in place keeps its own weights and tokenizer instead.
        g_run, net, teacher = _model(p, device, teacher_weights, d, progress)
        reuse = (w.tokenizer if w else None) or (teacher[2] if teacher else None)
        whose = f"--init {init}" if w is not None and w.tokenizer is not None else "the distillation teacher"
        _frozen_paths(net, freeze)
        fresh = not (resume and is_run(p.out))
        fitted = None
        if fresh:
            if reuse is not None:
                check_reused(reuse, p.obj, p.limit, texts, whose)
            else:
                fitted = fitted_tokenizer(p.cfg, p.obj, p.limit, texts, d)
            if w is not None:
                _init_weights(net, w.file, d, progress)
        lock, ckpt = _prepare_folder(p.out, d, resume, overwrite, progress)
        # the spec as trained, standing alone (written with run.json); checked once the run
        # folder is there, since its paths start from it ("../../teacher.arch" does not
        # resolve through a folder not made yet)
        spec_copy = _spec_copy(spec, model, p.g, p.out, d, progress)
        if ckpt is not None and ckpt.step > p.cfg["steps"]:
            n = p.cfg["steps"]
            raise AlreadyPast(f"{p.out}: the run is already at step {ckpt.step:,}, past the {n:,} "
                              f"step{'s' if n != 1 else ''} asked for; give --steps larger than "
                              f"{ckpt.step} to train further")
        size = (f"{data_info['characters']:,} characters" if "characters" in data_info
                else f"{data_info['examples']:,} examples")
        _say(d, progress, f"data: {data_info['name']} ({size})")
        if resume and ckpt is None:
            _say(d, progress, f"{p.out}: no checkpoint yet; starting at step 0")
        if ckpt is not None:
            same_tokenizer(p.cfg, p.out)

        tok = run_tokenizer(p.cfg, p.obj, p.limit, texts, p.out, ckpt, reuse, fitted, d)
        try:
            sampler = _dataset(p.cfg, p.obj, p.cfg["context"], tok, payload, p.out, d)
        except UnseenCharacters as e:  # a tokenizer that came with weights, not fitted on this data
            if ckpt is not None or reuse is None:
                raise
            raise unseen(e, whose, reuse) from None
        frozen = _weights(net, w.file if w and not fresh else None, ckpt, freeze, d, progress, spec, p.out)
        runner, task, loss, opt, scaler = _optimize(p, net, teacher, frozen, d, device, fsdp, compile)

        state = TrainState(p.out, net, opt, d, device, fsdp_graph=g_run if fsdp and d.on else None,
                           say=lambda text: _say(d, progress, text))
        start, best = 0, None
        if ckpt is not None:
            start, best = state.restore(ckpt, p.cfg["seed"])
        elif d.rank:
            torch.manual_seed(p.cfg["seed"] * 1000 + d.rank)  # other dropout masks than rank 0's
        info = _run_info(p, spec, model, data_info, tok, w.file if w else None, frozen, teacher_weights,
                         d, device, compile, fsdp, spec_copy)
        # metrics.jsonl is opened (a planted link refused) before run.json is touched
        metrics = MetricsLog(p.out / METRICS, d.main, resume_step=start if ckpt is not None else None)
        _write_info(p.out, info, spec_copy, ckpt is not None, start, d)
        if lock is not None:
            lock.commit()  # the run --overwrite replaces, kept aside until now, goes
        looping = True  # from here a stopped run is one --resume continues (or starts over)
        _loop(p, runner, net, task, loss, sampler, opt, scaler, state, tok, metrics, start, best,
              d, device, fsdp, progress)
        if not fsdp:
            finish_training(net)
        d.barrier()
        # its `model` compiled from the run folder, as `strata generate` compiles it; the net that trained apart
        return Run(p.out, info, tokenizer=tok, trained=None if fsdp else net)
    except Exception:
        # stopped before its first step (data too short for the context, ...): what this
        # start wrote goes, so --out is as it was and the command, fixed, needs no --overwrite
        if lock is not None and not looping:
            lock.abandon()
        raise
    finally:
        if lock is not None:
            lock.release()
        d.close()
