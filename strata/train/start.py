"""`strata.train(spec, **overrides) -> Run`: everything between a spec and a
trained model, in order, one function per stage:

    _plan        settings, objective, context (checked before anything is read)
    obj.read_data  the data (the objective reads it) and the --init weights
    _model       the model (dropout as set), and the distillation teacher
    fitted_tokenizer  a new run's tokenizer, fitted on the data (start_tokenizer.py)
    _prepare_folder   the run folder claimed (or resumed): every check above comes first,
                 so a refusal writes nothing; one after it (data too short) removes
                 what this start wrote, and puts back a run --overwrite was replacing
                 (RunLock.abandon; RunLock.commit drops that run at the first checkpoint)
    run_tokenizer  the run's own / the init's / the teacher's / the fitted one, written
    _dataset     token ids cached, and the objective's sampler
    starting_weights  initial or resumed weights, frozen parts, the passes' training needs
                 (start_weights.py)
    _optimize    the loss (wrapped for distillation), DDP / FSDP, torch.compile, the optimizer
    run_info, write_info  run.json (and model.arch, the spec as trained, standing alone;
                 start_record.py)
    _loop        the loop, the final weights, the loss plot
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dataclasses import dataclass
from typing import Any, Callable

import torch

from strata.compiler import as_graph
from strata.errors import UsageError
from strata.backends.torch.workflows.training import finish_training
from strata.train.checkpoint import find_checkpoint
from strata.train.distributed import Dist, say, wrap
from strata.train.folder import check_claim, claim
from strata.train.folder_names import is_run
from strata.resources import check_fits
from strata.train.limits import model_limits, step_memory
from strata.train.loop import Loop
from strata.train.metrics import LossPlot, MetricsLog, Progress
from strata.train.models import compile_model
from strata.train.objectives import Loss, choose_objective
from strata.train.objectives.distillation import DistillLoss
from strata.train.optim import make_optimizer
from strata.train.rank_stops import stopping
from strata.train.run import CACHE, FINAL, METRICS, PLOT, Run
from strata.train.settings import resolve_settings
from strata.train.sources import resolve_weights
from strata.train.start_record import resumed_data, resumed_settings, run_info, spec_copy_text, write_info
from strata.train.start_weights import frozen_paths, init_weights, starting_weights
from strata.train.state import TrainState
from strata.train.start_tokenizer import check_reused, fitted_tokenizer, run_tokenizer, same_tokenizer, unseen
from strata.train.teacher import load_teacher
from strata.train.tokenizer import UnseenCharacters

__all__ = ["AlreadyPast", "train"]


class AlreadyPast(UsageError):
    """--resume with fewer steps than the run has taken: nothing to train, nothing
    written (run.json keeps the run's own steps); the command line exits 0."""


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
            lock, ckpt = claim(out, resume, overwrite, say=lambda text: say(d, progress, text))
        except UsageError as e:
            if not d.on:
                raise
            refused = e
    try:
        said = d.share_bytes(b"no:" + str(refused).encode() if refused else b"ok").decode()
        if said.startswith("no:"):  # every rank stops with rank 0's refusal (none waits for it)
            raise refused or UsageError(said[3:])
        if not d.main and resume:
            ckpt = find_checkpoint(out)
    except BaseException as e:  # the lock not yet train()'s: its error and Ctrl-C paths, here
        if lock is not None:
            if isinstance(e, Exception) or lock.keeps_old:
                lock.abandon()
            lock.release()
        raise
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


def _plan(spec, model, sets, settings, objective, out, d: Dist, device: str, resume: bool) -> _Plan:
    g = as_graph(spec, model=model)
    out = Path(out or Path("runs") / g.graph.name)
    cfg = resolve_settings(g, sets, settings, resumed_settings(out) if resume else None)
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
    return _Plan(g, cfg, obj, limit, out)


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
    say(d, progress, f"distill: teacher {t.strata_graph.graph['name']} "
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


def _loop(p: _Plan, runner, net, task, loss, sampler, opt, scaler, state, tok, metrics: MetricsLog,
          start: int, best, d: Dist, device: str, fsdp: bool, progress: bool,
          saved: Callable[[], None]) -> None:
    """The loop to the last step; the final weights and the loss plot.  `saved`
    is called after each checkpoint is written whole (latest.json names it)."""
    cfg, out, obj, name = p.cfg, p.out, p.obj, p.g.graph.name
    bar = Progress(cfg["steps"], start, progress and d.main)

    def save(step: int, best_val, is_best: bool) -> None:
        state.save(step, best_val, is_best, {
            "seed": cfg["seed"], "objective": obj.name,
            "data": {"position": "step", "next_step": step, "sampler": type(sampler).__name__}})
        saved()

    drawing = LossPlot(metrics.curves, out / PLOT, f"{name} · {obj.name}")

    def plot(end: bool = False) -> None:
        if d.main:
            drawing.draw(end)

    tokens = cfg["batch"] * cfg["accumulate"] * cfg["context"]
    say(d, progress, f"train: {name} ({p.g.graph['parameters']:,} parameters), "
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
        plot(end=True)


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
    try:
        return _start(d, spec, d.device(device), out=out, resume=resume, overwrite=overwrite, init=init,
                      objective=objective, freeze=freeze, teacher_weights=teacher_weights,
                      compile=compile, fsdp=fsdp, sets=sets, model=model, progress=progress, **settings)
    except Exception as e:
        said = stopping(d, e)  # under torchrun: which process stopped the run (rank_stops.py)
        if said is e:
            raise
        raise said from e
    finally:
        d.close()


def _start(d: Dist, spec, device: str, *, out, resume: bool, overwrite: bool, init, objective, freeze,
           teacher_weights, compile: bool, fsdp: bool, sets, model, progress: bool, **settings) -> Run:
    """train()'s stages in order, in process group `d` on `device`."""
    lock, looping = None, False
    try:
        p = _plan(spec, model, sets, settings, objective, out, d, device, resume)
        check_claim(p.out, resume, overwrite)  # a folder it cannot have, said before the data is read
        # data and weights to start from (read and checked before the run folder is touched):
        # a resumed run's own data, unless other is given
        w = resolve_weights(init) if init is not None else None
        if resume:
            p.cfg["data"] = resumed_data(p.out, sets, settings, p.cfg["data"])
        texts, payload, data_info = p.obj.read_data(p.cfg["data"])
        # the model, the weights it starts from and the tokenizer (the one they came with, or
        # one fitted on the data), checked before the run folder is touched: a refusal (a weight
        # of another shape, a tokenizer that does not fit the model or the data) leaves no
        # folder behind.  A run resumed in place keeps its own weights and tokenizer instead.
        g_run, net, teacher = _model(p, device, teacher_weights, d, progress)
        reuse = (w.tokenizer if w else None) or (teacher[2] if teacher else None)
        whose = f"--init {init}" if w is not None and w.tokenizer is not None else "the distillation teacher"
        frozen_paths(net, freeze)
        fresh = not (resume and is_run(p.out))
        fitted = None
        if fresh:
            if reuse is not None:
                lost = check_reused(reuse, p.obj, p.limit, texts, whose)
                if lost and d.main:  # trained on as [UNK]: said even without progress
                    print(f"strata: warning: {lost.said_of(data_info['name'])} (the tokenizer {whose} "
                          "came with)", file=sys.stderr, flush=True)
            else:
                fitted = fitted_tokenizer(p.cfg, p.obj, p.limit, texts, d)
            if w is not None:
                init_weights(net, w.file, d, progress)
        lock, ckpt = _prepare_folder(p.out, d, resume, overwrite, progress)
        # the spec as trained, standing alone (written with run.json); checked once the run
        # folder is there, since its paths start from it ("../../teacher.arch" does not
        # resolve through a folder not made yet)
        spec_copy = spec_copy_text(spec, model, p.g, p.out, d, progress)
        if ckpt is not None and ckpt.step > p.cfg["steps"]:
            n = p.cfg["steps"]
            raise AlreadyPast(f"{p.out}: the run is already at step {ckpt.step:,}, past the {n:,} "
                              f"step{'s' if n != 1 else ''} asked for; give --steps larger than "
                              f"{ckpt.step} to train further")
        size = (f"{data_info['characters']:,} characters" if "characters" in data_info
                else f"{data_info['examples']:,} examples")
        say(d, progress, f"data: {data_info['name']} ({size})")
        if resume and ckpt is None:
            say(d, progress, f"{p.out}: no checkpoint yet; starting at step 0")
        if ckpt is not None:
            same_tokenizer(p.cfg, p.out)

        tok = run_tokenizer(p.cfg, p.obj, p.limit, texts, p.out, ckpt, reuse, fitted, d)
        try:
            sampler = _dataset(p.cfg, p.obj, p.cfg["context"], tok, payload, p.out, d)
        except UnseenCharacters as e:  # a tokenizer that came with weights, not fitted on this data
            if ckpt is not None or reuse is None:
                raise
            raise unseen(e, whose, reuse) from None
        frozen = starting_weights(net, w.file if w and not fresh else None, ckpt, freeze, d, progress, spec, p.out)
        runner, task, loss, opt, scaler = _optimize(p, net, teacher, frozen, d, device, fsdp, compile)

        state = TrainState(p.out, net, opt, d, device, fsdp_graph=g_run if fsdp and d.on else None,
                           say=lambda text: say(d, progress, text))
        start, best = 0, None
        if ckpt is not None:
            start, best = state.restore(ckpt, p.cfg["seed"])
        elif d.rank:
            torch.manual_seed(p.cfg["seed"] * 1000 + d.rank)  # other dropout masks than rank 0's
        info = run_info(p, spec, model, data_info, tok, w.file if w else None, frozen, teacher_weights,
                        d, device, compile, fsdp, spec_copy)
        # metrics.jsonl is opened (a planted link refused) before run.json is touched
        metrics = MetricsLog(p.out / METRICS, d.main, resume_step=start if ckpt is not None else None)
        write_info(p.out, info, spec_copy, ckpt is not None, start, d)
        looping = True  # from here a stopped run is one --resume continues (or starts over) ...
        # ... except over a run --overwrite replaces: that one is kept aside until the new run's
        # first checkpoint, the first point the new run can be resumed from, and a stop before it
        # (an error at step 1, out of memory, a kill) puts it back (`lock.keeps_old`)
        commit = lock.commit if lock is not None else lambda: None
        _loop(p, runner, net, task, loss, sampler, opt, scaler, state, tok, metrics, start, best,
              d, device, fsdp, progress, saved=commit)
        commit()  # a loop of no step wrote no checkpoint: the finished run is the folder's
        if not fsdp:
            finish_training(net)
        d.barrier()
        # its `model` compiled from the run folder, as `strata generate` compiles it; the net that trained apart
        return Run(p.out, info, tokenizer=tok, trained=None if fsdp else net)
    except Exception:
        # stopped before its first step (data too short for the context, ...), or before the
        # first checkpoint of a run --overwrite was replacing: what this start wrote goes, so
        # --out is as it was and the command, fixed, needs no --overwrite (or --overwrite again)
        if lock is not None and (not looping or lock.keeps_old):
            lock.abandon()
        raise
    except KeyboardInterrupt:
        # Ctrl-C: a run --overwrite was replacing comes back at once, as on an error; any other
        # start stays as a kill leaves it (a stub or a run that --resume continues)
        if lock is not None and lock.keeps_old:
            lock.abandon()
        raise
    finally:
        if lock is not None:
            lock.release()
