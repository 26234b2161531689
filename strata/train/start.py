"""`strata.train(spec, **overrides) -> Run`: everything between a spec and a
trained model, in order — settings, objective, run folder, data and tokenizer,
model (initial weights, resumed weights, frozen parts), teacher, distribution,
optimizer, the loop, the final weights.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from strata.errors import UsageError
from strata.io import write_atomic
from strata.train import checkpoint as C
from strata.train.data import text_source
from strata.train.tasks import BUILTIN_TASKS, examples
from strata.train.distributed import Dist, wrap
from strata.train.heads import choose_objective, model_limits
from strata.train.metrics import MetricsLog, Progress, plot_losses
from strata.train.folder import MANIFEST, claim
from strata.train.records import RunInfo, read_run_json
from strata.train.run import CACHE, FINAL, METRICS, PLOT, RUN_JSON, TOKENIZER, Run
from strata.train.sources import resolve_weights
from strata.train.settings import resolve_settings
from strata.train.tokenizer import SPECIALS

__all__ = ["train"]


def _say(d: Dist, progress: bool, text: str) -> None:
    if d.main and progress:
        print(text, file=sys.stderr, flush=True)


def _with_dropout(g, p: float | None):
    """A copy of the IR with every dropout probability set to p (None: as the spec says)."""
    if p is None:
        return g
    g = g.copy()
    for _, node in g.nodes(data=True):
        if node["op"] == "dropout":
            node["attrs"] = {**node["attrs"], "p": p}
        elif node["op"] == "attention" and "dropout" in node["attrs"]:
            node["attrs"] = {**node["attrs"], "dropout": p}
    return g


def _prepare_folder(out: Path, d: Dist, resume: bool, overwrite: bool):
    """(the run's lock or None, the checkpoint to resume from or None): rank 0
    locks and claims the folder (`strata.train.folder`), the others follow."""
    lock, ckpt, refused = None, None, None
    if d.main:
        try:
            lock, ckpt = claim(out, resume, overwrite)
        except UsageError as e:
            if not d.on:
                raise
            refused = e
    said = d.share_bytes(b"no:" + str(refused).encode() if refused else b"ok").decode()
    if said.startswith("no:"):  # every rank stops with rank 0's refusal (none waits for it)
        raise refused or UsageError(said[3:])
    if not d.main and resume:
        ckpt = C.find_checkpoint(out)
    return lock, ckpt


def _tokenizer(cfg, obj, limit, texts, out: Path, ckpt, reuse: Path | None, d: Dist):
    from strata.train.tokenizer import fit_tokenizer, load_tokenizer, tokenizer_from_json

    if os.path.lexists(out / TOKENIZER) and ckpt is not None:
        tok = load_tokenizer(out / TOKENIZER, follow=False)
    elif reuse is not None:
        tok = load_tokenizer(reuse)
    else:
        text = None
        if d.main:
            text = fit_tokenizer(cfg["tokenizer"], texts, obj.name, limit, cfg["vocab_size"]).dumps()
        tok = tokenizer_from_json(d.share_bytes(text.encode() if text else None).decode(), TOKENIZER)
    if tok.vocab_size > limit:
        raise UsageError(f"the tokenizer has {tok.vocab_size:,} ids; the model's vocabulary holds "
                         f"{limit:,}")
    missing = [s for s in SPECIALS[obj.name] if s not in tok.specials]
    if missing:
        raise UsageError(f"the reused tokenizer lacks {', '.join(missing)}, which {obj.name} needs")
    return tok


def _dataset(cfg, obj, context, tok, src_or_records, out: Path, d: Dist):
    """Tokenized data and the batches drawn from it (rank 0 fills the cache first)."""
    from strata.train.batches import ExampleBatches, LMWindows, MaskedWindows
    from strata.train.dataset import token_stream, tokenize_examples

    def build(writer: bool):
        if obj.name in ("causal_lm", "mlm"):
            need = context + 1 if obj.name == "causal_lm" else context
            return token_stream(src_or_records, tok, out / CACHE, cfg["val_fraction"], need, writer)
        records, digest, name = src_or_records
        return tokenize_examples(records, digest, obj.name, tok, out / CACHE, cfg["val_fraction"],
                                 name, writer)

    data = build(True) if d.main else None
    d.barrier()
    if not d.main:
        data = build(False)
    common = dict(context=context, batch=cfg["batch"], seed=cfg["seed"], eval_steps=cfg["eval_steps"])
    if obj.name == "causal_lm":
        return LMWindows(data.train, data.val, **common)
    if obj.name == "mlm":
        return MaskedWindows(data.train, data.val, tok=tok, nsp=bool(obj.nsp), **common)
    return ExampleBatches(data, obj.name, tok=tok, accumulate=cfg["accumulate"], **common)


def _freeze(net, selectors) -> list[str]:
    from strata.compiler.select import select

    frozen = []
    for sel in ([selectors] if isinstance(selectors, str) else list(selectors or [])):
        paths = select(net.strata_graph, sel)
        if not paths:
            raise UsageError(f"--freeze \"{sel}\" matches no module (selectors are module path globs "
                             "like encoder.layer.* or component kinds like attention)")
        for name, p in net.named_parameters():
            if any(name == q or name.startswith(q + ".") for q in paths):
                p.requires_grad_(False)
                frozen.append(name)
    return frozen


def _init_weights(net, path, d: Dist, progress: bool) -> None:
    """Load pretrained weights where names and shapes fit; report what did not."""
    from strata import api
    from strata.backends.torch.weights import checkpoint_shapes

    have = set(checkpoint_shapes(path))
    api.load_weights(net, path, strict=False)
    names = {k for k, _ in net.named_parameters()}
    new = sorted(k for k in names if k not in have)
    _say(d, progress, f"init: {path}: {len(names) - len(new)} of {len(names)} weights loaded"
         + (f"; new: {', '.join(new[:6])}{' ...' if len(new) > 6 else ''}" if new else ""))


def _data(obj, data):
    """(texts for the tokenizer, what the dataset reads, what run.json records)."""
    if obj.name in ("causal_lm", "mlm"):
        src = text_source(data).check()
        return src.texts, src, {"name": src.name, "sha256": src.digest, "characters": src.chars,
                                "builtin": src.builtin, "path": str(Path(data).resolve()) if data else None}
    records, digest = examples(data, obj.name, obj.classes)
    fields = [k for k in ("source", "target", "text") if k in records[0]]
    name = str(data) if data is not None else BUILTIN_TASKS[obj.name]
    return (lambda: (r[k] for r in records for k in fields)), (records, digest, name), {
        "name": name, "sha256": digest, "examples": len(records), "builtin": data is None,
        "path": str(Path(data).resolve()) if data is not None else None}


def _write_info(out: Path, info: dict, resumed: bool, start: int, d: Dist) -> None:
    """run.json, with the history of the run's starts (a resume adds one)."""
    if not d.main:
        return
    old = read_run_json(out / RUN_JSON) if resumed else None
    history = [h.model_dump() for h in old.history] if isinstance(old, RunInfo) else []
    info["history"] = [*history, {"start_step": start, "world_size": d.world,
                                  "time": time.strftime("%Y-%m-%dT%H:%M:%S")}]
    write_atomic(out / RUN_JSON, json.dumps(info, indent=1) + "\n", follow=False)


def train(spec, *, out: str | os.PathLike | None = None, resume: bool = False,
          overwrite: bool = False, init: str | None = None, objective: str | None = None,
          freeze=None, teacher_weights: str | None = None, device: str | None = None,
          compile: bool = False, fsdp: bool = False, sets=(), model: str | None = None,
          progress: bool = True, **settings) -> Run:
    """Train a spec as its `train { }` section says; keyword arguments override any
    setting (`steps=100`, `batch=4`, `optimizer="adamw(lr=1e-3)"`, `data="x.txt"`).

        >>> run = strata.train("specs/tiny_shakespeare.arch", steps=50, out="runs/demo")  # doctest: +SKIP
        >>> run.val_loss, run.generate("O Romeo", tokens=40)                              # doctest: +SKIP

    Under torchrun every process calls this and the loop is distributed (DDP, or
    FSDP2 with fsdp=True); only rank 0 writes.  Returns the `Run`."""
    from strata import api
    from strata.compiler import as_graph
    from strata.io import is_spec_path

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    d = Dist.from_env(device)
    lock = None
    try:
        device = d.device(device)
        g = as_graph(spec, model=model)
        cfg = resolve_settings(g, sets, settings)
        obj = choose_objective(g, objective)
        limit, ctx = model_limits(g)
        context = cfg["context"] or ctx or g.graph["vars"].get("ctx")
        if not context:
            raise UsageError("no context length: set train { context = ... } or --set context=N")
        if ctx and context > ctx:
            raise UsageError(f"context = {context} is longer than the model's positions (ctx = {ctx})")
        cfg["context"] = context
        if cfg["batch"] < d.world:
            raise UsageError(f"batch = {cfg['batch']} cannot be split over {d.world} processes")
        if cfg["dtype"] == "float16" and not device.startswith("cuda"):
            raise UsageError("dtype float16 needs a GPU; use bfloat16 or float32 on a CPU")
        out = Path(out or Path("runs") / g.graph["name"])

        # data and tokenizer (read and checked before the run folder is touched)
        data = cfg["data"]
        reuse = None
        init_file = None
        if init is not None:
            w = resolve_weights(init)
            init_file, reuse = w.file, w.tokenizer
        teacher_tok = None
        texts, payload, data_info = _data(obj, data)
        lock, ckpt = _prepare_folder(out, d, resume, overwrite)
        size = (f"{data_info['characters']:,} characters" if "characters" in data_info
                else f"{data_info['examples']:,} examples")
        _say(d, progress, f"data: {data_info['name']} ({size})")
        if resume and ckpt is None:
            _say(d, progress, f"{out}: no checkpoint yet; starting at step 0")

        # the model
        torch.manual_seed(cfg["seed"])
        g_run = _with_dropout(g, cfg["dropout"])
        net = api.compile(g_run, device=device, quantize=False)  # quantized when the weights are compiled
        teacher = None
        if "distill" in net.strata_graph.graph:
            from strata.train.distill import load_teacher

            teacher, t_loss, teacher_tok = load_teacher(net.strata_graph, obj, device, teacher_weights,
                                                        spec_graph=g)
            _say(d, progress, f"distill: teacher {teacher.strata_graph.graph['name']} "
                 f"({teacher.strata_graph.graph['parameters']:,} parameters), weights {teacher.strata_weights}")
        tok = _tokenizer(cfg, obj, limit, texts, out, ckpt, reuse or teacher_tok, d)
        if d.main and not (ckpt is not None and os.path.lexists(out / TOKENIZER)):
            write_atomic(out / TOKENIZER, tok.dumps(), follow=False)
        sampler = _dataset(cfg, obj, context, tok, payload, out, d)
        if init_file is not None and ckpt is None:
            _init_weights(net, init_file, d, progress)
        if ckpt is not None:
            api.load_weights(net, ckpt.weights)
        frozen = _freeze(net, freeze)
        from strata.passes.training import finish_training, prepare_for_training

        for line in prepare_for_training(net):  # LoRA: adapters only; QAT: fake quantization
            _say(d, progress, line)

        from strata.train.objectives import Loss

        task = Loss(obj, net)
        loss = task
        if teacher is not None:
            from strata.train.distill import DistillLoss

            info = net.strata_graph.graph["distill"]
            loss = DistillLoss(task, teacher, t_loss, info["temperature"], info["alpha"])
        unused = bool(set(net.strata_graph.graph["outputs"]) - obj.uses) or bool(frozen)
        wrapped = wrap(net, d, net.strata_graph, fsdp=fsdp, find_unused=unused)
        runner = torch.compile(wrapped) if compile else wrapped
        params = [p for p in net.parameters() if p.requires_grad]
        from strata.train.optim import make_optimizer

        opt = make_optimizer(list(net.named_parameters()), cfg["optimizer"], device)
        scaler = torch.amp.GradScaler("cuda") if cfg["dtype"] == "float16" else None

        from strata.train.state import TrainState

        state = TrainState(out, net, opt, d, device, fsdp_graph=g_run if fsdp and d.on else None,
                           say=lambda text: _say(d, progress, text))
        start, best = 0, None
        if ckpt is not None:
            start, best = state.restore(ckpt, cfg["seed"])
        elif d.rank:
            torch.manual_seed(cfg["seed"] * 1000 + d.rank)  # other dropout masks than rank 0's
        info = {"format": "strata-run", "version": 1, "status": "ready", "files": list(MANIFEST),
                "spec": str(Path(spec).resolve()) if is_spec_path(spec) else None,
                "spec_text": spec if isinstance(spec, str) and not is_spec_path(spec) else None,
                "model": model, "name": g.graph["name"], "parameters": g.graph["parameters"],
                "objective": {"name": obj.name, "output": obj.output, "nsp": obj.nsp,
                              "classes": obj.classes},
                "settings": cfg,
                "data": data_info, "tokenizer": {"type": tok.kind, "vocab_size": tok.vocab_size},
                "init": str(init_file) if init_file else None, "frozen": len(frozen),
                # where the distill teacher's weights came from (generate --speculate loads it)
                "teacher_weights": str(Path(teacher_weights).resolve()) if teacher_weights else None,
                "world_size": d.world, "device": device, "compile": compile, "fsdp": fsdp,
                "torch": torch.__version__, "strata": __import__("strata").__version__}
        metrics = MetricsLog(out / METRICS, d.main, resume_step=start if ckpt is not None else None)
        _write_info(out, info, ckpt is not None, start, d)
        bar = Progress(cfg["steps"], start, progress and d.main)

        def save(step: int, best_val, is_best: bool) -> None:
            state.save(step, best_val, is_best, {
                "seed": cfg["seed"], "objective": obj.name,
                "data": {"position": "step", "next_step": step, "sampler": type(sampler).__name__}})

        def on_eval() -> None:
            if d.main:
                plot_losses(metrics.records, out / PLOT, f"{g.graph['name']} · {obj.name}")

        from strata.train.loop import Loop

        tokens = cfg["batch"] * cfg["accumulate"] * context
        _say(d, progress, f"train: {g.graph['name']} ({g.graph['parameters']:,} parameters), "
             f"{obj.name}, {tok.kind} tokenizer ({tok.vocab_size:,} ids), {cfg['steps']:,} steps of "
             f"{cfg['batch']} x {cfg['accumulate']} x {context} tokens (~{tokens:,}), "
             f"{d.world} x {device} -> {out}")
        loop = Loop(model=runner, params=params, loss=loss, eval_loss=task, sampler=sampler, opt=opt,
                    cfg=cfg, dist=d, device=device, metrics=metrics, progress=bar, save=save,
                    on_eval=on_eval, start=start, best=best, perplexity=obj.name != "classify",
                    ddp=d.on and not fsdp, scaler=scaler)
        with state.writes():  # a full disk or `ulimit -f`: one line naming the checkpoint kept
            try:
                loop.run()
            finally:
                bar.close()
            state.save_final(out / FINAL)
            if d.main:
                plot_losses(metrics.records, out / PLOT, f"{g.graph['name']} · {obj.name}")
        if not fsdp:
            finish_training(net)
        d.barrier()
        return Run(out, info, model=None if fsdp else net, tokenizer=tok)
    finally:
        if lock is not None:
            lock.release()
        d.close()
